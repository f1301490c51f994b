//! Bearer-key authentication for `/v1/*` and admin-token authentication for `/admin/v1/*`.

use axum::extract::FromRequestParts;
use axum::http::{StatusCode, header, request::Parts};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::app::App;
use crate::store::KeyRecord;

/// SHA-256 of an API key, hex: what the store keeps. Keys are 238-bit random strings, so a
/// fast hash is the right tool (argon2 is for low-entropy passwords).
pub fn hash_key(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in Sha256::digest(key.as_bytes()) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The authenticated API key making the request. Its record may be up to a second old (see
/// `crate::keys`): read spend figures from the store.
pub struct Caller(pub KeyRecord);

impl FromRequestParts<Arc<App>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let key = bearer(parts).or_else(|| parts.headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()));
        authenticate(app, key).await.map(Caller)
    }
}

/// The key record for a presented key, or 401.
pub async fn authenticate(app: &App, key: Option<&str>) -> Result<KeyRecord, ApiError> {
    let key = key.ok_or_else(|| {
        ApiError::unauthorized(
            "You didn't provide an API key. Send it as 'Authorization: Bearer igk_…'; create one with `imagegate keys create`.",
        )
    })?;
    if !key.starts_with("igk_") || key.len() > 100 {
        return Err(ApiError::unauthorized("Incorrect API key provided."));
    }
    match app.keys.by_hash(app.store.as_ref(), &hash_key(key)).await? {
        Some(k) if k.revoked_at.is_none() => Ok(k),
        Some(_) => Err(ApiError::unauthorized("This API key has been revoked.")),
        None => Err(ApiError::unauthorized("Incorrect API key provided.")),
    }
}

/// The key presented as Gemini clients present theirs: `x-goog-api-key`, `?key=`, or Bearer.
pub fn gemini_key(parts: &Parts) -> Option<String> {
    if let Some(k) = parts.headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim().to_string());
    }
    let from_query = parts
        .uri
        .query()
        .and_then(|q| url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "key").map(|(_, v)| v.into_owned()));
    from_query.or_else(|| bearer(parts).map(str::to_string))
}

/// The operator, holding the admin token.
pub struct Admin;

impl FromRequestParts<Arc<App>> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let Some(expected) = &app.rt.admin_token else {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_api_disabled",
                "The admin API is off: set IMAGEGATE_ADMIN_TOKEN to enable it (the `imagegate keys` CLI works without it).",
            ));
        };
        let given = bearer(parts).unwrap_or("");
        if bool::from(given.as_bytes().ct_eq(expected.expose().as_bytes())) {
            Ok(Admin)
        } else {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "admin_token_required",
                "This route needs the admin token as 'Authorization: Bearer <token>'.",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn key_hashes_are_lowercase_hex_sha256() {
        assert_eq!(super::hash_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
