//! Serves a fake on HTTP/1.1 and h2c (HTTP/2 with prior knowledge) on one port, with no cap on
//! streams per connection, as real upstreams behind a load balancer do.

use axum::Router;
use std::time::Duration;
use tokio::net::TcpListener;

pub async fn serve(listener: TcpListener, app: Router) {
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder.http2().max_concurrent_streams(None);
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service).into_owned();
        tokio::spawn(async move {
            let _ = conn.await;
        });
    }
}
