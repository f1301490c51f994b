//! Group commit for task creation, the hottest write: submits that arrive together share one
//! transaction (one WAL append, one set of touched pages), each inside its own savepoint so one
//! failing submit never takes the others with it. A caller queues its task and waits; the first
//! caller to find no batch running starts one on a spawned task (so a client going away cannot
//! strand the batch), which yields once to let concurrent submits join, then commits them all.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

use super::db::Db;
use super::tasks;
use crate::store::{Created, NewTask, StoreError};

type Reply = oneshot::Sender<Result<Created, StoreError>>;

#[derive(Default)]
pub struct Creates {
    pending: Mutex<Vec<(NewTask, Reply)>>,
    running: AtomicBool,
}

/// Batches above this size are split (a long transaction holds the writer from everyone else).
const MAX_BATCH: usize = 256;

impl Creates {
    pub async fn create(self: &Arc<Self>, db: &Arc<Db>, task: NewTask) -> Result<Created, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().map_err(|_| StoreError::Unavailable("submit queue poisoned".into()))?.push((task, tx));
        if !self.running.swap(true, Ordering::AcqRel) {
            let me = Arc::clone(self);
            let db = Arc::clone(db);
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                me.drain(&db);
            });
        }
        rx.await.map_err(|_| StoreError::Unavailable("the submit was dropped before it was written".into()))?
    }

    fn take(&self) -> Vec<(NewTask, Reply)> {
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
                // A submit may have queued itself after `take` and before the flag dropped.
                let more = self.pending.lock().map(|p| !p.is_empty()).unwrap_or(false);
                if !more || self.running.swap(true, Ordering::AcqRel) {
                    return;
                }
                continue;
            }
            commit(db, batch);
        }
    }
}

fn commit(db: &Db, batch: Vec<(NewTask, Reply)>) {
    let mut replies = Vec::with_capacity(batch.len());
    let outcome = db.write(|conn| {
        let mut results = Vec::with_capacity(batch.len());
        for (task, reply) in batch {
            conn.execute_batch("SAVEPOINT submit")?;
            let r = tasks::create(conn, task);
            conn.execute_batch(if r.is_ok() { "RELEASE submit" } else { "ROLLBACK TO submit; RELEASE submit" })?;
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
            tracing::error!(error = %e, "committing a batch of submits failed");
            for reply in replies {
                let _ = reply.send(Err(StoreError::Unavailable(format!("the submit could not be committed: {e}"))));
            }
        }
    }
}
