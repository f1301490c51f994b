//! Task states and the transitions between them:
//! `queued → running → completed | failed | cancelled` (and `queued → cancelled`).
//! A `running` task whose lease expired goes back to being claimable (it stays `running` in
//! storage until a worker claims it again, which counts one more attempt).

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Queued,
    Running,
    Completed,
    Failed,
    Cancelled,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Queued => "queued",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        match s {
            "queued" => Some(TaskStatus::Queued),
            "running" => Some(TaskStatus::Running),
            "completed" => Some(TaskStatus::Completed),
            "failed" => Some(TaskStatus::Failed),
            "cancelled" => Some(TaskStatus::Cancelled),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, TaskStatus::Completed | TaskStatus::Failed | TaskStatus::Cancelled)
    }

    /// Whether a task may move from `self` to `next`.
    pub fn can_become(self, next: TaskStatus) -> bool {
        use TaskStatus::*;
        matches!(
            (self, next),
            (Queued, Running)
                | (Queued, Cancelled)
                | (Running, Running) // re-claimed after an expired lease
                | (Running, Completed)
                | (Running, Failed)
                | (Running, Cancelled)
                | (Running, Queued) // released on shutdown
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the task was submitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskMode {
    Sync,
    Async,
    /// A line of a batch (`POST /v1/batches`): claimed only when no realtime task waits.
    Batch,
}

impl TaskMode {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskMode::Sync => "sync",
            TaskMode::Async => "async",
            TaskMode::Batch => "batch",
        }
    }

    /// A stored mode (an unknown one reads as sync, as tasks written before modes were stored).
    pub fn parse(s: &str) -> TaskMode {
        match s {
            "async" => TaskMode::Async,
            "batch" => TaskMode::Batch,
            _ => TaskMode::Sync,
        }
    }

    /// The queue lane: 0 for realtime work, 1 for batch lines (claimed only when lane 0 is empty).
    pub fn lane(self) -> i64 {
        i64::from(self == TaskMode::Batch)
    }
}

#[cfg(test)]
mod tests {
    use super::TaskStatus::*;
    use super::*;

    #[test]
    fn terminal_states_never_move() {
        for from in [Completed, Failed, Cancelled] {
            for to in [Queued, Running, Completed, Failed, Cancelled] {
                assert!(!from.can_become(to), "{from} -> {to}");
            }
        }
    }

    #[test]
    fn the_happy_path_and_cancel_are_allowed() {
        assert!(Queued.can_become(Running));
        assert!(Running.can_become(Completed));
        assert!(Queued.can_become(Cancelled));
        assert!(!Queued.can_become(Completed));
        for s in ["queued", "running", "completed", "failed", "cancelled"] {
            assert_eq!(TaskStatus::parse(s).unwrap().as_str(), s);
        }
        assert_eq!(TaskStatus::parse("done"), None);
    }
}
