//! Batches (OpenAI's Batch API): a file of request lines, each line run as a task of its own
//! (mode `batch`, in the queue's lower lane), so every image gets its URL, retention, export
//! and webhook. A batch is driven through its states by one loop per process: a driver claims
//! a due batch with a lease (one driver per batch across replicas), takes one step, saves it
//! and lets it go until its next look. Every step can be taken again after a crash: lines are
//! written idempotently and the output files are named after the batch.
//!
//! `validating` (intake.rs) → `in_progress` (the line tasks run) → `finalizing` (output.rs
//! writes the files) → `completed`; a cancel → `cancelling` (open lines cancelled) →
//! `cancelled`; past the completion window → open lines cancelled → `expired`.

mod flex;
mod intake;
mod output;
pub mod upstream;
pub mod view;

use std::sync::Arc;
use std::time::Duration;

use crate::app::App;
use crate::domain::batch::BatchStatus;
use crate::domain::{now_millis, now_secs};
use crate::store::{BatchRecord, CancelOutcome, NewWebhook, StoreError};
use crate::webhooks;

/// How long a driver holds a batch without renewing.
const LEASE: Duration = Duration::from_secs(60);
/// How often a running batch's lines are counted.
const CHECK_EVERY: Duration = Duration::from_millis(1000);
/// How long the loop sleeps when no batch is due (a new batch or a cancel wakes it sooner).
const IDLE: Duration = Duration::from_millis(500);
/// After a step failed (the database or storage unreachable), when to try it again.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Blob(#[from] crate::blobs::BlobError),
    #[error("reading the input file: {0}")]
    Read(std::io::Error),
    #[error("writing a line's task: {0}")]
    Submit(String),
    #[error("another driver took the batch over")]
    LeaseLost,
}

/// A step's outcome: the batch as it now stands, and when to look at it again.
pub(crate) struct Step {
    batch: BatchRecord,
    again_in_ms: i64,
}

fn lease_until() -> i64 {
    now_millis() + LEASE.as_millis() as i64
}

/// Starts the driver loop and the upstream jobs' loop; they stop with `app.background`.
pub fn start(app: Arc<App>) {
    upstream::start(app.clone());
    tokio::spawn(async move {
        let worker = format!("batches-{}", ulid::Ulid::new());
        loop {
            if app.background.is_cancelled() {
                return;
            }
            match app.store.claim_batch(&worker, now_millis(), lease_until()).await {
                Ok(Some(batch)) => drive(&app, &worker, batch).await,
                Ok(None) => {
                    tokio::select! {
                        _ = app.batch_wake.notified() => {}
                        _ = tokio::time::sleep(IDLE) => {}
                        _ = app.background.cancelled() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "claiming a batch failed");
                    tokio::time::sleep(RETRY).await;
                }
            }
        }
    });
}

/// Takes one step of a claimed batch and saves it.
async fn drive(app: &App, worker: &str, batch: BatchRecord) {
    let id = batch.id.clone();
    let before = batch.status;
    let step = match batch.status {
        BatchStatus::Validating => intake::validate(app, worker, batch.clone()).await,
        BatchStatus::InProgress => in_progress(app, batch.clone()).await,
        BatchStatus::Finalizing => finalize(app, batch.clone()).await,
        BatchStatus::Cancelling => cancelling(app, batch.clone()).await,
        _ => Ok(Step { batch: batch.clone(), again_in_ms: 0 }),
    };
    let (saved, again) = match step {
        Ok(s) => (s.batch, s.again_in_ms),
        Err(BatchError::LeaseLost) => return,
        Err(e) => {
            tracing::warn!(batch_id = id, status = %before, error = %e, "a batch step failed; it will be tried again");
            (batch, RETRY.as_millis() as i64)
        }
    };
    let webhook = if saved.status != before { event(&saved) } else { None };
    let now = now_millis();
    match app.store.save_batch(&saved, worker, now + again, webhook.as_ref(), now).await {
        Ok(true) => {
            if saved.status != before {
                tracing::info!(batch_id = id, from = %before, to = %saved.status, "batch moved on");
            }
            if webhook.is_some() {
                app.deliverer.notify();
            }
        }
        Ok(false) => tracing::warn!(batch_id = id, "the batch's lease was lost before its step was saved"),
        Err(e) => tracing::warn!(batch_id = id, error = %e, "saving a batch step failed; it will be taken again"),
    }
}

/// `in_progress`: waits for the line tasks to end (or the window to close).
async fn in_progress(app: &App, mut b: BatchRecord) -> Result<Step, BatchError> {
    upstream::form_jobs(app, &b).await?;
    let p = app.store.batch_progress(&b.id).await?;
    (b.completed, b.failed, b.cost_usd) = (p.completed, p.failed, p.cost_usd);
    if now_secs() >= b.expires_at {
        b.expired_at = Some(now_secs());
        cancel_open(app, &b).await?;
    } else if p.open > 0 {
        return Ok(Step { batch: b, again_in_ms: CHECK_EVERY.as_millis() as i64 });
    }
    b.status = BatchStatus::Finalizing;
    b.finalizing_at = Some(now_secs());
    Ok(Step { batch: b, again_in_ms: 0 })
}

/// `finalizing`: once no line is open, writes the files and ends the batch.
async fn finalize(app: &App, mut b: BatchRecord) -> Result<Step, BatchError> {
    let end = if b.expired_at.is_some() { BatchStatus::Expired } else { BatchStatus::Completed };
    close(app, &mut b, end).await
}

/// `cancelling`: cancels the open lines; once none is open, writes the files and ends.
async fn cancelling(app: &App, mut b: BatchRecord) -> Result<Step, BatchError> {
    cancel_open(app, &b).await?;
    close(app, &mut b, BatchStatus::Cancelled).await
}

async fn close(app: &App, b: &mut BatchRecord, end: BatchStatus) -> Result<Step, BatchError> {
    let p = app.store.batch_progress(&b.id).await?;
    (b.completed, b.failed, b.cost_usd) = (p.completed, p.failed, p.cost_usd);
    b.total = b.total.max(p.lines);
    if p.open > 0 {
        return Ok(Step { batch: b.clone(), again_in_ms: CHECK_EVERY.as_millis() as i64 });
    }
    let files = output::write_files(app, b, p.completed, p.failed).await?;
    b.output_file_id = files.output;
    b.error_file_id = files.errors;
    let now = Some(now_secs());
    match end {
        BatchStatus::Completed => b.completed_at = now,
        BatchStatus::Expired => b.expired_at = b.expired_at.or(now),
        _ => b.cancelled_at = now,
    }
    b.status = end;
    Ok(Step { batch: b.clone(), again_in_ms: 0 })
}

/// Cancels the batch's lines that have not ended: queued ones at once, running ones by
/// asking their workers (here, or on another replica at its next heartbeat).
async fn cancel_open(app: &App, b: &BatchRecord) -> Result<(), BatchError> {
    loop {
        let open = app.store.open_batch_tasks(&b.id, 500).await?;
        if open.is_empty() {
            return Ok(());
        }
        for (owner, task_id) in open {
            match app.store.request_cancel(&owner, &task_id, now_millis(), webhooks::event_for).await? {
                CancelOutcome::Cancelled(t) => {
                    app.workers.signals.finish(&t.id, Some(t.clone().into()));
                    app.deliverer.notify();
                }
                CancelOutcome::Requested(t) => {
                    app.workers.cancel_local(&t.id);
                }
                CancelOutcome::AlreadyEnded(_) | CancelOutcome::NotFound => {}
            }
        }
    }
}

/// The batch's webhook for the state it has just reached, when it asked for one.
fn event(b: &BatchRecord) -> Option<NewWebhook> {
    let url = b.webhook_url.as_ref()?;
    let event_type = b.status.event()?;
    let timestamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let payload = serde_json::json!({"type": event_type, "timestamp": timestamp, "data": view::batch_object(b, None)});
    Some(NewWebhook {
        id: format!("msg_{}", ulid::Ulid::new()),
        event_type: event_type.to_string(),
        url: url.clone(),
        payload: payload.to_string(),
    })
}
