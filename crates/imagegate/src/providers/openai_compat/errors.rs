//! OpenAI error bodies `{"error": {message, type, param, code}}` → [`ProviderError`].

use serde::Deserialize;

use crate::domain::duration::parse_retry_after;
use crate::providers::ProviderError;

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: OpenAiError,
}

#[derive(Debug, Deserialize)]
struct OpenAiError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: Option<String>,
}

/// Codes that mean "the image was refused on content grounds".
const REFUSALS: &[&str] = &["moderation_blocked", "content_policy_violation"];

pub fn classify(status: u16, body: &[u8], retry_after: Option<&str>) -> ProviderError {
    let parsed = serde_json::from_slice::<ErrorBody>(body).ok().map(|b| b.error);
    let message = match &parsed {
        Some(e) if !e.message.is_empty() => e.message.clone(),
        _ => format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])),
    };
    let code = parsed.as_ref().and_then(|e| e.code.clone()).unwrap_or_default();
    if REFUSALS.contains(&code.as_str()) {
        return ProviderError::Rejected { reason: code, message, prompt: true };
    }
    match status {
        // Out of credit is the credential's problem: fail over to another channel.
        429 if code == "insufficient_quota" => ProviderError::Auth { message },
        429 => ProviderError::RateLimited { retry_after: retry_after.and_then(parse_retry_after), message },
        401 | 403 => ProviderError::Auth { message },
        400 | 404 | 413 | 422 => ProviderError::Invalid { message },
        500..=599 => ProviderError::Overloaded { status, message },
        _ => ProviderError::Malformed { message },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../imagegate-fakes/fixtures/openai/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn each_error_has_its_kind() {
        assert!(matches!(classify(400, &fixture("error-moderation.json"), None), ProviderError::Rejected { .. }));
        assert!(matches!(classify(400, &fixture("error-400.json"), None), ProviderError::Invalid { .. }));
        assert!(matches!(classify(401, b"{}", None), ProviderError::Auth { .. }));
        match classify(429, b"{\"error\": {\"message\": \"slow down\", \"code\": \"rate_limit_exceeded\"}}", Some("7"))
        {
            ProviderError::RateLimited { retry_after, .. } => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(7)))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(429, b"{\"error\": {\"message\": \"no credit\", \"code\": \"insufficient_quota\"}}", None),
            ProviderError::Auth { .. }
        ));
        assert!(classify(503, b"", None).is_retryable());
    }
}
