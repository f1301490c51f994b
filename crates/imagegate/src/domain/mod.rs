//! Pure domain logic: no IO. Ids, sizes, request validation, task states, durations.
//! Everything here is unit-tested without a runtime.

pub mod batch;
pub mod batch_input;
pub mod conversation;
pub mod durability;
pub mod duration;
pub mod export;
pub mod flex;
pub mod ids;
pub mod models;
pub mod policy;
pub mod pricing;
pub mod rate;
pub mod request;
pub mod retry;
pub mod sizes;
pub mod task;
pub mod variant;

/// Current Unix time in seconds (the API's time unit).
pub fn now_secs() -> i64 {
    now_millis() / 1000
}

/// Today's UTC date, `YYYY-MM-DD` (usage is booked by day).
pub fn utc_day(unix_secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()[..10].to_string()
}

/// Current Unix time in milliseconds (leases and internal bookkeeping).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// Shortens `text` to at most `max_bytes` bytes, at a character boundary, marking the cut with
/// `…` (error details from elsewhere can be long, and are not always ASCII).
pub fn truncate_text(text: &mut String, max_bytes: usize) {
    if text.len() <= max_bytes {
        return;
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_is_cut_at_a_character_boundary() {
        let mut s = "é".repeat(200);
        super::truncate_text(&mut s, 301);
        assert!(s.ends_with('…') && s.len() <= 301 + '…'.len_utf8());
        let mut short = "ok".to_string();
        super::truncate_text(&mut short, 10);
        assert_eq!(short, "ok");
    }
}
