//! Watching a task run: its status changes, its drafts as they arrive (all of them, in order,
//! whatever image they belong to), then its end. The task's event stream
//! (`GET /v1/tasks/{id}/events`) and the streamed answers of both surfaces (OpenAI's
//! `stream: true`, Gemini's `:streamGenerateContent`) render what this yields.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

use crate::app::App;
use crate::store::TaskRecord;
use crate::worker::{Finished, Preview};

pub enum Watched {
    /// The task as it is now, each time its status changes while it runs (its end is `End`).
    Status(Box<TaskRecord>),
    Draft(Preview),
    End(Box<Finished>),
    /// The task outlived the wait (it goes on; its result will be kept).
    TimedOut(String),
}

/// Starts watching `first` (as submitted); returns once the watch is subscribed, so that the
/// submit's own subscription can be let go without missing the end. The watch stops when the
/// receiver is dropped (the client went away; the task runs on).
pub async fn start(app: Arc<App>, owner: String, first: TaskRecord, wait: Duration) -> mpsc::Receiver<Watched> {
    let (tx, rx) = mpsc::channel(8);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(run(app, owner, first, wait, tx, ready_tx));
    let _ = ready_rx.await;
    rx
}

async fn run(
    app: Arc<App>,
    owner: String,
    first: TaskRecord,
    wait: Duration,
    tx: mpsc::Sender<Watched>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut changes = app.workers.signals.subscribe(&first.id);
    let _ = ready.send(());
    let give_up = tokio::time::Instant::now() + wait;
    let mut sent = 0usize;
    let mut task = first;
    let mut last = None;
    loop {
        // Drafts first: a task's end never overtakes the drafts made before it.
        for p in app.workers.signals.previews(&task.id).into_iter().skip(sent) {
            if tx.send(Watched::Draft(p)).await.is_err() {
                return;
            }
            sent += 1;
        }
        if task.status.is_terminal() {
            let _ = tx.send(Watched::End(Box::new(task.into()))).await;
            return;
        }
        if last != Some(task.status) {
            last = Some(task.status);
            if tx.send(Watched::Status(Box::new(task.clone()))).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    changes = app.workers.signals.subscribe(&task.id);
                }
            }
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::time::sleep_until(give_up) => {
                let _ = tx.send(Watched::TimedOut(task.id.clone())).await;
                return;
            }
            _ = tx.closed() => return,
        }
        if let Some(ended) = changes.ended() {
            for p in ended.previews.iter().skip(sent) {
                if tx.send(Watched::Draft(p.clone())).await.is_err() {
                    return;
                }
            }
            let _ = tx.send(Watched::End(Box::new(ended))).await;
            return;
        }
        match app.store.get_task(&owner, &task.id).await {
            Ok(Some(t)) => task = t,
            Ok(None) => return,
            Err(e) => tracing::warn!(task_id = task.id, error = %e, "stream: reading the task failed"),
        }
    }
}
