//! Upstream channels' limits counted in the shared store (see `providers::quota`): a rate is one
//! row per channel, a call slot a leased row renewed while the call runs and freed when it
//! ends. A replica that dies holding slots loses them to the others when their lease runs out.
//! When the store cannot be asked (a database restart), calls go ahead on this replica's own
//! limits rather than stopping.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::domain::now_millis;
use crate::providers::quota::{SharedQuota, SlotGuard};
use crate::store::Store;

/// A slot's lease; renewed every third of it while its call runs.
const SLOT_LEASE: Duration = Duration::from_secs(30);

pub struct StoreQuota {
    store: Arc<dyn Store>,
    /// This process, in slot holders' names.
    process: String,
}

impl StoreQuota {
    pub fn new(store: Arc<dyn Store>) -> StoreQuota {
        StoreQuota { store, process: format!("prc_{}", ulid::Ulid::new()) }
    }
}

#[async_trait]
impl SharedQuota for StoreQuota {
    async fn take_rate(&self, scope: &str, per_minute: u32) -> Option<Duration> {
        match self.store.take_rate(&format!("channel:{scope}"), per_minute, now_millis()).await {
            Ok(wait) => wait,
            Err(e) => {
                tracing::warn!(channel = scope, error = %e, "the shared rate could not be asked; going on");
                None
            }
        }
    }

    async fn take_slot(&self, scope: &str, max: usize) -> Option<SlotGuard> {
        let holder = format!("{}/{}", self.process, ulid::Ulid::new());
        let max = u32::try_from(max).unwrap_or(u32::MAX);
        let now = now_millis();
        let lease = SLOT_LEASE.as_millis() as i64;
        match self.store.take_slot(scope, max, &holder, now + lease, now).await {
            Ok(Some(slot)) => Some(SlotGuard::new(Box::new(Held::start(self.store.clone(), scope, slot, holder)))),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(channel = scope, error = %e, "the shared call slots could not be asked; going on");
                Some(SlotGuard::unchecked())
            }
        }
    }
}

/// A held slot: renewed in the background, freed when dropped.
struct Held {
    stop: CancellationToken,
    release: Option<(Arc<dyn Store>, String, u32, String)>,
}

impl Held {
    fn start(store: Arc<dyn Store>, scope: &str, slot: u32, holder: String) -> Held {
        let stop = CancellationToken::new();
        let (s, sc, h, st) = (store.clone(), scope.to_string(), holder.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(SLOT_LEASE / 3) => {}
                    _ = st.cancelled() => return,
                }
                let until = now_millis() + SLOT_LEASE.as_millis() as i64;
                if let Ok(false) = s.renew_slot(&sc, slot, &h, until).await {
                    tracing::warn!(channel = sc, "a call slot's lease ran out while its call went on");
                    return;
                }
            }
        });
        Held { stop, release: Some((store, scope.to_string(), slot, holder)) }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some((store, scope, slot, holder)) = self.release.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                if let Err(e) = store.release_slot(&scope, slot, &holder).await {
                    tracing::warn!(channel = scope, error = %e, "freeing a call slot failed; its lease frees it");
                }
            });
        }
    }
}
