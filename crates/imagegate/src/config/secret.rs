//! Secret strings: never printed, and may be referenced by location (`env::NAME`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A secret value or a reference to one. `Debug`, `Display` and `Serialize` redact it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Resolves `env::NAME` references; `Ok(None)` for empty or an unset variable.
    pub fn resolve(&self) -> Result<Option<String>, String> {
        if let Some(name) = self.0.strip_prefix("env::") {
            if name.is_empty() {
                return Err("\"env::\" needs a variable name".into());
            }
            return Ok(std::env::var(name).ok().filter(|v| !v.is_empty()));
        }
        Ok(Some(self.0.clone()).filter(|v| !v.is_empty()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted(&self.0))
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&redacted(&self.0))
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// References (`env::NAME`) are shown; values never are.
fn redacted(s: &str) -> String {
    if s.is_empty() || s.starts_with("env::") { s.to_string() } else { "<redacted>".to_string() }
}

/// A database or storage URL as it may be shown: a password in it (`user:PASS@` or
/// `?password=`) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Ok(mut u) = url::Url::parse(url) else { return url.to_string() };
    let mut changed = false;
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
        changed = true;
    }
    if u.query_pairs().any(|(k, _)| k == "password") {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if k == "password" { "***".to_string() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
        changed = true;
    }
    if changed { u.to_string() } else { url.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_hidden() {
        assert_eq!(redact_url("postgres://app:s3cret@db:5432/ig"), "postgres://app:***@db:5432/ig");
        let shown = redact_url("postgres://app@db/ig?sslmode=require&password=s3cret");
        assert!(!shown.contains("s3cret") && shown.contains("sslmode=require"), "{shown}");
        assert_eq!(redact_url("sqlite:///data/imagegate.db"), "sqlite:///data/imagegate.db");
    }

    #[test]
    fn values_never_print_but_references_do() {
        let s = Secret::new("sk-very-secret");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Secret::new("env::GEMINI_API_KEY")), "env::GEMINI_API_KEY");
        assert_eq!(s.resolve().unwrap().as_deref(), Some("sk-very-secret"));
        assert!(Secret::new("env::").resolve().is_err());
    }
}
