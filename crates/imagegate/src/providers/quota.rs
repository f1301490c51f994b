//! Limits toward an upstream that several replicas share: a channel's per-minute rate and its
//! concurrent calls counted for the cluster, not per process. The router asks a `SharedQuota`
//! when one is installed (a store shared by replicas); without one, its own in-process limits
//! are exact.

use async_trait::async_trait;
use std::time::Duration;

/// A call slot held for the cluster; dropping it gives the slot back.
pub struct SlotGuard(#[allow(dead_code)] Option<Box<dyn Send + Sync>>);

impl SlotGuard {
    /// Holds `inner` (whose drop frees the slot).
    pub fn new(inner: Box<dyn Send + Sync>) -> SlotGuard {
        SlotGuard(Some(inner))
    }

    /// No slot is held (the quota could not be asked: the call goes ahead on local limits).
    pub fn unchecked() -> SlotGuard {
        SlotGuard(None)
    }
}

#[async_trait]
pub trait SharedQuota: Send + Sync {
    /// One call from `scope`'s rate of `per_minute` (bursts of as many); `Some(wait)` when over.
    async fn take_rate(&self, scope: &str, per_minute: u32) -> Option<Duration>;
    /// One of `scope`'s `max` call slots; `None` while every one is held.
    async fn take_slot(&self, scope: &str, max: usize) -> Option<SlotGuard>;
}
