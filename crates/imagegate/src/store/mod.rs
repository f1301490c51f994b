//! SEAM Store: the durable record of keys, tasks (which are also the work queue) and images.
//!
//! Everything a request promises lives here before any upstream call, so a dropped connection
//! or a killed process never loses a paid image. Reads of customer data take the owner, so a
//! handler cannot forget tenant isolation. Backends: SQLite (the embedded default, one process)
//! and PostgreSQL (several replicas sharing one database), behind the same trait and held to
//! the same conformance tests.

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::batch::BatchStatus;
use crate::domain::export::ExportDestination;
use crate::domain::policy::KeyPolicy;
use crate::domain::task::{TaskMode, TaskStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] rusqlite::Error),
    #[error("database error: {}", postgres_detail(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("migration {version} failed")]
    Migration {
        version: i64,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the database schema is at version {found}, newer than this build knows ({known}): run a newer imagegate")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("stored {what} has an unknown value {value:?}")]
    BadValue { what: &'static str, value: String },
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("stored {what} is corrupt")]
    Corrupt {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://USER@HOST/DB")]
    UnsupportedUrl(String),
}

/// A PostgreSQL error with what the server said (`db error` alone says nothing).
fn postgres_detail(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!(
            "{} ({}){}",
            db.message(),
            db.code().code(),
            db.detail().map(|d| format!(": {d}")).unwrap_or_default()
        ),
        None => e.to_string(),
    }
}

impl StoreError {
    /// Whether the same write may succeed if made again shortly: the database was unreachable,
    /// restarting or busy, rather than the write being wrong.
    pub fn is_transient(&self) -> bool {
        use tokio_postgres::error::SqlState;
        match self {
            StoreError::Unavailable(_) => true,
            StoreError::Postgres(e) => match e.code() {
                // No SQLSTATE: the connection failed or closed.
                None => true,
                Some(c) => {
                    c.code().starts_with("08")
                        || [
                            SqlState::ADMIN_SHUTDOWN,
                            SqlState::CRASH_SHUTDOWN,
                            SqlState::CANNOT_CONNECT_NOW,
                            SqlState::T_R_SERIALIZATION_FAILURE,
                            SqlState::T_R_DEADLOCK_DETECTED,
                            SqlState::QUERY_CANCELED,
                        ]
                        .contains(c)
                }
            },
            StoreError::Database(rusqlite::Error::SqliteFailure(f, _)) => {
                matches!(f.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// The first characters of the key, for people to recognise it (`igk_AbC1…`).
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub policy: KeyPolicy,
    /// Settled spend, and spend reserved by unfinished tasks (USD).
    pub spent_usd: f64,
    pub reserved_usd: f64,
    /// The customer's bucket every image of this key is also copied to.
    pub export: Option<ExportDestination>,
}

/// What a new task reserves against its key's limits until it ends.
#[derive(Debug, Clone, PartialEq)]
pub struct Reservation {
    pub images: u32,
    pub cost_usd: f64,
    /// UTC day the usage is booked to (`YYYY-MM-DD`).
    pub day: String,
}

/// The key's limits to check, atomically with the task's creation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    pub max_concurrency: Option<u32>,
    pub daily_images: Option<u32>,
    pub budget_usd: Option<f64>,
}

/// Which limit a submit ran into.
#[derive(Debug, Clone, PartialEq)]
pub enum LimitHit {
    /// Tasks queued or running.
    Concurrency { limit: u32 },
    /// Images today (reserved or made).
    DailyImages { limit: u32, used: i64 },
    /// Spend (settled + reserved) would pass the budget.
    Budget { limit: f64, used: f64 },
}

/// One row of usage: a key's images and cost for a UTC day and a model.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub owner: String,
    pub day: String,
    pub model: String,
    pub images: i64,
    pub cost_usd: f64,
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub name: String,
    pub key_hash: String,
    pub prefix: String,
    pub created_at: i64,
    /// The key's webhook signing secret (`whsec_…`).
    pub webhook_secret: String,
}

/// Where a task's webhooks go and which events are wanted.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookTarget {
    pub url: String,
    /// Subset of `started`, `completed`, `failed`, `cancelled`.
    pub events: Vec<String>,
}

/// A webhook message to write to the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct NewWebhook {
    /// `msg_…`: the `webhook-id`, stable across retries.
    pub id: String,
    /// `task.completed`, …
    pub event_type: String,
    pub url: String,
    /// The exact body to send (and sign) on every attempt.
    pub payload: String,
}

/// Builds the webhook (if any) owed for a task in the state it has just reached; called by the
/// store inside the transaction that changes the state.
pub type WebhookFor = fn(&TaskRecord) -> Option<NewWebhook>;

/// A claimed outbox message.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookMessage {
    pub id: String,
    pub task_id: String,
    pub owner: String,
    pub event_type: String,
    pub url: String,
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// One delivery attempt, as `GET /v1/tasks/{id}/webhook-deliveries` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub message_id: String,
    pub task_id: String,
    pub event_type: String,
    pub url: String,
    pub attempted_at_ms: i64,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: i64,
}

/// What happens to a message after an attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    RetryAt(i64),
    GiveUp,
}

/// The state of a lease after a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lease {
    Held,
    /// Held, and the owner asked to cancel the task.
    CancelRequested,
    /// Another worker has it, or it ended.
    Lost,
}

/// What `request_cancel` did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The task was queued and is now cancelled.
    Cancelled(TaskRecord),
    /// The task is running; its worker has been asked to abort it.
    Requested(TaskRecord),
    /// The task had already ended.
    AlreadyEnded(TaskRecord),
    NotFound,
}

/// A file uploaded through the Files API (or written by the gateway for a batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    pub id: String,
    pub owner: String,
    pub purpose: String,
    pub filename: String,
    pub bytes: i64,
    pub blob_key: String,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: Option<i64>,
}

/// A batch (`POST /v1/batches`). Timestamps are Unix seconds, as OpenAI's batch object has them.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchRecord {
    /// `batch_…`
    pub id: String,
    pub owner: String,
    pub endpoint: String,
    pub input_file_id: String,
    pub completion_window: String,
    pub status: BatchStatus,
    pub metadata: Option<Value>,
    /// Why validation failed: `[{"code", "message", "param", "line"}]`.
    pub errors: Option<Value>,
    /// Where the batch's own events go (`metadata.webhook_url`, checked at create).
    pub webhook_url: Option<String>,
    /// Lines, and lines completed or failed, as of the last save (live counts come from
    /// `batch_progress` while it runs).
    pub total: i64,
    pub completed: i64,
    pub failed: i64,
    pub cost_usd: f64,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: i64,
    pub in_progress_at: Option<i64>,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub expired_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    /// When the completion window closes.
    pub expires_at: i64,
}

/// A batch's lines as they stand: how many there are, and how their tasks are doing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchProgress {
    /// Lines recorded (a task, or an error for a bad body).
    pub lines: i64,
    pub completed: i64,
    /// Lines with an error, and tasks failed or cancelled.
    pub failed: i64,
    /// Tasks queued or running.
    pub open: i64,
    /// Settled cost of the batch's tasks.
    pub cost_usd: f64,
}

/// One line of a batch as its output files need it.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchLineRecord {
    /// 1-based line number in the input file.
    pub line: i64,
    pub custom_id: String,
    /// The task it became (with its state), or none when its body was refused.
    pub task: Option<TaskRecord>,
    /// Why it was refused: `{"code", "message", "status_code", "param"}`.
    pub error: Option<Value>,
}

/// An upstream batch job carrying some of a batch's lines (see `crate::batches::upstream`).
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamJob {
    /// `ujob_…`; also the job's display name upstream (how it is found again after a crash).
    pub id: String,
    /// The gateway batch whose lines it carries; `None` for a job of flex tasks.
    pub batch_id: Option<String>,
    /// The batch's owner (empty for a flex job, whose tasks may be of several keys).
    pub owner: String,
    /// The channel whose credential made it (and polls it).
    pub channel: String,
    /// The upstream model.
    pub model: String,
    pub step: crate::domain::batch::JobStep,
    /// The upstream's name for the uploaded input file, and for the job.
    pub input_file: Option<String>,
    pub upstream_name: Option<String>,
    pub error: Option<String>,
    pub lines: i64,
    pub created_at_ms: i64,
}

/// An image given to a task (an edit's image, a reference image), stored before the task.
#[derive(Debug, Clone, PartialEq)]
pub struct InputRecord {
    /// `inp_…`
    pub id: String,
    pub task_id: String,
    pub owner: String,
    /// Its place among the task's inputs (0-based), in the order the request gave them.
    pub position: u32,
    /// Shared by the key's inputs with the same bytes.
    pub blob_key: String,
    pub content_type: String,
    /// Hex SHA-256 of the bytes.
    pub sha256: String,
    pub bytes: i64,
    pub width: u32,
    pub height: u32,
    pub created_at_ms: i64,
    /// Unix seconds: the task's retention.
    pub expires_at: i64,
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub id: String,
    pub owner: String,
    pub mode: TaskMode,
    pub model: String,
    /// The validated request as JSON.
    pub request: Value,
    /// `(Idempotency-Key, SHA-256 of the canonical body)`.
    pub idempotency: Option<(String, String)>,
    pub webhook: Option<WebhookTarget>,
    pub reservation: Reservation,
    pub limits: Limits,
    pub created_at_ms: i64,
    /// Written already claimed by this worker, with a lease until this time (ms): a sync
    /// request that found a free worker slot starts at once instead of waiting to be claimed.
    pub claimed: Option<(String, i64)>,
    /// Its input images (already in the blob store), written with the task.
    pub inputs: Vec<InputRecord>,
    /// The batch line it runs (mode `batch`).
    pub batch: Option<BatchLink>,
    /// The queue lane: 0 realtime, 1 batch lines run by workers, 2 batch lines held for an
    /// upstream batch job (`LANE_*`).
    pub lane: i64,
    /// A flex task's deadline (Unix seconds).
    pub deadline_at: Option<i64>,
    /// The submitting HTTP request's id (`X-Request-Id`).
    pub request_id: Option<String>,
}

pub const LANE_REALTIME: i64 = 0;
pub const LANE_BATCH: i64 = 1;
pub const LANE_UPSTREAM: i64 = 2;

/// The batch and line a task was made from.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchLink {
    pub batch_id: String,
    pub custom_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    pub owner: String,
    pub status: TaskStatus,
    pub mode: TaskMode,
    pub model: String,
    pub request: Value,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub attempts: i64,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub completed_at_ms: Option<i64>,
    pub webhook: Option<WebhookTarget>,
    pub cancel_requested: bool,
    /// Settled cost: set when the task ends (0 when it failed or was cancelled).
    pub cost_usd: Option<f64>,
    /// For a batch line: its batch and `custom_id`.
    pub batch_id: Option<String>,
    pub custom_id: Option<String>,
    /// The submitting HTTP request's id.
    pub request_id: Option<String>,
}

/// A task that was just ended, and what ending it queued (so the caller wakes only the
/// loops that have new work).
#[derive(Debug, Clone, PartialEq)]
pub struct Ended {
    /// The task as it now stands (terminal, settled).
    pub task: TaskRecord,
    /// A webhook message was written to the outbox.
    pub webhook_queued: bool,
    /// Copies to the key's export destination were owed.
    pub exports_owed: bool,
}

/// What `create_task` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// A new task was written; a queued one with the number of queued tasks ahead of it when it
    /// was written (capped at [`QUEUE_POSITION_CAP`]).
    New { task: TaskRecord, queue_position: Option<i64> },
    /// The Idempotency-Key matched an earlier task with the same body: that task.
    Existing(TaskRecord),
    /// The Idempotency-Key matched an earlier task with a different body.
    Conflict,
    /// A limit of the key would be passed; nothing was written.
    OverLimit(LimitHit),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub id: String,
    pub task_id: String,
    pub owner: String,
    pub blob_key: String,
    pub content_type: String,
    pub bytes: i64,
    pub width: u32,
    pub height: u32,
    pub etag: String,
    pub created_at_ms: i64,
    /// Unix seconds.
    pub expires_at: i64,
    /// What this image costs (by the model that made it).
    pub cost_usd: f64,
}

/// A copy of an image owed to its key's export destination, as claimed by the exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportJob {
    pub image_id: String,
    pub task_id: String,
    pub owner: String,
    pub blob_key: String,
    pub content_type: String,
    /// `{task_id}-{index}.{ext}`, placed under the destination's prefix.
    pub object_name: String,
    /// Attempts made before this one.
    pub attempts: i64,
}

/// An image's export, as the task object shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportRecord {
    pub image_id: String,
    pub task_id: String,
    /// `pending`, `exported` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub object_name: String,
    pub bucket: Option<String>,
    pub object_key: Option<String>,
    pub error: Option<String>,
    pub exported_at_ms: Option<i64>,
}

/// What happens to an export after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum ExportOutcome {
    /// Copied: to this bucket, under this full object key.
    Exported {
        bucket: String,
        object_key: String,
    },
    RetryAt {
        at_ms: i64,
        error: String,
    },
    GiveUp {
        error: String,
    },
}

/// A change another process made to a store several processes share, for the wake-ups a
/// process would have made itself had the change been its own (see `Store::events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A task was queued (new work for the workers).
    Queued,
    /// A task changed status (its sync waiters and event streams re-read it).
    TaskChanged(String),
    /// The owner asked to cancel a running task (its worker, wherever it runs, stops it).
    CancelRequested(String),
    /// A webhook was written to the outbox.
    WebhookDue,
    /// An export was owed.
    ExportDue,
    /// Events may have been missed (the listening connection was lost and is back): wake
    /// everything once.
    Resync,
}

/// One lane of the queue as `/metrics` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueStat {
    pub lane: i64,
    pub status: String,
    pub count: i64,
    pub oldest_created_ms: i64,
}

/// Queue positions are exact below this; a position of this value means "this many or more".
pub const QUEUE_POSITION_CAP: i64 = 1000;

/// How long an Idempotency-Key is remembered.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

use crate::domain::durability::Durability;

#[async_trait]
pub trait Store: Send + Sync {
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
    /// Moves committed work from the log into the database proper, durably (blocking: the
    /// flush loop calls it from its own thread). Stores with nothing of the kind do nothing.
    fn checkpoint(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Changes made by other processes sharing this store, as they commit; `None` when no
    /// other process can change it (SQLite: one process). Best effort: a missed event is
    /// covered by the readers' periodic re-reads.
    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<StoreEvent>> {
        None
    }

    /// Whether several processes may use this store at once (replicas): limits meant for the
    /// cluster are then counted in it.
    fn is_shared(&self) -> bool {
        false
    }

    /// Creates a key. `key_hash` must be unique.
    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError>;
    /// All keys, newest first, revoked ones included.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Revokes a key; `false` when no such key. Idempotent.
    async fn revoke_key(&self, id: &str, now: i64) -> Result<bool, StoreError>;
    /// The key whose secret hashes to `key_hash`, revoked or not.
    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// A key by id, revoked or not.
    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError>;
    /// Replaces a key's policy; `None` for an unknown key.
    async fn set_key_policy(&self, id: &str, policy: &KeyPolicy) -> Result<Option<KeyRecord>, StoreError>;
    /// Sets (or with `None` removes) a key's export destination; `None` for an unknown key.
    async fn set_key_export(
        &self,
        id: &str,
        export: Option<&ExportDestination>,
    ) -> Result<Option<KeyRecord>, StoreError>;
    /// Takes one request from `bucket`'s rate of `per_minute` (bursts of as many: see
    /// `domain::rate`), counted for every process sharing this store: `Ok(None)` when let
    /// through, `Ok(Some(wait))` when over the rate (nothing is taken then).
    async fn take_rate(
        &self,
        bucket: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<Option<std::time::Duration>, StoreError>;

    /// Takes one of `max` slots of `scope` (an upstream channel's concurrency, for every
    /// process sharing this store) for `holder` until `until_ms`: the slot's number, or `None`
    /// when all are held. A slot whose holder let its lease run out is free again.
    async fn take_slot(
        &self,
        scope: &str,
        max: u32,
        holder: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<u32>, StoreError>;
    /// Extends a held slot's lease; `false` when `holder` no longer holds it.
    async fn renew_slot(&self, scope: &str, slot: u32, holder: &str, until_ms: i64) -> Result<bool, StoreError>;
    /// Frees a slot `holder` holds (nothing when it does not).
    async fn release_slot(&self, scope: &str, slot: u32, holder: &str) -> Result<(), StoreError>;

    /// Usage rows from `since_day` (inclusive), for one key or (`None`) all keys.
    async fn usage(&self, owner: Option<&str>, since_day: &str) -> Result<Vec<UsageRow>, StoreError>;

    /// Writes a queued task, atomically with its Idempotency-Key check (two concurrent requests
    /// with the same key create one task) and its reservation against the key's limits (checked
    /// in the same transaction). With `claimed`, the task is written running, held by that
    /// worker, as `claim_task` would leave it. A task's end settles the reservation: the cost of the images
    /// delivered is charged, the rest is given back.
    async fn create_task(&self, task: NewTask) -> Result<Created, StoreError>;
    /// The owner's task made with this Idempotency-Key within the window (before `now_ms`),
    /// with the hash of the body that made it: a retry is answered before any limit is checked.
    /// `create_task` checks again atomically; this read only spares a retry the limits.
    async fn find_idempotent(
        &self,
        owner: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<(TaskRecord, String)>, StoreError>;
    /// The owner's task; `None` for an unknown id or another owner's task.
    async fn get_task(&self, owner: &str, id: &str) -> Result<Option<TaskRecord>, StoreError>;
    /// The owner's tasks, newest first, with ids below `before` (cursor), at most `limit`.
    async fn list_tasks(
        &self,
        owner: &str,
        status: Option<TaskStatus>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TaskRecord>, StoreError>;

    /// Position in the queue of a queued task: how many queued tasks were submitted before it,
    /// counted up to `QUEUE_POSITION_CAP` (a submit must not cost more as the queue grows).
    async fn queue_position(&self, task: &TaskRecord) -> Result<i64, StoreError>;

    /// Claims a task for `worker` until `lease_until_ms` and counts one attempt. `worker` is the
    /// claim's fencing token (one per claim, never reused): every later write about the task
    /// (renewal, end, release) must carry it, and fails once another claim holds the task. Running tasks
    /// whose lease expired come first; then queued tasks, round-robin across owners (the owner
    /// whose last claim is oldest), oldest first within an owner. Atomic: one worker per task.
    async fn claim_task(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        self.claim_task_in(worker, now_ms, lease_until_ms, true).await
    }
    /// `claim_task`, taking batch lines (lane 1) only when `batch_lines` (a worker pool whose
    /// share of slots for batch lines is full takes realtime work only).
    async fn claim_task_in(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        batch_lines: bool,
    ) -> Result<Option<TaskRecord>, StoreError>;
    /// Extends the lease and reports whether a cancel was requested.
    async fn renew_lease(&self, task_id: &str, worker: &str, lease_until_ms: i64) -> Result<Lease, StoreError>;
    /// Ends a task `worker` holds as completed, writing its images, its webhook (from
    /// `webhook`) and, when its key has an export destination, one owed export per image, in
    /// the same transaction. `None` (nothing written) when the lease was lost.
    /// `tries` (upstream calls made by this run) replaces this run's count in `attempts`.
    #[allow(clippy::too_many_arguments)]
    async fn complete_task(
        &self,
        task_id: &str,
        worker: &str,
        result: &Value,
        images: &[ImageRecord],
        tries: u32,
        now_ms: i64,
        webhook: WebhookFor,
    ) -> Result<Option<Ended>, StoreError>;
    /// Ends a task `worker` holds as failed, with its webhook. `None` when the lease was lost.
    async fn fail_task(
        &self,
        task_id: &str,
        worker: &str,
        error: &Value,
        tries: u32,
        now_ms: i64,
        webhook: WebhookFor,
    ) -> Result<Option<Ended>, StoreError>;
    /// Ends a running task `worker` holds as cancelled (after a cancel request), with its
    /// webhook. `None` when the lease was lost.
    async fn finish_cancelled(
        &self,
        task_id: &str,
        worker: &str,
        now_ms: i64,
        webhook: WebhookFor,
    ) -> Result<Option<Ended>, StoreError>;
    /// Cancels the owner's task: a queued task at once (with its webhook, atomically); a
    /// running one is flagged for its worker to abort.
    async fn request_cancel(
        &self,
        owner: &str,
        id: &str,
        now_ms: i64,
        webhook: WebhookFor,
    ) -> Result<CancelOutcome, StoreError>;
    /// Puts a task `worker` holds back in the queue (graceful shutdown); the claim's attempt is
    /// given back (a drain is not a failure). `false` when `worker` no longer holds it.
    async fn release_task(&self, task_id: &str, worker: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// Count of tasks that are queued or running (for start-up logging and `/readyz`).
    async fn count_unfinished(&self) -> Result<i64, StoreError>;
    /// The queue for `/metrics`: tasks queued and running, by lane, and when the oldest queued
    /// task of each lane was created (ms).
    async fn queue_stats(&self) -> Result<Vec<QueueStat>, StoreError>;

    /// Records an uploaded file (its bytes are stored already).
    async fn create_file(&self, file: &FileRecord) -> Result<(), StoreError>;
    /// The owner's file, or `None` (also for another owner's).
    async fn get_file(&self, owner: &str, id: &str) -> Result<Option<FileRecord>, StoreError>;
    /// The owner's files, newest first, after the cursor `after` (a file id), optionally of one
    /// purpose.
    async fn list_files(
        &self,
        owner: &str,
        purpose: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FileRecord>, StoreError>;
    /// Deletes the owner's file's record; returns it (its blob is the caller's to delete).
    async fn delete_file(&self, owner: &str, id: &str) -> Result<Option<FileRecord>, StoreError>;
    /// Up to `limit` files past their expiry (the sweep deletes their blobs, then them).
    async fn expired_files(&self, now_secs: i64, limit: u32) -> Result<Vec<FileRecord>, StoreError>;

    /// Records a new batch (status `validating`), due to be driven at once.
    async fn create_batch(&self, batch: &BatchRecord) -> Result<(), StoreError>;
    /// The owner's batch, or `None` (also for another owner's).
    async fn get_batch(&self, owner: &str, id: &str) -> Result<Option<BatchRecord>, StoreError>;
    /// The owner's batches, newest first, after the cursor `after` (a batch id).
    async fn list_batches(&self, owner: &str, after: Option<&str>, limit: u32) -> Result<Vec<BatchRecord>, StoreError>;
    /// Asks to cancel the owner's batch: one that can still be cancelled becomes `cancelling`
    /// (due at once); returns the batch as it now stands, `None` when unknown.
    async fn cancel_batch(&self, owner: &str, id: &str, now_secs: i64) -> Result<Option<BatchRecord>, StoreError>;
    /// Claims the batch most overdue for a look, for `worker` until `lease_until_ms`: one that
    /// has not ended, is due, and whose lease (if any) has run out. Atomic: one driver per batch.
    async fn claim_batch(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<BatchRecord>, StoreError>;
    /// Extends a held batch lease; `false` when `worker` no longer holds it.
    async fn renew_batch(&self, id: &str, worker: &str, lease_until_ms: i64) -> Result<bool, StoreError>;
    /// Writes what the driver changed (status, counts, cost, files, errors; timestamps only
    /// where not yet set), releases the lease and makes it due again at `next_check_at_ms`, with
    /// `webhook` written to the outbox in the same transaction. A cancel asked meanwhile wins
    /// over a non-final status. `false` (nothing written) when `worker` lost the lease.
    async fn save_batch(
        &self,
        batch: &BatchRecord,
        worker: &str,
        next_check_at_ms: i64,
        webhook: Option<&NewWebhook>,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Records a line of a batch: the task it became, or its error. Idempotent (a line already
    /// recorded is left as it is), so a driver that restarts may record lines again.
    async fn add_batch_line(
        &self,
        batch_id: &str,
        line: i64,
        custom_id: &str,
        task_id: Option<&str>,
        error: Option<&Value>,
    ) -> Result<(), StoreError>;
    /// How the batch's lines stand.
    async fn batch_progress(&self, batch_id: &str) -> Result<BatchProgress, StoreError>;
    /// Up to `limit` lines after line `after`, in order, with their tasks.
    async fn batch_lines(&self, batch_id: &str, after: i64, limit: u32) -> Result<Vec<BatchLineRecord>, StoreError>;
    /// Up to `limit` of the batch's tasks still queued or running and not yet asked to cancel:
    /// `(owner, task id)`.
    async fn open_batch_tasks(&self, batch_id: &str, limit: u32) -> Result<Vec<(String, String)>, StoreError>;

    /// Writes an upstream job and, in the same transaction, takes up to `limit` of its batch's
    /// lines (or, for a job with no batch, flex tasks) of model `model` waiting for one (lane
    /// 2, queued): they become running, held by the job (`job:{id}` as their claim, until
    /// `lease_until_ms`). Nothing is written, and nothing returned, when no line waits.
    async fn create_job(
        &self,
        job: &UpstreamJob,
        model: &str,
        limit: u32,
        lease_until_ms: i64,
    ) -> Result<Vec<TaskRecord>, StoreError>;
    /// Claims the job most overdue for a look (not done, due, lease free) for `worker`.
    async fn claim_job(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<UpstreamJob>, StoreError>;
    /// Extends a held job lease; `false` when `worker` no longer holds it.
    async fn renew_job(&self, id: &str, worker: &str, lease_until_ms: i64) -> Result<bool, StoreError>;
    /// Writes the job's step, channel, files, name and error; releases the lease; due again at
    /// `next_check_at_ms`. `false` when `worker` lost the lease.
    async fn save_job(&self, job: &UpstreamJob, worker: &str, next_check_at_ms: i64) -> Result<bool, StoreError>;
    /// Gives lines a job took back to waiting for a job (queued in lane 2, their claim's
    /// attempt returned), as when its input file would grow past its size limit.
    async fn release_job_tasks(&self, job_id: &str, task_ids: &[String]) -> Result<(), StoreError>;
    /// The tasks a job holds, oldest first.
    async fn job_tasks(&self, job_id: &str) -> Result<Vec<TaskRecord>, StoreError>;
    /// The models of a batch's lines still waiting for an upstream job.
    async fn waiting_models(&self, batch_id: &str) -> Result<Vec<String>, StoreError>;
    /// Flex tasks waiting for an upstream job, by model: `(model, count, oldest created_at ms)`.
    async fn flex_waiting(&self) -> Result<Vec<(String, i64, i64)>, StoreError>;
    /// Moves up to `limit` flex tasks that can no longer wait (their deadline, less
    /// `margin_secs`, is at or before `now_secs`) to the realtime queue, taking them from any
    /// job that holds them (that job's result for them is then dropped); returns them.
    async fn flex_fallback(&self, now_secs: i64, margin_secs: i64, limit: u32) -> Result<Vec<TaskRecord>, StoreError>;

    /// The owner's task's inputs, in order; empty for an unknown task or another owner's.
    async fn task_inputs(&self, owner: &str, task_id: &str) -> Result<Vec<InputRecord>, StoreError>;
    /// Up to `limit` inputs past their expiry and not yet swept, each with whether another
    /// input that is not past its expiry still wants its blob (then the blob stays).
    async fn expired_inputs(&self, now_secs: i64, limit: u32) -> Result<Vec<(InputRecord, bool)>, StoreError>;
    /// Which of `blob_keys` some unswept input still wants: the orphan sweep deletes stored
    /// input objects of any other key.
    async fn live_input_blobs(&self, blob_keys: &[String]) -> Result<std::collections::HashSet<String>, StoreError>;
    /// Marks an input swept (its row stays for the task's record).
    async fn mark_input_swept(&self, input_id: &str, now_ms: i64) -> Result<(), StoreError>;

    /// An image by id. Images are addressed by unguessable ids, so this read takes no owner.
    async fn get_image(&self, id: &str) -> Result<Option<ImageRecord>, StoreError>;

    /// Records a stored variant of an image (idempotent).
    async fn add_variant(&self, image_id: &str, blob_key: &str, bytes: i64, now_ms: i64) -> Result<(), StoreError>;
    /// Which of `ids` are images whose blobs are still wanted (recorded and not swept): the
    /// orphan sweep deletes stored objects of any other id.
    async fn live_images(&self, ids: &[String]) -> Result<std::collections::HashSet<String>, StoreError>;
    /// The image's stored variants: `(blob key, bytes)`.
    async fn variants(&self, image_id: &str) -> Result<Vec<(String, i64)>, StoreError>;
    /// Up to `limit` images past their expiry and not yet swept, with their variants' blob keys.
    async fn expired_images(&self, now_secs: i64, limit: u32) -> Result<Vec<(ImageRecord, Vec<String>)>, StoreError>;
    /// Marks an image swept (its blobs are gone; its row stays for the task's record).
    async fn mark_swept(&self, image_id: &str, now_ms: i64) -> Result<(), StoreError>;

    /// The key's webhook signing secret, or `None` for an unknown key.
    async fn webhook_secret(&self, owner: &str) -> Result<Option<String>, StoreError>;
    /// Replaces the key's webhook signing secret.
    async fn set_webhook_secret(&self, owner: &str, secret: &str) -> Result<bool, StoreError>;
    /// Writes a webhook to the outbox outside any task change (e.g. `task.started`).
    async fn enqueue_webhook(&self, task: &TaskRecord, msg: &NewWebhook, now_ms: i64) -> Result<(), StoreError>;
    /// Claims up to `limit` due messages for delivery until `lease_until_ms`.
    async fn claim_webhooks(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<WebhookMessage>, StoreError>;
    /// Records an attempt and what comes next, atomically.
    async fn record_attempt(&self, attempt: &DeliveryAttempt, outcome: AttemptOutcome) -> Result<(), StoreError>;
    /// The owner's task's delivery attempts, oldest first; `None` for an unknown task.
    async fn list_attempts(&self, owner: &str, task_id: &str) -> Result<Option<Vec<DeliveryAttempt>>, StoreError>;
    /// When the next pending message can be claimed (its due time, or the end of its lease while
    /// it is being delivered), if any: the delivery loop sleeps until then.
    async fn next_webhook_due(&self) -> Result<Option<i64>, StoreError>;

    /// Claims up to `limit` due exports until `lease_until_ms`.
    async fn claim_exports(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<ExportJob>, StoreError>;
    /// Records an export attempt's outcome (counting the attempt) and releases its lease.
    async fn record_export(&self, image_id: &str, outcome: &ExportOutcome, now_ms: i64) -> Result<(), StoreError>;
    /// When the next pending export can be claimed (its due time, or the end of its lease while
    /// it is being copied), if any.
    async fn next_export_due(&self) -> Result<Option<i64>, StoreError>;
    /// The exports of the owner's tasks `task_ids`, by task then image order.
    async fn task_exports(&self, owner: &str, task_ids: &[String]) -> Result<Vec<ExportRecord>, StoreError>;
}

/// How to reach the database: its URL and, for PostgreSQL, the pool's settings.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    /// Commits survive what this says (see `crate::domain::durability`).
    pub durability: Durability,
    /// PostgreSQL: connections per replica.
    pub pool_size: usize,
    /// PostgreSQL: a statement running longer is cancelled by the server.
    pub statement_timeout: std::time::Duration,
}

impl Options {
    /// A URL with the default settings (tests, one-off CLI commands).
    pub fn url(url: &str, durability: Durability) -> Options {
        Options {
            url: url.to_string(),
            durability,
            pool_size: 16,
            statement_timeout: std::time::Duration::from_secs(30),
        }
    }
}

/// Which backend a database URL names.
pub fn backend(url: &str) -> Option<&'static str> {
    if url.starts_with("sqlite:") {
        Some("sqlite")
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some("postgres")
    } else {
        None
    }
}

/// Opens the store a database URL names and runs its migrations (see `open_with`).
pub async fn open(url: &str, durability: Durability) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    open_with(&Options::url(url, durability)).await
}

/// Opens the store the options name and runs its migrations (on PostgreSQL under a lock, so
/// that replicas starting together migrate once; a schema newer than this build is refused).
pub async fn open_with(options: &Options) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match backend(&options.url) {
        Some("sqlite") => Ok(std::sync::Arc::new(sqlite::SqliteStore::open(&options.url, options.durability).await?)),
        Some("postgres") => Ok(std::sync::Arc::new(postgres::PgStore::open(options).await?)),
        _ => Err(StoreError::UnsupportedUrl(options.url.to_string())),
    }
}
