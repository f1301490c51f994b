//! The HTTP server loop: accept until told to stop, then drain within the grace period.
//! `axum::serve`'s own graceful shutdown waits forever, so the grace deadline is enforced here.

use axum::Router;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::{App, mark_shutting_down};

pub async fn serve(listener: TcpListener, router: Router, app: Arc<App>, stop: CancellationToken) {
    let grace = app.rt.shutdown_grace;
    let server = axum::serve(listener, router).with_graceful_shutdown(stop.clone().cancelled_owned()).into_future();
    let mut server = tokio::spawn(server);
    tokio::select! {
        r = &mut server => {
            if let Ok(Err(e)) = r {
                tracing::error!(error = %e, "server stopped");
            }
            return;
        }
        _ = stop.cancelled() => {}
    }
    tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new connections; draining");
    mark_shutting_down(&app);
    app.workers.stop_claiming();
    let drain_tasks = app.workers.drain(grace);
    let drain_http = async {
        if tokio::time::timeout(grace, &mut server).await.is_err() {
            tracing::warn!("grace period over; closing the remaining connections");
            server.abort();
        }
    };
    tokio::join!(drain_tasks, drain_http);
    // Undelivered webhooks stay in the outbox for the next start.
    app.deliverer.stop();
    app.background.cancel();
    tracing::info!("stopped");
}
