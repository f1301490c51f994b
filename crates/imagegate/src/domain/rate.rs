//! Request rates as the generic cell rate algorithm (GCRA): a rate of `n` per minute lets a
//! burst of `n` through at once, then one every `60 s / n`. Its whole state is one instant (the
//! theoretical arrival time, TAT), so a store shared by replicas keeps it in one row and
//! updates it in one statement (`store::postgres`), and the embedded store in memory.

/// Microseconds: one minute split `n` ways stays exact enough for any `n` up to millions.
const MINUTE_US: i64 = 60_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gcra {
    /// Time one request uses up (µs).
    pub interval_us: i64,
    /// How far ahead of now the TAT may run: the burst (µs).
    pub tolerance_us: i64,
}

impl Gcra {
    /// `n` per minute with bursts of `n` (`n` > 0).
    pub fn per_minute(n: u32) -> Gcra {
        let n = i64::from(n.max(1));
        let interval_us = (MINUTE_US / n).max(1);
        Gcra { interval_us, tolerance_us: interval_us * (n - 1) }
    }

    /// Takes one request at `now_us` given the stored TAT: `Ok(new TAT)` to store, or
    /// `Err(wait in µs)` until one would be let through (nothing changes then).
    pub fn take(&self, tat_us: Option<i64>, now_us: i64) -> Result<i64, i64> {
        let tat = tat_us.unwrap_or(now_us).max(now_us);
        let ahead = tat - now_us;
        if ahead > self.tolerance_us { Err(ahead - self.tolerance_us) } else { Ok(tat + self.interval_us) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_n_then_one_per_interval() {
        let g = Gcra::per_minute(10);
        let mut tat = None;
        for i in 0..10 {
            tat = Some(g.take(tat, 0).unwrap_or_else(|w| panic!("request {i} refused, wait {w}")));
        }
        let wait = g.take(tat, 0).unwrap_err();
        assert_eq!(wait, 6_000_000, "the 11th waits one interval (6 s)");
        assert!(g.take(tat, 5_999_999).is_err());
        let tat = g.take(tat, 6_000_000).expect("one more after 6 s");
        assert!(g.take(Some(tat), 6_000_000).is_err(), "and only one");
        assert!(g.take(Some(tat), 60_000_000 + 6_000_000).is_ok(), "a quiet minute refills the burst");
    }
}
