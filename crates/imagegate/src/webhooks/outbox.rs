//! The delivery loop: claims due outbox messages (with a lease, so a crash mid-delivery means a
//! redelivery, never a loss), signs and POSTs each, records the attempt and schedules the next.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{schedule, sign};
use crate::delivery::urls::ImageUrls;
use crate::domain::{now_millis, now_secs};
use crate::outbox::{self, Control, Outbox};
use crate::store::{AttemptOutcome, DeliveryAttempt, Store, StoreError, WebhookMessage};

/// Messages in flight at once.
const CONCURRENCY: usize = 64;
const BATCH: u32 = 32;
/// A claimed message becomes claimable again this long after an attempt's timeout, so a
/// process killed mid-delivery delays the redelivery by about one attempt, no more.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

pub struct Deliverer {
    id: String,
    store: Arc<dyn Store>,
    /// Presigned image URLs in payloads are signed afresh at each attempt (a retry hours later
    /// must not carry expired ones).
    urls: ImageUrls,
    client: reqwest::Client,
    schedule: Vec<Duration>,
    lease: Duration,
    allow_private: bool,
    control: Control,
}

impl Deliverer {
    pub fn new(
        store: Arc<dyn Store>,
        urls: ImageUrls,
        schedule: Vec<Duration>,
        timeout: Duration,
        allow_private: bool,
        resolver: Arc<dyn crate::egress::Resolver>,
    ) -> reqwest::Result<Arc<Deliverer>> {
        Ok(Arc::new(Deliverer {
            id: format!("dlv_{}", ulid::Ulid::new()),
            store,
            urls,
            client: crate::egress::guarded(crate::egress::Guarded {
                resolver,
                allow_private,
                timeout,
                max_redirects: 0,
                user_agent: concat!("imagegate-webhooks/", env!("CARGO_PKG_VERSION")),
            })?,
            schedule,
            lease: timeout + LEASE_MARGIN,
            allow_private,
            control: Control::new(CONCURRENCY),
        }))
    }

    /// A message was written: deliver without waiting for the next poll.
    pub fn notify(&self) {
        self.control.notify();
    }

    pub fn stop(&self) {
        self.control.stop();
    }

    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        outbox::start(self)
    }

    async fn deliver(&self, msg: WebhookMessage) {
        let started = Instant::now();
        let attempted_at_ms = now_millis();
        let (status_code, error, retry_after) = match self.send(&msg).await {
            Ok((code, retry_after)) => (Some(code), None, retry_after),
            Err(e) => (None, Some(e), None),
        };
        let delivered = status_code.is_some_and(|c| (200..300).contains(&c));
        let failures = msg.attempts as usize + 1;
        let outcome = if delivered {
            AttemptOutcome::Delivered
        } else {
            match schedule::next_delay(&self.schedule, failures, retry_after, rand::random::<f64>()) {
                Some(d) => AttemptOutcome::RetryAt(now_millis() + d.as_millis() as i64),
                None => AttemptOutcome::GiveUp,
            }
        };
        crate::stats::webhook_attempt(match outcome {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::RetryAt(_) => "retrying",
            AttemptOutcome::GiveUp => "given_up",
        });
        let attempt = DeliveryAttempt {
            message_id: msg.id.clone(),
            task_id: msg.task_id.clone(),
            event_type: msg.event_type.clone(),
            url: msg.url.clone(),
            attempted_at_ms,
            status_code,
            error: error.clone(),
            latency_ms: started.elapsed().as_millis() as i64,
        };
        tracing::info!(
            message_id = msg.id, task_id = msg.task_id, event = msg.event_type, status = ?status_code,
            error = ?error, attempt = failures, outcome = ?outcome, "webhook attempt"
        );
        if let Err(e) = self.store.record_attempt(&attempt, outcome).await {
            tracing::error!(message_id = msg.id, error = %e, "recording a webhook attempt failed; it will be retried");
        }
    }

    /// The payload to send now: as stored, with its task's image URLs signed afresh when they
    /// are presigned ones, and its task's input images listed (as `GET /v1/tasks/{id}` does).
    async fn fresh_payload(&self, msg: &WebhookMessage) -> String {
        let stored = msg.payload.as_str();
        let has_inputs = stored.contains("\"reference_images\"") || stored.contains("\"mask\"");
        if !self.urls.expire() && !has_inputs {
            return stored.to_string();
        }
        let Ok(mut event) = serde_json::from_str::<serde_json::Value>(stored) else { return stored.to_string() };
        let Some(task) = event.get_mut("data") else { return stored.to_string() };
        if self.urls.expire() && !task["result"].is_null() {
            self.urls.refresh_task(task).await;
        }
        if crate::task_view::has_inputs(task) {
            match self.store.task_inputs(&msg.owner, &msg.task_id).await {
                Ok(inputs) => crate::task_view::with_inputs(task, &inputs),
                Err(e) => tracing::warn!(message_id = msg.id, error = %e, "reading the task's inputs failed"),
            }
        }
        event.to_string()
    }

    /// POSTs one signed attempt: the status and any `Retry-After`, or why it could not be sent.
    async fn send(&self, msg: &WebhookMessage) -> Result<(u16, Option<Duration>), String> {
        let secret = match self.store.webhook_secret(&msg.owner).await {
            Ok(Some(s)) => s,
            Ok(None) => return Err("the API key no longer exists".into()),
            Err(e) => return Err(format!("store: {e}")),
        };
        // Checked again at send time: IP literals never reach the resolver, and a URL stored
        // under an earlier, looser policy is not trusted blindly.
        crate::egress::guard::check_url(&msg.url, self.allow_private).map_err(|e| format!("webhook_url {e}"))?;
        let payload = self.fresh_payload(msg).await;
        let timestamp = now_secs();
        let signature = sign::sign(&secret, &msg.id, timestamp, &payload).map_err(|e| e.to_string())?;
        let resp = self
            .client
            .post(&msg.url)
            .header("content-type", "application/json")
            .header("webhook-id", &msg.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(payload)
            .send()
            .await
            .map_err(|e| describe(&e))?;
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::domain::duration::parse_retry_after);
        Ok((resp.status().as_u16(), retry_after))
    }
}

#[async_trait::async_trait]
impl Outbox for Deliverer {
    type Job = WebhookMessage;
    const NAME: &'static str = "webhooks";

    async fn claim(&self, now_ms: i64) -> Result<Vec<WebhookMessage>, StoreError> {
        self.store.claim_webhooks(&self.id, now_ms, now_ms + self.lease.as_millis() as i64, BATCH).await
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.store.next_webhook_due().await
    }

    async fn run(self: Arc<Self>, msg: WebhookMessage) {
        self.deliver(msg).await;
    }

    fn control(&self) -> &Control {
        &self.control
    }
}

/// A short, secret-free description of a send failure.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else if e.is_redirect() {
        "redirect not followed"
    } else {
        "request failed"
    };
    let mut detail = String::new();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        detail = s.to_string();
        src = s.source();
    }
    if detail.is_empty() { kind.to_string() } else { format!("{kind}: {detail}") }
}
