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
}

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
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
    calls: Mutex<Vec<Recorded>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    completed: AtomicUsize,
    dropped: AtomicUsize,
}

impl Script {
    /// Queues answers for the next calls, in order; after them, calls succeed.
    pub fn push(&self, reply: Reply) {
        if let Ok(mut q) = self.inner.queue.lock() {
            q.push_back(reply);
        }
    }

    pub fn next_reply(&self) -> Reply {
        self.inner.queue.lock().ok().and_then(|mut q| q.pop_front()).unwrap_or(Reply::Success)
    }

    /// Latency added to every call.
    pub fn set_delay(&self, d: Duration) {
        if let Ok(mut x) = self.inner.default_delay.lock() {
            *x = d;
        }
    }

    pub fn delay(&self) -> Duration {
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
