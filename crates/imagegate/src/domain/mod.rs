//! Pure domain logic: no IO. Ids, sizes, request validation, task states, durations.
//! Everything here is unit-tested without a runtime.

pub mod duration;
pub mod ids;
pub mod models;
pub mod request;
pub mod retry;
pub mod sizes;
pub mod task;

/// Current Unix time in seconds (the API's time unit).
pub fn now_secs() -> i64 {
    now_millis() / 1000
}

/// Current Unix time in milliseconds (leases and internal bookkeeping).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
