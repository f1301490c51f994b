//! Wake-ups from the other replicas sharing the store: what another process committed wakes
//! here what the change would have woken had it been made here (the dispatcher for new work,
//! a sync waiter or event stream for its task, a running task's cancel, the outbox loops).

pub mod quota;

use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;

use crate::app::App;
use crate::store::StoreEvent;

/// Follows the store's events until the store goes or the app stops; nothing to do for a store
/// no other process shares.
pub fn start(app: &Arc<App>) {
    let Some(mut events) = app.store.events() else { return };
    let app = Arc::clone(app);
    tokio::spawn(async move {
        loop {
            let event = tokio::select! {
                e = events.recv() => e,
                _ = app.background.cancelled() => return,
            };
            match event {
                Ok(e) => apply(&app, e),
                // Too many at once for this process: look at everything again.
                Err(RecvError::Lagged(_)) => apply(&app, StoreEvent::Resync),
                Err(RecvError::Closed) => return,
            }
        }
    });
}

fn apply(app: &App, event: StoreEvent) {
    match event {
        StoreEvent::Queued => app.workers.notify(),
        StoreEvent::TaskChanged(id) => app.workers.signals.notify(&id),
        StoreEvent::CancelRequested(id) => {
            app.workers.cancel_local(&id);
            app.workers.signals.notify(&id);
        }
        StoreEvent::WebhookDue => app.deliverer.notify(),
        StoreEvent::ExportDue => app.exporter.notify(),
        StoreEvent::Resync => {
            app.workers.notify();
            app.workers.signals.notify_all();
            app.deliverer.notify();
            app.exporter.notify();
        }
    }
}
