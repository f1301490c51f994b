//! Per-key requests-per-minute, in process (GCRA via governor). With several replicas each
//! enforces the rate on its own share of the traffic; the durable limits (concurrency, daily
//! images, budget) are checked in the database and hold across replicas.

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Default)]
pub struct KeyRates {
    map: Mutex<HashMap<String, (u32, DefaultDirectRateLimiter)>>,
}

impl KeyRates {
    /// Takes one request from the key's budget of `rpm` per minute; `Err` says how long to wait.
    pub fn check(&self, key: &str, rpm: u32) -> Result<(), Duration> {
        let Some(n) = NonZeroU32::new(rpm) else { return Ok(()) };
        let Ok(mut map) = self.map.lock() else { return Ok(()) };
        let entry = map.entry(key.to_string()).or_insert_with(|| (rpm, RateLimiter::direct(Quota::per_minute(n))));
        if entry.0 != rpm {
            *entry = (rpm, RateLimiter::direct(Quota::per_minute(n)));
        }
        entry.1.check().map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_per_key() {
        let r = KeyRates::default();
        for _ in 0..3 {
            assert!(r.check("a", 3).is_ok());
        }
        let wait = r.check("a", 3).unwrap_err();
        assert!(wait > Duration::from_secs(1) && wait <= Duration::from_secs(20), "{wait:?}");
        assert!(r.check("b", 3).is_ok(), "another key is unaffected");
        assert!(r.check("c", 0).is_ok(), "0 means unlimited");
    }
}
