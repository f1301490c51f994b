//! Batch states, as OpenAI's Batch API names them:
//! `validating → in_progress → finalizing → completed`, `validating → failed`,
//! `in_progress → finalizing → expired` (past its completion window), and
//! `validating | in_progress | finalizing → cancelling → cancelled`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatchStatus {
    Validating,
    InProgress,
    Finalizing,
    Completed,
    Failed,
    Expired,
    Cancelling,
    Cancelled,
}

impl BatchStatus {
    pub const ALL: [BatchStatus; 8] = [
        BatchStatus::Validating,
        BatchStatus::InProgress,
        BatchStatus::Finalizing,
        BatchStatus::Completed,
        BatchStatus::Failed,
        BatchStatus::Expired,
        BatchStatus::Cancelling,
        BatchStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Validating => "validating",
            BatchStatus::InProgress => "in_progress",
            BatchStatus::Finalizing => "finalizing",
            BatchStatus::Completed => "completed",
            BatchStatus::Failed => "failed",
            BatchStatus::Expired => "expired",
            BatchStatus::Cancelling => "cancelling",
            BatchStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<BatchStatus> {
        BatchStatus::ALL.into_iter().find(|b| b.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, BatchStatus::Completed | BatchStatus::Failed | BatchStatus::Expired | BatchStatus::Cancelled)
    }

    /// Whether a cancel request still applies (OpenAI: a batch that is validating or running).
    pub fn can_cancel(self) -> bool {
        matches!(self, BatchStatus::Validating | BatchStatus::InProgress | BatchStatus::Finalizing)
    }

    /// The webhook event a batch sends on reaching this state, if any.
    pub fn event(self) -> Option<&'static str> {
        match self {
            BatchStatus::Completed => Some("batch.completed"),
            BatchStatus::Failed => Some("batch.failed"),
            BatchStatus::Expired => Some("batch.expired"),
            BatchStatus::Cancelled => Some("batch.cancelled"),
            _ => None,
        }
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an upstream batch job stands, as the gateway records it: each step that cannot be
/// taken back upstream is recorded as it is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStep {
    /// Lines taken; the input file not yet uploaded.
    Preparing,
    /// Uploaded (`input_file`); the job is about to be created (after a crash in this step,
    /// look the job up by its display name before creating one).
    Creating,
    /// Created (`upstream_name`): polled until it ends.
    Running,
    /// Its lines have ended.
    Done,
}

impl JobStep {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStep::Preparing => "preparing",
            JobStep::Creating => "creating",
            JobStep::Running => "running",
            JobStep::Done => "done",
        }
    }

    pub fn parse(s: &str) -> Option<JobStep> {
        [JobStep::Preparing, JobStep::Creating, JobStep::Running, JobStep::Done].into_iter().find(|j| j.as_str() == s)
    }
}

/// The only completion window offered (OpenAI's).
pub const COMPLETION_WINDOW: &str = "24h";
pub const COMPLETION_WINDOW_SECS: i64 = 24 * 3600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_end_where_openai_ends() {
        for s in BatchStatus::ALL {
            assert_eq!(BatchStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(BatchStatus::parse("done"), None);
        let ends: Vec<_> = BatchStatus::ALL.into_iter().filter(|s| s.is_terminal()).map(|s| s.as_str()).collect();
        assert_eq!(ends, ["completed", "failed", "expired", "cancelled"]);
        assert!(BatchStatus::InProgress.can_cancel() && !BatchStatus::Cancelling.can_cancel());
        assert_eq!(BatchStatus::Expired.event(), Some("batch.expired"));
        assert_eq!(BatchStatus::InProgress.event(), None);
    }
}
