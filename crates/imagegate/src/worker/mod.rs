//! Workers: claim a task from the store's queue → call the provider (n images in parallel) →
//! store the images → finish the task, holding a lease renewed by heartbeats throughout.
//!
//! Sync and async requests go through the same queue; a sync handler just waits for the end.
//! A process that dies mid-task leaves a lease that runs out, and the task is claimed again.

mod execute;
mod waiters;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::blobs::BlobStore;
use crate::config::Runtime;
use crate::domain::now_millis;
use crate::providers::Registry;
use crate::store::Store;

pub use waiters::Waiters;

/// A task is given up after this many claims (each claim after a crash counts one).
pub const MAX_ATTEMPTS: i64 = 3;

/// How often an idle dispatcher looks for expired leases without being woken.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What a worker needs; cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub rt: Arc<Runtime>,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub providers: Registry,
}

/// The process's worker pool: one dispatcher loop claiming tasks while it has capacity.
pub struct WorkerPool {
    /// This process's lease-holder id.
    pub id: String,
    deps: Deps,
    wake: Notify,
    pub waiters: Waiters,
    in_flight: Mutex<HashMap<String, CancellationToken>>,
    slots: Arc<Semaphore>,
    stop: CancellationToken,
}

impl WorkerPool {
    pub fn new(deps: Deps) -> Arc<WorkerPool> {
        let slots = Arc::new(Semaphore::new(deps.rt.worker_concurrency));
        Arc::new(WorkerPool {
            id: format!("wrk_{}", ulid::Ulid::new()),
            deps,
            wake: Notify::new(),
            waiters: Waiters::default(),
            in_flight: Mutex::new(HashMap::new()),
            slots,
            stop: CancellationToken::new(),
        })
    }

    /// Tells the dispatcher there is new work.
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Starts the dispatcher loop.
    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let pool = Arc::clone(self);
        tokio::spawn(async move { pool.dispatch().await })
    }

    async fn dispatch(self: Arc<Self>) {
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&self.slots).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = self.stop.cancelled() => return,
            };
            let now = now_millis();
            let lease_until = now + self.deps.rt.lease.as_millis() as i64;
            match self.deps.store.claim_task(&self.id, now, lease_until).await {
                Ok(Some(task)) => {
                    let cancel = CancellationToken::new();
                    if let Ok(mut m) = self.in_flight.lock() {
                        m.insert(task.id.clone(), cancel.clone());
                    }
                    let pool = Arc::clone(&self);
                    tokio::spawn(async move {
                        let id = task.id.clone();
                        execute::run(&pool, task, cancel).await;
                        if let Ok(mut m) = pool.in_flight.lock() {
                            m.remove(&id);
                        }
                        pool.waiters.wake(&id);
                        drop(permit);
                    });
                }
                Ok(None) => {
                    drop(permit);
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = self.stop.cancelled() => return,
                    }
                }
                Err(e) => {
                    drop(permit);
                    tracing::error!(error = %e, "claiming a task failed; retrying shortly");
                    tokio::select! {
                        _ = tokio::time::sleep(IDLE_POLL) => {}
                        _ = self.stop.cancelled() => return,
                    }
                }
            }
        }
    }

    /// Number of tasks this process is executing.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Stops claiming; running tasks go on.
    pub fn stop_claiming(&self) {
        self.stop.cancel();
    }

    /// Waits up to `grace` for running tasks to end. Tasks still running after that are
    /// aborted and put back in the queue, so the next process picks them up at once.
    pub async fn drain(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left: Vec<(String, CancellationToken)> = self
            .in_flight
            .lock()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        for (task_id, token) in left {
            token.cancel();
            match self
                .deps
                .store
                .release_task(&task_id, &self.id, now_millis())
                .await
            {
                Ok(_) => tracing::warn!(task_id, "shutdown: task put back in the queue"),
                Err(e) => {
                    tracing::error!(task_id, error = %e, "shutdown: could not release task; its lease will expire")
                }
            }
        }
    }
}
