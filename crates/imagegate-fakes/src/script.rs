//! Scripted answers and call accounting shared by the fakes.

use serde_json::Value;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// The fake's normal success answer.
    Success,
    /// A given status and JSON body (e.g. a fixture).
    Json { status: u16, body: Value },
    /// A given status and raw body.
    Raw { status: u16, body: String },
    /// Sleep this long, then answer with the next entry's behaviour (or success).
    Delay(Duration, Box<Reply>),
    /// Send the status line, then break the connection mid-body.
    Reset,
    /// The normal success answer, cut off partway through its body.
    Truncated,
}

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub http_version: String,
    pub api_key: Option<String>,
    pub body: Value,
}

/// Shared state: the script queue, the log of calls, concurrency and disconnect counters.
#[derive(Debug, Default, Clone)]
pub struct Script {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: Mutex<VecDeque<Reply>>,
    default_delay: Mutex<Duration>,
    /// When set, each call's delay is drawn uniformly from this range instead.
    delay_range: Mutex<Option<(Duration, Duration, u64)>>,
    calls: Mutex<Vec<Recorded>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    completed: AtomicUsize,
    dropped: AtomicUsize,
    /// Random faults: (probability, LCG state).
    faults: Mutex<Option<(f64, u64)>>,
}

impl Script {
    /// Queues answers for the next calls, in order; after them, calls succeed.
    pub fn push(&self, reply: Reply) {
        if let Ok(mut q) = self.inner.queue.lock() {
            q.push_back(reply);
        }
    }

    pub fn next_reply(&self) -> Reply {
        if let Some(r) = self.inner.queue.lock().ok().and_then(|mut q| q.pop_front()) {
            return r;
        }
        self.random_fault().unwrap_or(Reply::Success)
    }

    /// After the queue runs out, answer with a random fault with probability `p`, from a seeded
    /// generator so a run can be repeated. The faults, equally likely: 429 with a `retryDelay`
    /// hint, 429 without, 500, 503, a connection reset mid-body, a success answer cut short,
    /// and a 200 that is not JSON.
    pub fn set_fault_rate(&self, p: f64, seed: u64) {
        if let Ok(mut f) = self.inner.faults.lock() {
            *f = Some((p, seed.max(1)));
        }
    }

    fn random_fault(&self) -> Option<Reply> {
        let mut guard = self.inner.faults.lock().ok()?;
        let (p, state) = guard.as_mut()?;
        let mut next = || {
            // 64-bit LCG (Knuth's MMIX constants): small, deterministic, good enough for tests.
            *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (*state >> 11) as f64 / (1u64 << 53) as f64
        };
        if next() >= *p {
            return None;
        }
        let pick = (next() * 7.0) as u32;
        Some(match pick {
            0 => Reply::Json {
                status: 429,
                body: serde_json::json!({"error": {"code": 429, "message": "Resource exhausted.", "status": "RESOURCE_EXHAUSTED"}}),
            },
            5 => Reply::Json {
                status: 429,
                body: serde_json::json!({"error": {"code": 429, "message": "Quota exceeded; retry in 1s.",
                    "status": "RESOURCE_EXHAUSTED", "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": "1s"}]}}),
            },
            6 => Reply::Truncated,
            1 => Reply::Json {
                status: 503,
                body: serde_json::json!({"error": {"code": 503, "message": "The model is overloaded. Please try again later.", "status": "UNAVAILABLE"}}),
            },
            2 => Reply::Json {
                status: 500,
                body: serde_json::json!({"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}),
            },
            3 => Reply::Reset,
            _ => Reply::Raw { status: 200, body: "{\"candidates\": [".into() },
        })
    }

    /// Drops one scripted answer; `false` when none was left.
    pub fn drop_scripted(&self) -> bool {
        self.inner.queue.lock().ok().and_then(|mut q| q.pop_front()).is_some()
    }

    /// Latency added to every call.
    pub fn set_delay(&self, d: Duration) {
        if let Ok(mut x) = self.inner.default_delay.lock() {
            *x = d;
        }
    }

    /// Latency drawn for each call uniformly from `min..=max` (seeded, repeatable).
    pub fn set_delay_range(&self, min: Duration, max: Duration, seed: u64) {
        if let Ok(mut r) = self.inner.delay_range.lock() {
            *r = Some((min, max.max(min), seed.max(1)));
        }
    }

    /// The latency for the next call.
    pub fn delay(&self) -> Duration {
        if let Ok(mut r) = self.inner.delay_range.lock()
            && let Some((min, max, state)) = r.as_mut()
        {
            *state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = (*state >> 11) as f64 / (1u64 << 53) as f64;
            return *min + (*max - *min).mul_f64(u);
        }
        self.inner.default_delay.lock().map(|d| *d).unwrap_or_default()
    }

    pub fn record(&self, r: Recorded) {
        if let Ok(mut c) = self.inner.calls.lock() {
            c.push(r);
        }
    }

    /// Every request received so far.
    pub fn calls(&self) -> Vec<Recorded> {
        self.inner.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The calls as JSON: `[{path, api_key, body}]`.
    pub fn calls_json(&self) -> Value {
        let calls = self.calls();
        Value::Array(
            calls
                .into_iter()
                .map(|c| serde_json::json!({"path": c.path, "api_key": c.api_key, "body": c.body}))
                .collect(),
        )
    }

    pub fn call_count(&self) -> usize {
        self.inner.calls.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// The most requests ever handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight.load(Ordering::SeqCst)
    }

    /// Requests whose client went away before the answer was sent.
    pub fn dropped(&self) -> usize {
        self.inner.dropped.load(Ordering::SeqCst)
    }

    /// Requests answered in full.
    pub fn completed(&self) -> usize {
        self.inner.completed.load(Ordering::SeqCst)
    }

    /// Marks a request in flight until the guard is finished or dropped.
    pub fn enter(&self) -> CallGuard {
        let now = self.inner.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.max_in_flight.fetch_max(now, Ordering::SeqCst);
        CallGuard { script: self.clone(), finished: false }
    }
}

/// Counts a request as dropped if its handler is cancelled (the client disconnected).
pub struct CallGuard {
    script: Script,
    finished: bool,
}

impl CallGuard {
    pub fn finish(mut self) {
        self.finished = true;
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        let inner = &self.script.inner;
        inner.in_flight.fetch_sub(1, Ordering::SeqCst);
        if self.finished {
            inner.completed.fetch_add(1, Ordering::SeqCst);
        } else {
            inner.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A success answer cut off halfway, as a proxy that gave up would leave it: the status and the
/// first half of the body, then a clean end (so the client sees a complete, unusable body).
pub async fn truncated(full: axum::response::Response) -> axum::response::Response {
    let (mut parts, body) = full.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes.slice(..bytes.len() / 2)))
}
