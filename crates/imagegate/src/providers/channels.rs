//! Channels: one provider may have several upstream credentials or base URLs. Routing picks a
//! healthy channel with capacity (weighted); each channel bounds its concurrency and per-minute
//! rate, opens a circuit breaker after repeated failures (probing again after a cool-down), and
//! is disabled when its credential is refused.

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{Provider, ProviderError};

/// Limits and routing weight of one channel.
#[derive(Debug, Clone)]
pub struct ChannelSpec {
    pub name: String,
    pub weight: u32,
    /// 0: unlimited.
    pub max_concurrency: usize,
    /// Requests per minute; 0: unlimited.
    pub rpm: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Consecutive retryable failures that open the breaker.
    pub failures: u32,
    pub cooldown: Duration,
    /// A channel disabled because its credential was refused is probed again after this long
    /// (a key re-enabled upstream, billing fixed), unless an admin re-enables it sooner.
    pub disabled_probe: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Healthy,
    /// The upstream asked this channel to wait (a 429 with `Retry-After` / `retryDelay`):
    /// skipped until then.
    RateLimited,
    /// Breaker open: skipped until the cool-down ends, then one probe is let through.
    Open,
    /// The upstream refused the credential: skipped, probed again after `disabled_probe`.
    Disabled,
}

impl ChannelState {
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelState::Healthy => "healthy",
            ChannelState::RateLimited => "rate_limited",
            ChannelState::Open => "open",
            ChannelState::Disabled => "disabled",
        }
    }
}

/// The breaker's bookkeeping. Pure: the caller supplies the clock.
#[derive(Debug, Clone, Default)]
pub struct Health {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    /// Told by the upstream to wait until then.
    resting_until: Option<Instant>,
    probing: bool,
    /// Why and when the credential was refused.
    disabled: Option<(String, Instant)>,
}

impl Health {
    pub fn state(&self, now: Instant) -> ChannelState {
        if self.disabled.is_some() {
            ChannelState::Disabled
        } else if self.open_until.is_some_and(|t| now < t) || self.probing {
            ChannelState::Open
        } else if self.resting_until.is_some_and(|t| now < t) {
            ChannelState::RateLimited
        } else {
            ChannelState::Healthy
        }
    }

    /// Whether a call may go through now; after a cool-down (or a disabled channel's probe
    /// delay) the first caller is the probe.
    pub fn admit(&mut self, now: Instant, cfg: &BreakerConfig) -> bool {
        if !self.could_admit(now, cfg) {
            return false;
        }
        let due_probe = self.disabled.is_some() || self.open_until.is_some();
        if due_probe {
            self.probing = true;
        }
        true
    }

    /// Whether `admit` would let a call through (without taking the probe).
    pub fn could_admit(&self, now: Instant, cfg: &BreakerConfig) -> bool {
        if self.probing || self.resting_until.is_some_and(|t| now < t) {
            return false;
        }
        match &self.disabled {
            Some((_, at)) => now >= *at + cfg.disabled_probe,
            None => self.open_until.is_none_or(|t| now >= t),
        }
    }

    /// When a channel that is only resting (not open, not disabled) may be called again.
    pub fn resting(&self, now: Instant) -> Option<Instant> {
        (self.state(now) == ChannelState::RateLimited).then_some(self.resting_until).flatten()
    }

    pub fn success(&mut self) {
        *self = Health::default();
    }

    pub fn failure(&mut self, now: Instant, cfg: &BreakerConfig) {
        self.consecutive_failures += 1;
        if self.probing || self.consecutive_failures >= cfg.failures {
            self.open_until = Some(now + cfg.cooldown);
        }
        self.probing = false;
    }

    /// The upstream asked this channel to wait until `until`: no call goes to it before then.
    pub fn rest(&mut self, until: Instant) {
        self.resting_until = Some(self.resting_until.map_or(until, |t| t.max(until)));
        self.probing = false;
    }

    pub fn disable(&mut self, why: String, now: Instant) {
        self.disabled = Some((why, now));
        self.probing = false;
    }

    /// An admin's "use it again": every mark is cleared.
    pub fn enable(&mut self) {
        *self = Health::default();
    }

    pub fn disabled_reason(&self) -> Option<&str> {
        self.disabled.as_ref().map(|(why, _)| why.as_str())
    }

    /// A call admitted but never made (e.g. cancelled): give the probe back.
    pub fn release_probe(&mut self) {
        self.probing = false;
    }
}

pub struct Channel {
    pub spec: ChannelSpec,
    pub provider: Arc<dyn Provider>,
    slots: Option<Arc<Semaphore>>,
    rate: Option<DefaultDirectRateLimiter>,
    health: Mutex<Health>,
    breaker: BreakerConfig,
    in_flight: AtomicUsize,
    calls: AtomicU64,
    errors: AtomicU64,
    /// Outcomes of the last calls (true: failed), newest last.
    recent: Mutex<std::collections::VecDeque<bool>>,
}

/// Calls the recent error rate is measured over.
const RECENT: usize = 100;

impl Channel {
    pub fn new(spec: ChannelSpec, provider: Arc<dyn Provider>, breaker: BreakerConfig) -> Channel {
        let slots = (spec.max_concurrency > 0).then(|| Arc::new(Semaphore::new(spec.max_concurrency)));
        let rate = NonZeroU32::new(spec.rpm).map(|n| RateLimiter::direct(Quota::per_minute(n)));
        Channel {
            spec,
            provider,
            slots,
            rate,
            health: Mutex::new(Health::default()),
            breaker,
            in_flight: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            recent: Mutex::new(std::collections::VecDeque::with_capacity(RECENT)),
        }
    }

    /// Share of the last (up to 100) calls that failed.
    pub fn recent_error_rate(&self) -> f64 {
        let Ok(r) = self.recent.lock() else { return 0.0 };
        if r.is_empty() { 0.0 } else { r.iter().filter(|f| **f).count() as f64 / r.len() as f64 }
    }

    fn remember(&self, failed: bool) {
        if let Ok(mut r) = self.recent.lock() {
            if r.len() == RECENT {
                r.pop_front();
            }
            r.push_back(failed);
        }
    }

    pub fn state(&self) -> ChannelState {
        self.health.lock().map(|h| h.state(Instant::now())).unwrap_or(ChannelState::Healthy)
    }

    pub fn disabled_reason(&self) -> Option<String> {
        self.health.lock().ok().and_then(|h| h.disabled_reason().map(str::to_string))
    }

    /// How long the upstream asked this channel to wait, from now (rate limited channels).
    pub fn resting_for(&self) -> Option<Duration> {
        let now = Instant::now();
        self.health.lock().ok().and_then(|h| h.resting(now)).map(|t| t.saturating_duration_since(now))
    }

    /// Clears every mark (disabled, open, rate limited): an admin's "use it again".
    pub fn enable(&self) {
        if let Ok(mut h) = self.health.lock() {
            h.enable();
        }
        tracing::info!(channel = self.spec.name, "channel re-enabled by an admin");
    }

    fn could_admit(&self, now: Instant) -> bool {
        self.health.lock().map(|h| h.could_admit(now, &self.breaker)).unwrap_or(false)
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// (calls, errors) since start.
    pub fn counts(&self) -> (u64, u64) {
        (self.calls.load(Ordering::Relaxed), self.errors.load(Ordering::Relaxed))
    }

    fn has_capacity(&self) -> bool {
        self.slots.as_ref().is_none_or(|s| s.available_permits() > 0)
    }
}

/// A channel taken for one call: holds its concurrency slot until dropped.
pub struct ChannelLease {
    pub index: usize,
    pub channel: Arc<Channel>,
    _permit: Option<OwnedSemaphorePermit>,
    /// The channel's slot for the cluster, when replicas share its limits.
    _slot: Option<super::quota::SlotGuard>,
    reported: bool,
}

impl ChannelLease {
    /// Records the call's outcome on the channel's health.
    pub fn report(mut self, outcome: Result<(), &ProviderError>) {
        self.reported = true;
        let ch = &self.channel;
        ch.calls.fetch_add(1, Ordering::Relaxed);
        ch.remember(matches!(outcome, Err(e) if e.is_retryable() || matches!(e, ProviderError::Auth { .. })));
        let Ok(mut h) = ch.health.lock() else { return };
        match outcome {
            Ok(()) => h.success(),
            Err(ProviderError::Auth { message }) => {
                ch.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(channel = ch.spec.name, error = %message, "upstream refused this channel's credential; channel disabled");
                h.disable(message.clone(), Instant::now());
            }
            // The upstream said how long this channel must wait: no call goes to it before
            // then (other channels take the traffic).
            Err(ProviderError::RateLimited { retry_after: Some(wait), .. }) => {
                ch.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    channel = ch.spec.name,
                    wait_secs = wait.as_secs_f64(),
                    "channel rate limited by the upstream; resting it"
                );
                h.rest(Instant::now() + *wait);
            }
            Err(e) if e.is_retryable() => {
                ch.errors.fetch_add(1, Ordering::Relaxed);
                h.failure(Instant::now(), &ch.breaker);
                if h.state(Instant::now()) == ChannelState::Open {
                    tracing::warn!(channel = ch.spec.name, "channel breaker open after repeated failures");
                }
            }
            // Content refusals and bad requests say nothing about the channel's health.
            Err(_) => h.success(),
        }
    }
}

impl Drop for ChannelLease {
    fn drop(&mut self) {
        self.channel.in_flight.fetch_sub(1, Ordering::Relaxed);
        if !self.reported
            && let Ok(mut h) = self.channel.health.lock()
        {
            h.release_probe();
        }
    }
}

/// Why no channel could take a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoChannel {
    /// Every channel is disabled or its breaker is open.
    Unhealthy,
    /// Every usable channel was told by the upstream to wait at least this long.
    RateLimited(Duration),
}

/// The channels of one provider.
pub struct Router {
    pub channels: Vec<Arc<Channel>>,
    /// Limits shared with other replicas, and this router's name in them.
    shared: std::sync::OnceLock<(Arc<dyn super::quota::SharedQuota>, &'static str)>,
}

/// The longest wait between two asks for a cluster slot while every one is held.
const SLOT_POLL_MAX: Duration = Duration::from_millis(500);

impl Router {
    pub fn new(channels: Vec<Channel>) -> Router {
        Router { channels: channels.into_iter().map(Arc::new).collect(), shared: std::sync::OnceLock::new() }
    }

    /// Counts the channels' `rpm` and `max_concurrency` with the other replicas through
    /// `quota` (`label` tells this router's channels from another's of the same name).
    pub fn share(&self, quota: Arc<dyn super::quota::SharedQuota>, label: &'static str) {
        let _ = self.shared.set((quota, label));
    }

    /// One call from the channel's rate: `Some(wait)` when over it (for the cluster when shared).
    async fn over_rate(&self, ch: &Channel) -> Option<Duration> {
        match (self.shared.get(), &ch.rate) {
            (_, None) => None,
            (Some((q, label)), Some(_)) => q.take_rate(&format!("{label}/{}", ch.spec.name), ch.spec.rpm).await,
            (None, Some(rate)) => rate
                .check()
                .err()
                .map(|n| n.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()))),
        }
    }

    /// The channel's slot for the cluster (waiting while every one is held), when shared.
    async fn cluster_slot(&self, ch: &Channel) -> Option<super::quota::SlotGuard> {
        let (q, label) = self.shared.get()?;
        if ch.spec.max_concurrency == 0 {
            return None;
        }
        let scope = format!("{label}/{}", ch.spec.name);
        let mut pause = Duration::from_millis(20);
        loop {
            if let Some(g) = q.take_slot(&scope, ch.spec.max_concurrency).await {
                return Some(g);
            }
            // Jittered, so that replicas waiting for one channel do not ask in step.
            let jitter = 0.5 + rand::random::<f64>();
            tokio::time::sleep(pause.mul_f64(jitter)).await;
            pause = (pause * 2).min(SLOT_POLL_MAX);
        }
    }

    /// Takes a channel for one call, preferring channels not in `avoid` (already failed for this
    /// request). Waits for capacity if every usable channel is busy, and for a rate-limited
    /// channel's rest to end when it ends before `wait_until`. Fails when no channel is usable
    /// (all disabled or open), or all are resting past `wait_until`.
    pub async fn acquire(&self, avoid: &[usize], wait_until: Instant) -> Result<ChannelLease, NoChannel> {
        let mut over_rate: Vec<usize> = Vec::new();
        loop {
            let now = Instant::now();
            let usable: Vec<usize> = (0..self.channels.len()).filter(|&i| self.channels[i].could_admit(now)).collect();
            if usable.is_empty() {
                let rest_ends = self
                    .channels
                    .iter()
                    .filter_map(|c| c.health.lock().ok().and_then(|h| h.resting(now)))
                    .min()
                    .ok_or(NoChannel::Unhealthy)?;
                if rest_ends > wait_until {
                    return Err(NoChannel::RateLimited(rest_ends.saturating_duration_since(now)));
                }
                tokio::time::sleep_until(rest_ends.into()).await;
                continue;
            }
            let fresh: Vec<usize> = usable.iter().copied().filter(|i| !avoid.contains(i)).collect();
            let pool = if fresh.is_empty() { usable } else { fresh };
            let ready: Vec<usize> =
                pool.iter().copied().filter(|&i| self.channels[i].has_capacity() && !over_rate.contains(&i)).collect();
            let pick = if ready.is_empty() {
                // Every candidate is busy: wait on the least loaded one.
                pool.iter().copied().min_by_key(|&i| self.channels[i].in_flight())
            } else {
                weighted_pick(&ready, |i| self.channels[i].spec.weight, rand::random::<f64>())
            };
            let index = pick.ok_or(NoChannel::Unhealthy)?;
            let ch = self.channels[index].clone();
            if let Some(wait) = self.over_rate(&ch).await {
                if ready.len() > 1 {
                    over_rate.push(index); // over its per-minute rate: try the others first
                    continue;
                }
                tokio::time::sleep(wait).await;
                continue;
            }
            let permit = match &ch.slots {
                Some(s) => Some(s.clone().acquire_owned().await.map_err(|_| NoChannel::Unhealthy)?),
                None => None,
            };
            let slot = self.cluster_slot(&ch).await;
            let admitted = ch.health.lock().map(|mut h| h.admit(Instant::now(), &ch.breaker)).unwrap_or(false);
            if !admitted {
                continue; // opened, or taken for a probe, while we waited: choose again
            }
            ch.in_flight.fetch_add(1, Ordering::Relaxed);
            return Ok(ChannelLease { index, channel: ch, _permit: permit, _slot: slot, reported: false });
        }
    }

    /// The channel named `name`, if any.
    pub fn channel(&self, name: &str) -> Option<&Arc<Channel>> {
        self.channels.iter().find(|c| c.spec.name == name)
    }

    /// Whether a channel other than those in `avoid` could take a call now.
    pub fn has_alternative(&self, avoid: &[usize]) -> bool {
        let now = Instant::now();
        self.channels.iter().enumerate().any(|(i, ch)| {
            !avoid.contains(&i) && ch.health.lock().map(|h| h.state(now) == ChannelState::Healthy).unwrap_or(false)
        })
    }
}

/// Weighted choice among `items` with `r` uniform in [0, 1).
pub fn weighted_pick(items: &[usize], weight: impl Fn(usize) -> u32, r: f64) -> Option<usize> {
    let total: u64 = items.iter().map(|&i| u64::from(weight(i).max(1))).sum();
    let mut target = (r.clamp(0.0, 0.999_999) * total as f64) as u64;
    for &i in items {
        let w = u64::from(weight(i).max(1));
        if target < w {
            return Some(i);
        }
        target -= w;
    }
    items.last().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG: BreakerConfig =
        BreakerConfig { failures: 3, cooldown: Duration::from_secs(30), disabled_probe: Duration::from_secs(600) };

    #[test]
    fn the_breaker_opens_after_repeated_failures_and_probes_after_the_cooldown() {
        let cfg = CFG;
        let t0 = Instant::now();
        let mut h = Health::default();
        for _ in 0..2 {
            assert!(h.admit(t0, &cfg));
            h.failure(t0, &cfg);
        }
        assert_eq!(h.state(t0), ChannelState::Healthy);
        assert!(h.admit(t0, &cfg));
        h.failure(t0, &cfg);
        assert_eq!(h.state(t0), ChannelState::Open);
        assert!(!h.admit(t0 + Duration::from_secs(10), &cfg));
        let later = t0 + Duration::from_secs(31);
        assert!(h.admit(later, &cfg), "one probe after the cool-down");
        assert!(!h.admit(later, &cfg), "only one");
        h.failure(later, &cfg);
        assert_eq!(h.state(later), ChannelState::Open, "a failed probe opens it again at once");
        let again = later + Duration::from_secs(31);
        assert!(h.admit(again, &cfg));
        h.success();
        assert_eq!(h.state(again), ChannelState::Healthy);
        assert!(h.admit(again, &cfg) && h.admit(again, &cfg));
    }

    #[test]
    fn a_disabled_channel_is_probed_after_its_delay_and_an_admin_can_enable_it() {
        let t0 = Instant::now();
        let mut h = Health::default();
        h.disable("key revoked".into(), t0);
        assert!(!h.admit(t0 + Duration::from_secs(599), &CFG));
        assert_eq!(h.state(t0), ChannelState::Disabled);
        let later = t0 + Duration::from_secs(600);
        assert!(h.admit(later, &CFG), "one probe after the delay");
        assert!(!h.admit(later, &CFG), "only one");
        h.disable("still revoked".into(), later);
        assert!(!h.admit(later + Duration::from_secs(1), &CFG), "refused again: another full delay");
        h.enable();
        assert_eq!(h.state(later), ChannelState::Healthy);
        assert!(h.admit(later, &CFG));
    }

    #[test]
    fn a_rate_limited_channel_rests_for_the_time_it_was_told() {
        let t0 = Instant::now();
        let mut h = Health::default();
        h.rest(t0 + Duration::from_secs(30));
        assert_eq!(h.state(t0), ChannelState::RateLimited);
        assert!(!h.could_admit(t0 + Duration::from_secs(29), &CFG));
        assert_eq!(h.resting(t0), Some(t0 + Duration::from_secs(30)));
        h.rest(t0 + Duration::from_secs(5));
        assert_eq!(h.resting(t0), Some(t0 + Duration::from_secs(30)), "a shorter hint never shortens a rest");
        assert!(h.admit(t0 + Duration::from_secs(30), &CFG));
        assert_eq!(h.state(t0 + Duration::from_secs(30)), ChannelState::Healthy);
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let items = [0, 1];
        let w = |i: usize| if i == 0 { 3 } else { 1 };
        assert_eq!(weighted_pick(&items, w, 0.0), Some(0));
        assert_eq!(weighted_pick(&items, w, 0.74), Some(0));
        assert_eq!(weighted_pick(&items, w, 0.76), Some(1));
        assert_eq!(weighted_pick(&[], w, 0.5), None);
    }
}
