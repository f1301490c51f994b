//! The HTTP server loop, on hyper directly: `axum::serve` has no connection cap, no header-read
//! timeout (a slowloris holds a task per connection forever) and a graceful shutdown that waits
//! forever. Here: at most `max_connections` at once (extra ones wait in the accept backlog), a
//! header-read timeout, and a drain deadline.
//!
//! HTTP/1.1 only, on hyper's own HTTP/1 builder: hyper-util's `auto` builder first reads a few
//! bytes to tell HTTP/1 from HTTP/2 and hands them back through a wrapper, which makes hyper
//! grow every connection's read buffer to 16 KiB; a sync request holds its connection for
//! minutes, so that was 8 KiB too many per waiting client. (Clients speak HTTP/1.1 to
//! gateways; TLS and HTTP/2 belong to the proxy in front.)

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
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
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(app.rt.header_read_timeout).keep_alive(true);
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
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
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
