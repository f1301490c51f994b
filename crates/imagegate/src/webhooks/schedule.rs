//! When to try a webhook again: a fixed schedule with ±10 % jitter, or the receiver's
//! `Retry-After` within bounds. Pure.

use std::time::Duration;

/// The delay before the next attempt after `failures` failed attempts (1-based), or `None`
/// when the schedule is exhausted. `retry_after` is the receiver's hint; `jitter` is in [0, 1).
pub fn next_delay(
    schedule: &[Duration],
    failures: usize,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    let planned = *schedule.get(failures.checked_sub(1)?)?;
    if let Some(hint) = retry_after {
        // Honour the receiver, but never sooner than 1 s nor later than the longest step.
        let cap = schedule.iter().max().copied().unwrap_or(planned);
        return Some(hint.clamp(Duration::from_secs(1).min(cap), cap));
    }
    let factor = 0.9 + 0.2 * jitter.clamp(0.0, 1.0);
    Some(planned.mul_f64(factor))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A schedule for the tests (the default one lives in config.default.toml alone).
    fn default_schedule() -> Vec<Duration> {
        [5, 300, 1800, 7200, 18000, 36000, 36000].into_iter().map(Duration::from_secs).collect()
    }

    #[test]
    fn follows_the_schedule_then_gives_up() {
        let s = default_schedule();
        assert_eq!(next_delay(&s, 1, None, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(next_delay(&s, 2, None, 0.5), Some(Duration::from_secs(300)));
        assert_eq!(next_delay(&s, 7, None, 0.5), Some(Duration::from_secs(36000)));
        assert_eq!(next_delay(&s, 8, None, 0.5), None);
        assert_eq!(next_delay(&s, 0, None, 0.5), None);
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let s = default_schedule();
        let lo = next_delay(&s, 2, None, 0.0).unwrap();
        let hi = next_delay(&s, 2, None, 0.999).unwrap();
        assert!(lo >= Duration::from_secs(270) && hi <= Duration::from_secs(330), "{lo:?} {hi:?}");
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let s = default_schedule();
        assert_eq!(next_delay(&s, 1, Some(Duration::from_secs(60)), 0.5), Some(Duration::from_secs(60)));
        assert_eq!(next_delay(&s, 1, Some(Duration::from_secs(999_999)), 0.5), Some(Duration::from_secs(36000)));
        assert_eq!(next_delay(&s, 1, Some(Duration::ZERO), 0.5), Some(Duration::from_secs(1)));
    }
}
