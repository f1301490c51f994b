//! Duration strings as the API and config write them: `"2s"`, `"12h"`, `"30d"`, `"300ms"`.

use std::time::Duration;

/// Parses a human duration (`humantime` syntax: `2s`, `5m`, `12h`, `30d`, `1h 30m`).
pub fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); write e.g. \"30s\", \"12h\" or \"7d\""))
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
}
