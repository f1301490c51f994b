//! Wakes request handlers waiting on a task (sync requests) when the task ends in this process.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::oneshot;

#[derive(Default)]
pub struct Waiters {
    map: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

impl Waiters {
    /// Register before reading the task's state, so an end in between is not missed.
    pub fn register(&self, task_id: &str) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        if let Ok(mut map) = self.map.lock() {
            map.entry(task_id.to_string()).or_default().push(tx);
        }
        rx
    }

    /// Wakes every waiter of `task_id`.
    pub fn wake(&self, task_id: &str) {
        let senders = self.map.lock().ok().and_then(|mut m| m.remove(task_id));
        for tx in senders.into_iter().flatten() {
            let _ = tx.send(());
        }
    }
}
