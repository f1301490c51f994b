//! Google API error bodies `{"error": {code, message, status, details}}` → [`ProviderError`].

use serde::Deserialize;
use std::time::Duration;

use crate::domain::duration::parse_retry_after;
use crate::providers::ProviderError;

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: GoogleError,
}

#[derive(Debug, Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<serde_json::Value>,
}

/// Classifies a non-200 answer. `retry_after` is the HTTP `Retry-After` header, if any;
/// `RetryInfo.retryDelay` in the body wins over it.
pub fn classify(status: u16, body: &[u8], retry_after: Option<&str>) -> ProviderError {
    let parsed: Option<GoogleError> = serde_json::from_slice::<ErrorBody>(body).ok().map(|b| b.error);
    let message = match &parsed {
        Some(e) if !e.message.is_empty() => e.message.clone(),
        _ => format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])),
    };
    let google_status = parsed.as_ref().map(|e| e.status.as_str()).unwrap_or("");
    // Google answers a wrong, expired or blocked key with 400 INVALID_ARGUMENT (not 401/403):
    // the reason in `ErrorInfo` tells it from a bad request.
    if parsed.as_ref().and_then(|e| error_reason(&e.details)).is_some_and(|r| KEY_REASONS.contains(&r)) {
        return ProviderError::Auth { message };
    }
    match (status, google_status) {
        (429, _) | (_, "RESOURCE_EXHAUSTED") => {
            let hinted = parsed.as_ref().and_then(|e| retry_delay(&e.details));
            ProviderError::RateLimited {
                retry_after: hinted.or_else(|| retry_after.and_then(parse_retry_after)),
                message,
            }
        }
        (401 | 403, _) | (_, "UNAUTHENTICATED" | "PERMISSION_DENIED") => ProviderError::Auth { message },
        (504, _) | (_, "DEADLINE_EXCEEDED") => ProviderError::Overloaded { status, message },
        (400 | 404 | 413, _) => ProviderError::Invalid { message },
        (500..=599, _) => ProviderError::Overloaded { status, message },
        _ => ProviderError::Malformed { message },
    }
}

/// `ErrorInfo.reason`s that mean the channel's credential is refused.
const KEY_REASONS: &[&str] = &[
    "API_KEY_INVALID",
    "API_KEY_EXPIRED",
    "API_KEY_SERVICE_BLOCKED",
    "API_KEY_HTTP_REFERRER_BLOCKED",
    "API_KEY_IP_ADDRESS_BLOCKED",
    "API_KEY_ANDROID_APP_BLOCKED",
    "API_KEY_IOS_APP_BLOCKED",
    "CONSUMER_SUSPENDED",
    "SERVICE_DISABLED",
    "BILLING_DISABLED",
];

/// `ErrorInfo.reason` from an error's details.
fn error_reason(details: &[serde_json::Value]) -> Option<&str> {
    details
        .iter()
        .find(|d| d.get("@type").and_then(|t| t.as_str()).is_some_and(|t| t.ends_with("google.rpc.ErrorInfo")))
        .and_then(|d| d.get("reason")?.as_str())
}

/// `RetryInfo.retryDelay` ("19s", "19.424s") from an error's details.
fn retry_delay(details: &[serde_json::Value]) -> Option<Duration> {
    details
        .iter()
        .find(|d| d.get("@type").and_then(|t| t.as_str()).is_some_and(|t| t.ends_with("google.rpc.RetryInfo")))
        .and_then(|d| d.get("retryDelay")?.as_str().map(str::to_string))
        .and_then(|s| parse_seconds(&s))
}

fn parse_seconds(s: &str) -> Option<Duration> {
    let secs: f64 = s.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../imagegate-fakes/fixtures/gemini/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn quota_errors_carry_the_retry_delay() {
        match classify(429, &fixture("error-429-quota.json"), Some("5")) {
            ProviderError::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(19)))
            }
            other => panic!("{other:?}"),
        }
        match classify(429, b"", Some("7")) {
            ProviderError::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn each_error_has_its_kind() {
        assert!(matches!(classify(503, &fixture("error-503-overloaded.json"), None), ProviderError::Overloaded { .. }));
        assert!(matches!(classify(403, &fixture("error-403-key.json"), None), ProviderError::Auth { .. }));
        assert!(matches!(classify(400, &fixture("error-400-invalid.json"), None), ProviderError::Invalid { .. }));
        assert!(
            matches!(classify(400, &fixture("error-400-api-key-invalid.json"), None), ProviderError::Auth { .. }),
            "a wrong key is a 400 with ErrorInfo.reason API_KEY_INVALID"
        );
        assert!(matches!(classify(502, b"<html>bad gateway</html>", None), ProviderError::Overloaded { .. }));
        assert!(classify(500, b"", None).is_retryable());
        assert!(!classify(400, &fixture("error-400-invalid.json"), None).is_retryable());
    }

    #[test]
    fn retry_delay_parses_fractional_seconds() {
        assert_eq!(parse_seconds("19.5s"), Some(Duration::from_millis(19_500)));
        assert_eq!(parse_seconds("-1s"), None);
    }
}
