//! Workers: claim a task from the store's queue → call the provider (n images in parallel) →
//! store the images → finish the task, holding a lease renewed by heartbeats throughout.
//!
//! Sync and async requests go through the same queue; a sync handler just waits for the end.
//! A process that dies mid-task leaves a lease that runs out, and the task is claimed again.

pub(crate) mod execute;
mod previews;
mod signals;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::blobs::BlobStore;
use crate::config::Runtime;
use crate::domain::now_millis;
use crate::providers::Registry;
use crate::store::{Store, TaskRecord};
use crate::webhooks::outbox::Deliverer;

pub use signals::{Finished, Preview, Signals, Subscription};

/// After the grace period, how long aborted tasks get to put themselves back in the queue and
/// finished ones to record their end.
const DRAIN_FINISH: Duration = Duration::from_secs(5);

/// How often an idle dispatcher looks for expired leases without being woken.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// What a worker needs; cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub rt: Arc<Runtime>,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub providers: Registry,
    pub deliverer: Arc<Deliverer>,
    pub exporter: Arc<crate::delivery::export::Exporter>,
    pub keys: Arc<crate::keys::KeyCache>,
    /// The bounded pool `output_format` transcoding runs on.
    pub conversions: Arc<crate::imaging::Pool>,
    pub urls: crate::delivery::urls::ImageUrls,
}

/// Why a running task was aborted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Abort {
    /// The owner cancelled it: end it as cancelled.
    Cancel,
    /// Another worker holds it now: walk away.
    LeaseLost,
    /// This process is stopping: put it back in the queue.
    Shutdown,
}

/// Handle on one running task.
pub struct TaskControl {
    /// The claim's fencing token: the store accepts this run's renewals and its end only while
    /// the task's lease is still this claim's (not an earlier or later claim of this process).
    pub claim: String,
    token: CancellationToken,
    reason: Mutex<Option<Abort>>,
}

impl TaskControl {
    fn new(claim: String) -> TaskControl {
        TaskControl { claim, token: CancellationToken::new(), reason: Mutex::new(None) }
    }

    /// Aborts the task; the first reason given wins.
    pub fn abort(&self, why: Abort) {
        if let Ok(mut r) = self.reason.lock()
            && r.is_none()
        {
            *r = Some(why);
        }
        self.token.cancel();
    }

    pub fn reason(&self) -> Option<Abort> {
        self.reason.lock().ok().and_then(|r| *r)
    }
}

/// A reserved worker slot, and the claim (fencing token and lease) a task taken into it gets.
pub struct Slot {
    /// Held while the task runs; dropping it frees the slot.
    _permit: tokio::sync::OwnedSemaphorePermit,
    claim: String,
    lease_until_ms: i64,
}

impl Slot {
    pub fn lease_until_ms(&self) -> i64 {
        self.lease_until_ms
    }

    /// The fencing token the task is (to be) claimed with.
    pub fn claim(&self) -> &str {
        &self.claim
    }
}

/// Cancels remembered for tasks not running here (see `early_cancels`).
const EARLY_CANCELS_MAX: usize = 10_000;

/// The process's worker pool: one dispatcher loop claiming tasks while it has capacity.
pub struct WorkerPool {
    /// This process's lease-holder id.
    pub id: String,
    deps: Deps,
    wake: Notify,
    pub signals: Signals,
    in_flight: Mutex<HashMap<String, Arc<TaskControl>>>,
    /// Cancels asked for tasks not (yet) running here, with when: a task claimed just before
    /// its cancel was asked, but launched just after, is aborted as it starts instead of
    /// running until its next heartbeat. Guarded by `in_flight`'s lock, so neither misses
    /// the other.
    early_cancels: Mutex<HashMap<String, std::time::Instant>>,
    slots: Arc<Semaphore>,
    /// Batch lines running here, and the most that may (`batch.queue_share` of the slots): the
    /// rest stay free for realtime work however long a batch is.
    batch_running: Arc<std::sync::atomic::AtomicUsize>,
    batch_cap: usize,
    stop: CancellationToken,
}

impl WorkerPool {
    pub fn new(deps: Deps) -> Arc<WorkerPool> {
        let slots = Arc::new(Semaphore::new(deps.rt.worker_concurrency));
        let batch_cap = ((deps.rt.worker_concurrency as f64 * deps.rt.batch.queue_share) as usize).max(1);
        Arc::new(WorkerPool {
            id: format!("wrk_{}", ulid::Ulid::new()),
            deps,
            wake: Notify::new(),
            signals: Signals::default(),
            in_flight: Mutex::new(HashMap::new()),
            early_cancels: Mutex::new(HashMap::new()),
            batch_running: Default::default(),
            batch_cap,
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

    /// A new fencing token: one per claim, so that two claims of one task by this process (a
    /// lease that ran out while its heartbeats failed) are told apart by the store.
    fn new_claim(&self) -> String {
        format!("{}/clm_{}", self.id, ulid::Ulid::new())
    }

    async fn dispatch(self: Arc<Self>) {
        loop {
            let permit = tokio::select! {
                p = Arc::clone(&self.slots).acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                _ = self.stop.cancelled() => return,
            };
            let now = now_millis();
            let lease_until = now + self.deps.rt.lease.as_millis() as i64;
            let claim = self.new_claim();
            let batch_lines = self.batch_running.load(std::sync::atomic::Ordering::SeqCst) < self.batch_cap;
            match self.deps.store.claim_task_in(&claim, now, lease_until, batch_lines).await {
                Ok(Some(task)) => {
                    // queued → running: wake its watchers (a task written claimed never was queued).
                    self.signals.notify(&task.id);
                    self.launch(task, Slot { _permit: permit, claim, lease_until_ms: lease_until })
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

    /// A free worker slot, if there is one right now (and the pool is not stopping).
    pub fn try_slot(&self) -> Option<Slot> {
        if self.stop.is_cancelled() {
            return None;
        }
        let permit = Arc::clone(&self.slots).try_acquire_owned().ok()?;
        let lease_until_ms = now_millis() + self.deps.rt.lease.as_millis() as i64;
        Some(Slot { _permit: permit, claim: self.new_claim(), lease_until_ms })
    }

    /// Runs a task this worker holds (claimed from the queue, or written claimed) in `slot`.
    pub fn launch(self: &Arc<Self>, task: TaskRecord, slot: Slot) {
        let control = Arc::new(TaskControl::new(slot.claim.clone()));
        if let Ok(mut m) = self.in_flight.lock() {
            if let Some(earlier) = m.insert(task.id.clone(), control.clone()) {
                // This process claimed the task again (its earlier run's lease ran out): that
                // run is fenced off in the store; stop it here too.
                earlier.abort(Abort::LeaseLost);
            }
            if self.early_cancels.lock().is_ok_and(|mut c| c.remove(&task.id).is_some()) {
                control.abort(Abort::Cancel);
            }
        }
        let pool = Arc::clone(self);
        let batch_line = task.mode == crate::domain::task::TaskMode::Batch;
        if batch_line {
            self.batch_running.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        // Every line the task logs, here and in the providers, names it and the request that
        // submitted it (kept with the task, so also when another replica runs it).
        let span = tracing::info_span!(
            "task",
            task_id = %task.id,
            request_id = task.request_id.as_deref().unwrap_or(""),
        );
        let run = async move {
            let id = task.id.clone();
            let ended = execute::run(&pool, task, &control).await;
            if batch_line {
                pool.batch_running.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
            if let Ok(mut m) = pool.in_flight.lock()
                && m.get(&id).is_some_and(|c| Arc::ptr_eq(c, &control))
            {
                m.remove(&id);
            }
            pool.signals.finish(&id, ended);
            drop(slot);
        };
        tokio::spawn(tracing::Instrument::instrument(run, span));
    }

    /// Number of tasks this process is executing.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Aborts a task running in this process because its owner cancelled it; `false` when it
    /// does not run here (its worker sees the request at its next heartbeat).
    pub fn cancel_local(&self, task_id: &str) -> bool {
        let Ok(m) = self.in_flight.lock() else { return false };
        if let Some(c) = m.get(task_id) {
            c.abort(Abort::Cancel);
            return true;
        }
        // Perhaps claimed here and about to launch: remembered for a while (bounded: the
        // oldest go first, and none outlives a lease).
        if let Ok(mut early) = self.early_cancels.lock() {
            let now = std::time::Instant::now();
            early.retain(|_, at| now.duration_since(*at) < self.deps.rt.lease);
            if early.len() < EARLY_CANCELS_MAX {
                early.insert(task_id.to_string(), now);
            }
        }
        false
    }

    /// Stops claiming; running tasks go on.
    pub fn stop_claiming(&self) {
        self.stop.cancel();
    }

    /// Waits up to `grace` for running tasks to end. Tasks still generating after that are
    /// aborted, and each puts itself back in the queue (so the next process picks it up at once,
    /// without counting an attempt); a task whose images are already made is not aborted but
    /// finishes recording them (a drain never loses a paid result). Waits a little more for
    /// those steps, which are quick.
    pub async fn drain(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let left: Vec<Arc<TaskControl>> =
            self.in_flight.lock().map(|m| m.values().cloned().collect()).unwrap_or_default();
        for control in left {
            control.abort(Abort::Shutdown);
        }
        let deadline = tokio::time::Instant::now() + DRAIN_FINISH;
        while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
