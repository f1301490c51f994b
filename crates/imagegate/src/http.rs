//! The HTTP server loop, on hyper directly: `axum::serve` has no connection cap, no header-read
//! timeout (a slowloris holds a task per connection forever) and a graceful shutdown that waits
//! forever. Here: at most `max_connections` at once (extra ones wait in the accept backlog), a
//! header-read timeout, and a drain deadline.

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::app::{App, mark_shutting_down};

pub async fn serve(listener: TcpListener, router: Router, app: Arc<App>, stop: CancellationToken) {
    let grace = app.rt.shutdown_grace;
    let slots = Arc::new(Semaphore::new(app.rt.max_connections));
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(app.rt.header_read_timeout).keep_alive(true);
    let graceful = GracefulShutdown::new();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = stop.cancelled() => break,
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let _ = conn.await;
            drop(permit);
        });
    }
    drop(listener);
    tracing::info!(grace_secs = grace.as_secs(), "shutting down: no new connections; draining");
    mark_shutting_down(&app);
    app.workers.stop_claiming();
    let drain_tasks = app.workers.drain(grace);
    let drain_http = async {
        if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
            tracing::warn!("grace period over; closing the remaining connections");
        }
    };
    tokio::join!(drain_tasks, drain_http);
    // Undelivered webhooks stay in the outbox for the next start.
    app.deliverer.stop();
    app.exporter.stop();
    app.background.cancel();
    tracing::info!("stopped");
}
