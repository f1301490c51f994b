//! Retry math for upstream calls: exponential backoff with full jitter, bounded attempts, a
//! total deadline no retry may outlive, and server hints (Retry-After, Gemini `retryDelay`)
//! honoured within a cap. Pure: the caller supplies the clock and the randomness.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    /// Backoff before the second try; doubles each time up to `max_backoff`.
    pub base: Duration,
    pub max_backoff: Duration,
    /// A server hint longer than this is not waited for (the call fails instead).
    pub max_hint: Duration,
    /// Time limit of one try (`None`: the rest of the deadline), so a hung call is retried.
    pub try_timeout: Option<Duration>,
}

/// What to do after a failed try.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Wait this long, then try again.
    RetryAfter(Duration),
    GiveUp,
}

impl RetryPolicy {
    /// After `failures` failed tries (1-based) with `elapsed` spent of `deadline`: retry or not.
    /// `hint` is the server's requested delay; `jitter` is uniform in [0, 1).
    pub fn decide(
        &self,
        failures: u32,
        retryable: bool,
        hint: Option<Duration>,
        elapsed: Duration,
        deadline: Duration,
        jitter: f64,
    ) -> Decision {
        if !retryable || failures == 0 || failures >= self.max_attempts {
            return Decision::GiveUp;
        }
        let delay = match hint {
            Some(h) if h > self.max_hint => return Decision::GiveUp,
            // A hint is a floor: waiting less would only earn another refusal.
            Some(h) => h.max(self.full_jitter(failures, jitter) / 4),
            None => self.full_jitter(failures, jitter),
        };
        // Leave the next try some time to work: never start one in the last 5 % of the deadline.
        if elapsed + delay + deadline / 20 >= deadline {
            return Decision::GiveUp;
        }
        Decision::RetryAfter(delay)
    }

    /// Full jitter: uniform in [0, min(max_backoff, base · 2^(failures-1))].
    fn full_jitter(&self, failures: u32, jitter: f64) -> Duration {
        let exp = self.base.saturating_mul(1u32 << (failures - 1).min(20));
        exp.min(self.max_backoff).mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DL: Duration = Duration::from_secs(300);

    /// A policy for the tests (the default one lives in config.default.toml alone).
    impl Default for RetryPolicy {
        fn default() -> Self {
            RetryPolicy {
                max_attempts: 4,
                base: Duration::from_millis(500),
                max_backoff: Duration::from_secs(20),
                max_hint: Duration::from_secs(60),
                try_timeout: None,
            }
        }
    }

    #[test]
    fn never_retries_what_cannot_succeed() {
        let p = RetryPolicy::default();
        assert_eq!(p.decide(1, false, None, Duration::ZERO, DL, 0.5), Decision::GiveUp);
    }

    #[test]
    fn attempts_are_bounded() {
        let p = RetryPolicy::default();
        assert!(matches!(p.decide(3, true, None, Duration::ZERO, DL, 0.5), Decision::RetryAfter(_)));
        assert_eq!(p.decide(4, true, None, Duration::ZERO, DL, 0.5), Decision::GiveUp);
    }

    #[test]
    fn backoff_grows_exponentially_under_full_jitter() {
        let p = RetryPolicy::default();
        let at = |f, j| match p.decide(f, true, None, Duration::ZERO, DL, j) {
            Decision::RetryAfter(d) => d,
            Decision::GiveUp => panic!("gave up"),
        };
        assert_eq!(at(1, 0.999_999).as_millis(), 499);
        assert_eq!(at(2, 0.999_999).as_millis(), 999);
        assert_eq!(at(3, 0.999_999).as_millis(), 1999);
        assert_eq!(at(1, 0.0), Duration::ZERO);
        let long = RetryPolicy { max_attempts: 30, ..p };
        assert!(matches!(long.decide(25, true, None, Duration::ZERO, DL, 1.0),
            Decision::RetryAfter(d) if d == Duration::from_secs(20)));
    }

    #[test]
    fn server_hints_are_honoured_within_the_cap() {
        let p = RetryPolicy::default();
        let hint = Some(Duration::from_secs(19));
        assert_eq!(p.decide(1, true, hint, Duration::ZERO, DL, 0.5), Decision::RetryAfter(Duration::from_secs(19)));
        assert_eq!(p.decide(1, true, Some(Duration::from_secs(3600)), Duration::ZERO, DL, 0.5), Decision::GiveUp);
    }

    #[test]
    fn a_retry_never_outlives_the_deadline() {
        let p = RetryPolicy::default();
        let hint = Some(Duration::from_secs(19));
        assert_eq!(p.decide(1, true, hint, Duration::from_secs(270), DL, 0.5), Decision::GiveUp);
        assert!(matches!(p.decide(1, true, hint, Duration::from_secs(200), DL, 0.5), Decision::RetryAfter(_)));
    }
}
