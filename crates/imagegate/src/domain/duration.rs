//! Duration strings as the API and config write them: `"2s"`, `"12h"`, `"30d"`, `"300ms"`.

use std::time::Duration;

/// Parses a human duration (`humantime` syntax: `2s`, `5m`, `12h`, `30d`, `1h 30m`).
pub fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"30s\", \"12h\" or \"7d\""))
}

/// HTTP `Retry-After`: delay-seconds or an HTTP date (a past date means "now"). Capped at a day.
pub fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs.min(86_400)));
    }
    let when = httpdate::parse_http_date(v.trim()).ok()?;
    Some(when.duration_since(std::time::SystemTime::now()).unwrap_or_default().min(Duration::from_secs(86_400)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_the_docs_use() {
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse("300ms"), Ok(Duration::from_millis(300)));
        assert!(parse("soon").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
