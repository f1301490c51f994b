//! Pure domain logic: no IO. Ids, sizes, request validation, task states, durations.
//! Everything here is unit-tested without a runtime.

pub mod duration;
pub mod export;
pub mod ids;
pub mod models;
pub mod policy;
pub mod pricing;
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
