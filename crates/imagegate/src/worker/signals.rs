//! In-process notifications of task changes: sync waiters and SSE streams subscribe to a task
//! and are woken on every status change this process makes; when the task ends here, they are
//! handed its final record (and, for `b64_json` requests, its images' bytes), so a sync request
//! reads nothing back to answer.
//! Changes made by another replica arrive through the store's events (`crate::replicas`), and
//! the subscribers' periodic re-read covers any event missed.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

use crate::store::TaskRecord;

/// A task that ended in this process.
#[derive(Debug, Clone)]
pub struct Finished {
    pub task: TaskRecord,
    /// `(image id, stored bytes)`, kept when the request wants the bytes inline (`b64_json`).
    pub images: Vec<(String, Bytes)>,
    /// The drafts shown while it ran here, in arrival order (for subscribers that have not
    /// shown them all yet).
    pub previews: Vec<Preview>,
}

impl From<TaskRecord> for Finished {
    /// A task's end with no bytes at hand (they are in storage).
    fn from(task: TaskRecord) -> Finished {
        Finished { task, images: Vec::new(), previews: Vec::new() }
    }
}

/// The last change seen: `Some` once the task ended in this process.
type Latest = Option<Arc<Finished>>;

/// A task's channel, numbered so a subscriber can tell its own from a later one.
struct Channel {
    number: u64,
    tx: watch::Sender<Latest>,
}

#[derive(Default)]
pub struct Signals {
    map: Mutex<HashMap<String, Channel>>,
    numbers: AtomicU64,
    /// The drafts of tasks running here, in arrival order, until each task ends.
    previews: Mutex<HashMap<String, Vec<Preview>>>,
}

/// A draft of one of a task's images, stored and shown while the final image is made.
#[derive(Debug, Clone)]
pub struct Preview {
    /// Which of the task's images (0-based) it is a draft of.
    pub index: u32,
    /// Which draft of that image (0-based).
    pub number: u32,
    pub url: String,
    pub content_type: String,
    pub bytes: Bytes,
}

/// One subscriber's view of a task's changes. Dropping the last one forgets the task.
pub struct Subscription<'a> {
    signals: &'a Signals,
    task_id: String,
    number: u64,
    rx: watch::Receiver<Latest>,
}

impl Subscription<'_> {
    /// Waits for the next change; `Err` when the task was forgotten without one (subscribe
    /// again, or re-read).
    pub async fn changed(&mut self) -> Result<(), watch::error::RecvError> {
        self.rx.changed().await
    }

    /// How the task ended, if it ended in this process after the subscription began.
    pub fn ended(&mut self) -> Option<Finished> {
        self.rx.borrow_and_update().as_deref().cloned()
    }
}

impl Drop for Subscription<'_> {
    fn drop(&mut self) {
        // The map's sender counts this receiver until it is dropped: forget the task when
        // this was its last subscriber, so tasks that ended before anyone looked do not pile up.
        if let Ok(mut map) = self.signals.map.lock()
            && map.get(&self.task_id).is_some_and(|c| c.number == self.number && c.tx.receiver_count() <= 1)
        {
            map.remove(&self.task_id);
        }
    }
}

impl Signals {
    /// Subscribe before reading the task's state, so a change in between is not missed.
    pub fn subscribe(&self, task_id: &str) -> Subscription<'_> {
        let (number, rx) = match self.map.lock() {
            Ok(mut map) => {
                let c = map.entry(task_id.to_string()).or_insert_with(|| Channel {
                    number: self.numbers.fetch_add(1, Ordering::Relaxed),
                    tx: watch::channel(None).0,
                });
                (c.number, c.tx.subscribe())
            }
            // A poisoned map only loses the wake-up; subscribers still poll.
            Err(_) => (u64::MAX, watch::channel(None).1),
        };
        Subscription { signals: self, task_id: task_id.to_string(), number, rx }
    }

    /// Wakes the task's subscribers; forgets the task when nobody listens.
    pub fn notify(&self, task_id: &str) {
        if let Ok(mut map) = self.map.lock()
            && let Some(c) = map.get(task_id)
        {
            c.tx.send_modify(|_| {});
            if c.tx.receiver_count() == 0 {
                map.remove(task_id);
            }
        }
    }

    /// Wakes every subscriber (changes may have been missed: each re-reads its task).
    pub fn notify_all(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, c| {
                c.tx.send_modify(|_| {});
                c.tx.receiver_count() > 0
            });
        }
    }

    /// Wakes the subscribers one last time, with how the task ended when it ended here, and
    /// forgets the task.
    /// Records a draft of a task running here and wakes its subscribers.
    pub fn add_preview(&self, task_id: &str, preview: Preview) {
        if let Ok(mut p) = self.previews.lock() {
            p.entry(task_id.to_string()).or_default().push(preview);
        }
        self.notify(task_id);
    }

    /// The task's drafts so far (empty once it ended, or when it runs elsewhere).
    pub fn previews(&self, task_id: &str) -> Vec<Preview> {
        self.previews.lock().ok().and_then(|p| p.get(task_id).cloned()).unwrap_or_default()
    }

    /// Forgets a task's drafts (its run here is over).
    pub fn clear_previews(&self, task_id: &str) {
        if let Ok(mut p) = self.previews.lock() {
            p.remove(task_id);
        }
    }

    pub fn finish(&self, task_id: &str, ended: Option<Finished>) {
        let previews = self.previews.lock().ok().and_then(|mut p| p.remove(task_id)).unwrap_or_default();
        if let Some(c) = self.map.lock().ok().and_then(|mut m| m.remove(task_id)) {
            let ended = ended.map(|mut f| {
                f.previews = previews;
                Arc::new(f)
            });
            c.tx.send_modify(|latest| *latest = ended);
        }
    }

    /// Tasks with at least one subscriber (or a change nobody has looked at yet).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::{TaskMode, TaskStatus};

    fn record(status: TaskStatus) -> TaskRecord {
        TaskRecord {
            id: "t".into(),
            owner: "o".into(),
            status,
            mode: TaskMode::Sync,
            model: "m".into(),
            request: serde_json::Value::Null,
            result: None,
            error: None,
            attempts: 1,
            created_at_ms: 0,
            started_at_ms: None,
            completed_at_ms: None,
            webhook: None,
            cancel_requested: false,
            cost_usd: None,
            batch_id: None,
            custom_id: None,
            request_id: None,
        }
    }

    #[tokio::test]
    async fn subscribers_see_changes_and_the_final_record() {
        let s = Signals::default();
        let mut sub = s.subscribe("t");
        s.notify("t");
        assert!(sub.changed().await.is_ok());
        assert!(sub.ended().is_none(), "a status change carries no record");
        let images = vec![("img_1".to_string(), Bytes::from_static(b"png"))];
        s.finish("t", Some(Finished { task: record(TaskStatus::Completed), images, previews: Vec::new() }));
        assert!(sub.changed().await.is_ok(), "the last change is seen");
        let ended = sub.ended().expect("ended here");
        assert_eq!(ended.task.status, TaskStatus::Completed);
        assert_eq!(&ended.images[0].1[..], b"png");
        assert!(sub.changed().await.is_err(), "then the channel is closed");
        s.notify("nobody");
        assert_eq!(s.len(), 0);
    }

    #[tokio::test]
    async fn a_subscription_to_a_task_that_already_ended_is_forgotten_when_dropped() {
        let s = Signals::default();
        s.finish("t", Some(record(TaskStatus::Completed).into()));
        let mut first = s.subscribe("t");
        let second = s.subscribe("t");
        assert!(first.ended().is_none(), "the end happened before: the caller must read the store");
        drop(second);
        assert_eq!(s.len(), 1, "still watched by the first");
        drop(first);
        assert_eq!(s.len(), 0, "nothing left behind");
    }
}
