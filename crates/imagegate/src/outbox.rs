//! The polling loop shared by the durable outboxes (webhook deliveries, exports to customer
//! buckets): claim a batch of due jobs with a lease, run each on a bounded set of slots, and
//! when nothing is due sleep until the next job is, a wake-up, or a stop.

use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::domain::now_millis;
use crate::store::StoreError;

/// The longest sleep when nothing is due (new jobs also wake the loop).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The pause before looking again when a due job could not be claimed.
const RECHECK: Duration = Duration::from_millis(100);

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    type Job: Send + 'static;
    /// What the logs call it ("webhooks", "exports").
    const NAME: &'static str;
    /// Claims up to a batch of due jobs (leased to this process).
    async fn claim(&self, now_ms: i64) -> Result<Vec<Self::Job>, StoreError>;
    /// When the next pending job is due, if any.
    async fn next_due(&self) -> Result<Option<i64>, StoreError>;
    /// Runs one job to its recorded outcome.
    async fn run(self: Arc<Self>, job: Self::Job);
    /// The loop's wake-up, stop and slots.
    fn control(&self) -> &Control;
}

/// Wake-up, stop and concurrency for one outbox loop.
pub struct Control {
    pub wake: Notify,
    pub stop: CancellationToken,
    slots: Arc<Semaphore>,
}

impl Control {
    pub fn new(concurrency: usize) -> Control {
        Control { wake: Notify::new(), stop: CancellationToken::new(), slots: Arc::new(Semaphore::new(concurrency)) }
    }

    /// New jobs were written: look now rather than at the next poll.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Stops the loop (jobs not yet run stay in the store for the next start).
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

/// Starts `outbox`'s loop on the runtime.
pub fn start<O: Outbox>(outbox: &Arc<O>) -> tokio::task::JoinHandle<()> {
    let me = Arc::clone(outbox);
    tokio::spawn(async move { run(me).await })
}

/// Runs `outbox` until its control is stopped. It claims (a write transaction) only when a job
/// is due: jobs being run are leased, so they are not due again until their lease runs out, and a
/// slow receiver or upload costs no work here while it takes its time.
async fn run<O: Outbox>(outbox: Arc<O>) {
    let control = outbox.control();
    loop {
        if control.stop.is_cancelled() {
            return;
        }
        let due = match outbox.next_due().await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(error = %e, outbox = O::NAME, "reading the next due job failed");
                None
            }
        };
        let now = now_millis();
        let batch = match due {
            Some(at) if at <= now => match outbox.claim(now).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, outbox = O::NAME, "claiming due jobs failed");
                    Vec::new()
                }
            },
            _ => Vec::new(),
        };
        if batch.is_empty() {
            let wait = match due {
                Some(at) if at > now => Duration::from_millis((at - now).min(IDLE_POLL.as_millis() as i64) as u64),
                // Due but nothing claimed (another replica took it, or the store failed): look again shortly.
                Some(_) => RECHECK,
                None => IDLE_POLL,
            };
            tokio::select! {
                _ = control.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = control.stop.cancelled() => return,
            }
            continue;
        }
        for job in batch {
            let Ok(permit) = Arc::clone(&control.slots).acquire_owned().await else { return };
            let me = Arc::clone(&outbox);
            tokio::spawn(async move {
                Arc::clone(&me).run(job).await;
                drop(permit);
                // Its outcome changed what is due next (a retry soon, a freed slot): look again
                // now rather than at the next idle poll.
                me.control().notify();
            });
        }
    }
}
