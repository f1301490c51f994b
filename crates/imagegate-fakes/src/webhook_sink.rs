//! A webhook receiver: records every delivery (headers and raw body) and answers with scripted
//! statuses (200 once the script runs out).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct Delivery {
    pub webhook_id: String,
    pub timestamp: String,
    pub signature: String,
    pub body: String,
    pub received_at: std::time::Instant,
}

#[derive(Default)]
struct Shared {
    deliveries: Mutex<Vec<Delivery>>,
    replies: Mutex<VecDeque<u16>>,
    /// Time taken before each answer (a slow receiver).
    delay: Mutex<std::time::Duration>,
}

pub struct WebhookSink {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl WebhookSink {
    pub async fn start() -> anyhow::Result<WebhookSink> {
        WebhookSink::start_on("127.0.0.1:0".parse()?).await
    }

    /// Starts on a given address (a receiver that comes back on the port it had).
    pub async fn start_on(addr: SocketAddr) -> anyhow::Result<WebhookSink> {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(receive).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(WebhookSink { addr, shared, server })
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/imagegate", self.addr)
    }

    /// Answer the next deliveries with these statuses, in order.
    pub fn reply_with(&self, statuses: &[u16]) {
        if let Ok(mut r) = self.shared.replies.lock() {
            r.extend(statuses.iter().copied());
        }
    }

    /// Take this long to answer each delivery (it is recorded when it arrives).
    pub fn answer_after(&self, delay: std::time::Duration) {
        if let Ok(mut d) = self.shared.delay.lock() {
            *d = delay;
        }
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.deliveries.lock().map(|d| d.clone()).unwrap_or_default()
    }

    /// Waits until at least `n` deliveries arrived (or `timeout` passes) and returns them.
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> Vec<Delivery> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let d = self.deliveries();
            if d.len() >= n || tokio::time::Instant::now() >= deadline {
                return d;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
}

impl Drop for WebhookSink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(State(s): State<Arc<Shared>>, headers: HeaderMap, body: String) -> impl IntoResponse {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if let Ok(mut d) = s.deliveries.lock() {
        d.push(Delivery {
            webhook_id: h("webhook-id"),
            timestamp: h("webhook-timestamp"),
            signature: h("webhook-signature"),
            body,
            received_at: std::time::Instant::now(),
        });
    }
    let status = s.replies.lock().ok().and_then(|mut r| r.pop_front()).unwrap_or(200);
    let delay = s.delay.lock().map(|d| *d).unwrap_or_default();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    StatusCode::from_u16(status).unwrap_or(StatusCode::OK)
}
