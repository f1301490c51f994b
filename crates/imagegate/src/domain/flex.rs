//! Deadline routing: `"service_tier": "flex"` with a `"deadline"` (seconds from now, or an
//! RFC 3339 time) on the async routes. Parsing only; the routing is `crate::batches::flex`.

use serde_json::Value;

use super::request::Invalid;

/// The longest deadline taken (a provider batch job's own window is a day).
pub const MAX_DEADLINE_SECS: i64 = 24 * 3600;
/// The deadline of a flex request that names none.
pub const DEFAULT_DEADLINE_SECS: i64 = MAX_DEADLINE_SECS;

/// A request's tier: `None` for the default (realtime), else the flex deadline (Unix seconds).
pub fn parse(body: &Value, now_secs: i64) -> Result<Option<i64>, Invalid> {
    let bad = |param: &str, message: String| Invalid { message, param: Some(param.to_string()), code: "invalid_value" };
    let tier = match body.get("service_tier") {
        None | Some(Value::Null) => "default",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(bad("service_tier", "'service_tier' must be \"default\" or \"flex\".".into())),
    };
    let deadline = body.get("deadline").filter(|d| !d.is_null());
    match tier {
        "default" | "auto" => {
            if deadline.is_some() {
                return Err(bad("deadline", "'deadline' goes with \"service_tier\": \"flex\".".into()));
            }
            Ok(None)
        }
        "flex" => {
            let at = match deadline {
                None => now_secs + DEFAULT_DEADLINE_SECS,
                Some(Value::Number(n)) => match n.as_f64() {
                    Some(secs) if secs >= 1.0 => now_secs + secs.ceil() as i64,
                    _ => return Err(bad("deadline", "'deadline' in seconds must be at least 1.".into())),
                },
                Some(Value::String(t)) => match humantime::parse_rfc3339_weak(t) {
                    Ok(time) => time.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0),
                    Err(_) => {
                        return Err(bad("deadline", format!("'deadline' {t:?} is not an RFC 3339 time.")));
                    }
                },
                Some(_) => {
                    return Err(bad("deadline", "'deadline' is seconds from now or an RFC 3339 time.".into()));
                }
            };
            if at <= now_secs {
                return Err(bad("deadline", "'deadline' has already passed.".into()));
            }
            if at - now_secs > MAX_DEADLINE_SECS {
                return Err(bad("deadline", format!("'deadline' may be at most {MAX_DEADLINE_SECS} seconds away.")));
            }
            Ok(Some(at))
        }
        other => Err(bad("service_tier", format!("Unknown service_tier {other:?}: use \"default\" or \"flex\"."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn deadlines_are_seconds_or_times_within_a_day() {
        assert_eq!(parse(&json!({}), NOW).unwrap(), None);
        assert_eq!(parse(&json!({"service_tier": "default"}), NOW).unwrap(), None);
        assert_eq!(parse(&json!({"service_tier": "flex", "deadline": 600}), NOW).unwrap(), Some(NOW + 600));
        assert_eq!(parse(&json!({"service_tier": "flex"}), NOW).unwrap(), Some(NOW + DEFAULT_DEADLINE_SECS));
        let at = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs((NOW + 3600) as u64),
        );
        assert_eq!(parse(&json!({"service_tier": "flex", "deadline": at.to_string()}), NOW).unwrap(), Some(NOW + 3600));
        for bad in [
            json!({"service_tier": "flex", "deadline": 0}),
            json!({"service_tier": "flex", "deadline": 90_000}),
            json!({"service_tier": "flex", "deadline": "yesterday"}),
            json!({"service_tier": "flex", "deadline": "2020-01-01T00:00:00Z"}),
            json!({"deadline": 60}),
            json!({"service_tier": "priority"}),
        ] {
            assert!(parse(&bad, NOW).is_err(), "{bad}");
        }
    }
}
