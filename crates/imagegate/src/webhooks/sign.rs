//! Standard Webhooks signing (standardwebhooks.com): `webhook-signature: v1,<base64 HMAC-SHA256>`
//! of `"{id}.{timestamp}.{body}"`, keyed by the base64-decoded part of a `whsec_` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("webhook secret is not whsec_<base64>")]
    BadSecret,
}

/// A new secret: `whsec_` + base64 of 24 random bytes.
pub fn new_secret() -> String {
    let bytes: [u8; 24] = rand::random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

/// The `webhook-signature` header value.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> Result<String, SignError> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).map_err(|_| SignError::BadSecret)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SignError::BadSecret)?;
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    Ok(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let v: serde_json::Value = serde_json::from_str(include_str!(
            "../../../imagegate-fakes/fixtures/webhooks/standard-webhooks-vector.json"
        ))
        .unwrap();
        let got = sign(
            v["secret"].as_str().unwrap(),
            v["id"].as_str().unwrap(),
            v["timestamp"].as_i64().unwrap(),
            v["payload"].as_str().unwrap(),
        )
        .unwrap();
        assert_eq!(got, v["signature"].as_str().unwrap());
    }

    #[test]
    fn new_secrets_are_usable_and_distinct() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(sign(&a, "msg_1", 1, "{}").unwrap().starts_with("v1,"));
        assert_eq!(sign("whsec_!!!", "m", 1, ""), Err(SignError::BadSecret));
    }
}
