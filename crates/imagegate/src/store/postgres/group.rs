//! Group commit for plain submits (no Idempotency-Key, no limit to check: see
//! `tasks::is_plain`). One submit per transaction spends most of its time waiting: for the
//! commit's WAL flush, and before that for the key's row, which every submit of a key updates
//! (its reservation) and which stays locked until the commit. Submits that arrive together are
//! written in one transaction instead: their one-statement writes sent down the connection back
//! to back (pipelined: one round trip for the lot), then one commit, one flush, one lock per key.
//!
//! As on SQLite (`store/sqlite/group.rs`), the first caller to find no batch running starts one
//! on a spawned task (a client going away cannot strand it), which takes whatever has queued.
//! Should the batch's transaction fail, each submit is written again on its own, so one bad
//! submit never takes the others with it.

use futures_util::future::try_join_all;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

use super::db::{Db, retrying};
use super::tasks;
use crate::domain::task::TaskStatus;
use crate::store::{Created, NewTask, QUEUE_POSITION_CAP, StoreError};

/// Submits per transaction at most.
const MAX_BATCH: usize = 256;

type Pending = Vec<(NewTask, oneshot::Sender<Result<Created, StoreError>>)>;

#[derive(Default)]
pub struct Submits {
    pending: Mutex<Pending>,
    running: AtomicBool,
}

impl Submits {
    /// Writes a plain submit in the next group commit; answers once it is committed.
    pub async fn submit(self: &Arc<Self>, db: &Arc<Db>, task: NewTask) -> Result<Created, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.pending.lock().map_err(|_| StoreError::Unavailable("submit queue poisoned".into()))?.push((task, tx));
        if !self.running.swap(true, Ordering::AcqRel) {
            let me = Arc::clone(self);
            let db = Arc::clone(db);
            tokio::spawn(async move { me.drain(&db).await });
        }
        rx.await.map_err(|_| StoreError::Unavailable("the submit was dropped before it was committed".into()))?
    }

    fn take(&self) -> Pending {
        match self.pending.lock() {
            Ok(mut p) => {
                let n = p.len().min(MAX_BATCH);
                p.drain(..n).collect()
            }
            Err(_) => Vec::new(),
        }
    }

    async fn drain(&self, db: &Db) {
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
            commit(db, batch).await;
        }
    }
}

async fn commit(db: &Db, mut batch: Pending) {
    // Keys' rows in one order in every transaction: two replicas' batches never deadlock.
    batch.sort_by(|a, b| (&a.0.owner, a.0.created_at_ms, &a.0.id).cmp(&(&b.0.owner, b.0.created_at_ms, &b.0.id)));
    let written = retrying(|| async {
        let mut conn = db.conn().await?;
        let tx = conn.transaction().await?;
        try_join_all(batch.iter().map(|(t, _)| tasks::write_task(&tx, t))).await?;
        let first_queued =
            batch.iter().filter(|(t, _)| t.claimed.is_none()).map(|(t, _)| (t.created_at_ms, t.id.as_str())).min();
        let ahead = match first_queued {
            Some((at, id)) => tasks::queued_ahead_of(&tx, 0, at, id).await?,
            None => 0,
        };
        tx.commit().await?;
        Ok::<_, StoreError>(ahead)
    })
    .await;
    match written {
        Ok(ahead) => {
            // Positions: the earliest queued submit had `ahead` before it; the batch's others
            // follow it in submission order.
            let mut order: Vec<usize> = (0..batch.len()).filter(|&i| batch[i].0.claimed.is_none()).collect();
            order.sort_by(|&a, &b| {
                (batch[a].0.created_at_ms, &batch[a].0.id).cmp(&(batch[b].0.created_at_ms, &batch[b].0.id))
            });
            let mut position = vec![None; batch.len()];
            for (k, i) in order.into_iter().enumerate() {
                position[i] = Some((ahead + k as i64).min(QUEUE_POSITION_CAP));
            }
            for ((task, reply), queue_position) in batch.into_iter().zip(position) {
                let record = tasks::new_record(&task);
                debug_assert!(queue_position.is_some() == (record.status == TaskStatus::Queued));
                let _ = reply.send(Ok(Created::New { task: record, queue_position }));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, submits = batch.len(), "a group commit failed; writing its submits one by one");
            for (task, reply) in batch {
                let alone = retrying(|| async {
                    let mut conn = db.conn().await?;
                    let tx = conn.transaction().await?;
                    let created = tasks::create(&tx, &task).await?;
                    tx.commit().await?;
                    Ok::<_, StoreError>(created)
                })
                .await;
                let answer = alone.and_then(|c| {
                    c.ok_or_else(|| StoreError::Unavailable("a plain submit reported an Idempotency-Key race".into()))
                });
                let _ = reply.send(answer);
            }
        }
    }
}
