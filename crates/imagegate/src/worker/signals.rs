//! In-process notifications of task changes: sync waiters and SSE streams subscribe to a task
//! and are woken on every status change this process makes. (Changes made by another replica
//! are picked up by the subscribers' periodic re-read.)

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::watch;

#[derive(Default)]
pub struct Signals {
    map: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Signals {
    /// Subscribe before reading the task's state, so a change in between is not missed.
    pub fn subscribe(&self, task_id: &str) -> watch::Receiver<u64> {
        match self.map.lock() {
            Ok(mut map) => map.entry(task_id.to_string()).or_insert_with(|| watch::channel(0).0).subscribe(),
            // A poisoned map only loses the wake-up; subscribers still poll.
            Err(_) => watch::channel(0).1,
        }
    }

    /// Wakes the task's subscribers; forgets the task when nobody listens.
    pub fn notify(&self, task_id: &str) {
        if let Ok(mut map) = self.map.lock()
            && let Some(tx) = map.get(task_id)
        {
            tx.send_modify(|v| *v += 1);
            if tx.receiver_count() == 0 {
                map.remove(task_id);
            }
        }
    }

    /// Wakes the subscribers one last time and forgets the task (it ended).
    pub fn finish(&self, task_id: &str) {
        if let Some(tx) = self.map.lock().ok().and_then(|mut m| m.remove(task_id)) {
            tx.send_modify(|v| *v += 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_see_changes_made_after_they_subscribed() {
        let s = Signals::default();
        let mut rx = s.subscribe("t");
        s.notify("t");
        assert!(rx.changed().await.is_ok());
        s.finish("t");
        assert!(rx.changed().await.is_ok(), "the last change is seen");
        assert!(rx.changed().await.is_err(), "then the channel is closed");
        s.notify("nobody");
    }
}
