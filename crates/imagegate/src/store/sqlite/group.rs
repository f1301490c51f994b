//! Group commit for the hottest writes (submits, claims, completions): operations that arrive
//! together share one transaction (one WAL append, one set of touched pages), each inside its
//! own savepoint so one failing operation never takes the others with it. A caller queues its
//! operation and waits; the first caller to find no batch running starts one on a spawned task
//! (so a client going away cannot strand the batch), which yields once to let concurrent
//! operations join, then commits them all and answers each (a commit that must wait for the
//! database leaves the runtime's thread first: see `db.rs`). The operations of one batch share a
//! scratch state `S` (fresh per transaction) to reuse what an earlier one worked out.

use rusqlite::Connection;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

use super::db::Db;
use crate::store::StoreError;

/// Batches above this size are split (a long transaction holds the writer from everyone else).
const MAX_BATCH: usize = 256;

type Pending<J, R> = Vec<(J, oneshot::Sender<Result<R, StoreError>>)>;

pub struct Batcher<J, R, S> {
    apply: fn(&Connection, J, &mut S) -> Result<R, StoreError>,
    pending: Mutex<Pending<J, R>>,
    running: AtomicBool,
}

impl<J: Send + 'static, R: Send + 'static, S: Default + 'static> Batcher<J, R, S> {
    pub fn new(apply: fn(&Connection, J, &mut S) -> Result<R, StoreError>) -> Arc<Self> {
        Arc::new(Batcher { apply, pending: Mutex::new(Vec::new()), running: AtomicBool::new(false) })
    }

    /// Runs `job` in the next group commit and returns its result once committed.
    pub async fn submit(self: &Arc<Self>, db: &Arc<Db>, job: J) -> Result<R, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().map_err(|_| StoreError::Unavailable("write queue poisoned".into()))?.push((job, tx));
        if !self.running.swap(true, Ordering::AcqRel) {
            let me = Arc::clone(self);
            let db = Arc::clone(db);
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                me.drain(&db);
            });
        }
        rx.await.map_err(|_| StoreError::Unavailable("the write was dropped before it was committed".into()))?
    }

    fn take(&self) -> Pending<J, R> {
        match self.pending.lock() {
            Ok(mut p) => {
                let n = p.len().min(MAX_BATCH);
                p.drain(..n).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    fn drain(&self, db: &Db) {
        loop {
            let batch = self.take();
            if batch.is_empty() {
                self.running.store(false, Ordering::Release);
                // An operation may have queued itself after `take` and before the flag dropped.
                let more = self.pending.lock().map(|p| !p.is_empty()).unwrap_or(false);
                if !more || self.running.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            }
            self.commit(db, batch);
        }
    }

    fn commit(&self, db: &Db, batch: Pending<J, R>) {
        let mut replies = Vec::with_capacity(batch.len());
        let outcome = db.write(|conn| {
            let mut state = S::default();
            let mut results = Vec::with_capacity(batch.len());
            for (job, reply) in batch {
                // Cached statements: `execute_batch` would parse the text again every time.
                conn.prepare_cached("SAVEPOINT op")?.execute([])?;
                let r = (self.apply)(conn, job, &mut state);
                if r.is_err() {
                    conn.prepare_cached("ROLLBACK TO op")?.execute([])?;
                }
                conn.prepare_cached("RELEASE op")?.execute([])?;
                results.push(r);
                replies.push(reply);
            }
            Ok(results)
        });
        match outcome {
            Ok(results) => {
                for (reply, r) in replies.into_iter().zip(results) {
                    let _ = reply.send(r);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "committing a batch of writes failed");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Unavailable(format!("the write could not be committed: {e}"))));
                }
            }
        }
    }
}
