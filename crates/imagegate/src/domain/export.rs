//! Export destinations: a customer's own S3-compatible bucket that every image a key makes is
//! also copied to (the "permanent" tier). Parsing and validation of what an admin sends, the
//! stored form (the secret sealed or an `env::NAME` reference) and object naming. Pure.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// A destination as stored on the key. `secret_access_key` is either sealed (see `sealing`) or
/// an `env::NAME` reference; `access_key_id` is a literal or an `env::NAME` reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportDestination {
    pub bucket: String,
    /// Object keys start with `prefix/` (empty: the bucket's root). No leading or trailing `/`.
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub virtual_host: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// A destination as an admin sent it, validated; the secret is still in the clear.
#[derive(Clone, PartialEq)]
pub struct ExportRequest {
    pub destination: ExportDestination,
    /// Whether to write, read back and delete a probe object before accepting it (default).
    pub verify: bool,
}

impl std::fmt::Debug for ExportRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ExportRequest(s3://{}/{}, verify: {})",
            self.destination.bucket, self.destination.prefix, self.verify
        )
    }
}

pub const ENV_PREFIX: &str = "env::";

/// A field problem: (param, message).
pub type FieldError = (String, String);

fn bad(param: &str, message: impl Into<String>) -> FieldError {
    (param.to_string(), message.into())
}

fn string_field(body: &Map<String, Value>, name: &str) -> Result<Option<String>, FieldError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(bad(name, format!("'{name}' must be a string."))),
    }
}

/// Whether `name` is a usable environment variable name for an `env::` reference.
fn env_name_ok(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit()
}

/// Validates a destination body:
/// `{"bucket", "prefix"?, "endpoint"?, "region"?, "virtual_host"?, "access_key_id",
///   "secret_access_key", "verify"?}`; the credentials may be `env::NAME` references.
pub fn parse_request(body: &Map<String, Value>) -> Result<ExportRequest, FieldError> {
    const KNOWN: [&str; 8] =
        ["bucket", "prefix", "endpoint", "region", "virtual_host", "access_key_id", "secret_access_key", "verify"];
    if let Some(k) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(k, format!("Unrecognized argument: {k}")));
    }
    let bucket = string_field(body, "bucket")?.ok_or_else(|| bad("bucket", "'bucket' is required."))?;
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
        && bucket.as_bytes()[0].is_ascii_alphanumeric();
    if !bucket_ok {
        return Err(bad("bucket", "'bucket' must be 3-63 characters: lowercase letters, digits, '.', '-' or '_'."));
    }
    let prefix = string_field(body, "prefix")?.unwrap_or_default().trim_matches('/').to_string();
    let prefix_ok = prefix.len() <= 200
        && prefix.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.'))
        && !prefix.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..");
    if !(prefix.is_empty() || prefix_ok) {
        return Err(bad(
            "prefix",
            "'prefix' must be at most 200 characters of letters, digits, '/', '-', '_' or '.', with no empty, '.' or '..' segments.",
        ));
    }
    let endpoint = match string_field(body, "endpoint")? {
        None => None,
        Some(e) if e.is_empty() => None,
        Some(e) => match url::Url::parse(&e) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => {
                Some(e.trim_end_matches('/').to_string())
            }
            _ => {
                return Err(bad(
                    "endpoint",
                    "'endpoint' must be an http(s) URL, e.g. https://s3.eu-central-1.amazonaws.com.",
                ));
            }
        },
    };
    let region = string_field(body, "region")?.filter(|r| !r.is_empty()).unwrap_or_else(|| "us-east-1".into());
    if region.len() > 64 || !region.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(bad("region", "'region' must be a region name such as eu-central-1 or auto."));
    }
    let flag = |name: &str, default: bool| match body.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(bad(name, format!("'{name}' must be true or false."))),
    };
    let virtual_host = flag("virtual_host", false)?;
    let verify = flag("verify", true)?;
    let credential = |name: &str| -> Result<String, FieldError> {
        let v = string_field(body, name)?.filter(|v| !v.is_empty()).ok_or_else(|| {
            bad(
                name,
                format!("'{name}' is required: the value, or \"env::NAME\" to read it from the server's environment."),
            )
        })?;
        if let Some(env) = v.strip_prefix(ENV_PREFIX)
            && !env_name_ok(env)
        {
            return Err(bad(name, format!("'{name}': \"env::{env}\" is not a valid environment variable name.")));
        }
        if v.len() > 1024 {
            return Err(bad(name, format!("'{name}' is too long.")));
        }
        Ok(v)
    };
    let access_key_id = credential("access_key_id")?;
    let secret_access_key = credential("secret_access_key")?;
    Ok(ExportRequest {
        destination: ExportDestination {
            bucket,
            prefix,
            endpoint,
            region,
            virtual_host,
            access_key_id,
            secret_access_key,
        },
        verify,
    })
}

impl ExportDestination {
    /// The object key an image gets: `prefix/{task_id}-{index}.{ext}`.
    pub fn object_key(&self, name: &str) -> String {
        if self.prefix.is_empty() { name.to_string() } else { format!("{}/{name}", self.prefix) }
    }

    /// What the admin API shows: never the secret itself.
    pub fn public_json(&self) -> Value {
        let secret = if self.secret_access_key.starts_with(ENV_PREFIX) {
            self.secret_access_key.clone()
        } else {
            "<sealed>".to_string()
        };
        json!({
            "bucket": self.bucket,
            "prefix": self.prefix,
            "endpoint": self.endpoint,
            "region": self.region,
            "virtual_host": self.virtual_host,
            "access_key_id": self.access_key_id,
            "secret_access_key": secret,
        })
    }
}

/// The name of the `index`-th image of a task in the destination (before the prefix).
pub fn object_name(task_id: &str, index: usize, ext: &str) -> String {
    format!("{task_id}-{index}.{ext}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<ExportRequest, FieldError> {
        parse_request(v.as_object().unwrap())
    }

    #[test]
    fn a_full_destination_parses() {
        let r = parse(json!({"bucket": "acme-images", "prefix": "/gen/2026/", "endpoint": "http://127.0.0.1:9000/",
            "region": "eu-central-1", "access_key_id": "AKIA1", "secret_access_key": "env::ACME_SECRET"}))
        .unwrap();
        let d = &r.destination;
        assert_eq!((d.bucket.as_str(), d.prefix.as_str()), ("acme-images", "gen/2026"));
        assert_eq!(d.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(r.verify);
        assert_eq!(d.object_key(&object_name("task_1", 0, "png")), "gen/2026/task_1-0.png");
        assert_eq!(d.public_json()["secret_access_key"], "env::ACME_SECRET");
        let mut sealed = d.clone();
        sealed.secret_access_key = "sealed:v1:abc".into();
        assert_eq!(sealed.public_json()["secret_access_key"], "<sealed>");
        assert!(!format!("{r:?}").contains("ACME"), "Debug shows no credentials");
    }

    #[test]
    fn bad_fields_are_named() {
        let ok = json!({"bucket": "acme", "access_key_id": "a", "secret_access_key": "s"});
        assert!(parse(ok.clone()).is_ok());
        for (patch, param) in [
            (json!({"bucket": null}), "bucket"),
            (json!({"bucket": "Acme"}), "bucket"),
            (json!({"bucket": "ab"}), "bucket"),
            (json!({"prefix": "a/../b"}), "prefix"),
            (json!({"prefix": "a b"}), "prefix"),
            (json!({"endpoint": "ftp://x"}), "endpoint"),
            (json!({"region": "eu west"}), "region"),
            (json!({"virtual_host": "yes"}), "virtual_host"),
            (json!({"secret_access_key": ""}), "secret_access_key"),
            (json!({"access_key_id": "env::1BAD"}), "access_key_id"),
            (json!({"colour": "red"}), "colour"),
        ] {
            let mut body = ok.clone();
            for (k, v) in patch.as_object().unwrap() {
                body[k] = v.clone();
            }
            assert_eq!(parse(body).unwrap_err().0, param, "{patch}");
        }
    }
}
