//! SEAM Store: the durable record of keys, tasks (which are also the work queue) and images.
//!
//! Everything a request promises lives here before any upstream call, so a dropped connection
//! or a killed process never loses a paid image. Reads of customer data take the owner, so a
//! handler cannot forget tenant isolation. Backends: SQLite (embedded default); PostgreSQL
//! arrives behind the same trait, with the same conformance tests.

pub mod sqlite;

use async_trait::async_trait;
use serde_json::Value;

use crate::domain::task::{TaskMode, TaskStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("migration {version} failed")]
    Migration {
        version: i64,
        #[source]
        source: sqlx::Error,
    },
    #[error("stored {what} is corrupt")]
    Corrupt {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("unsupported database URL {0:?}: use sqlite://PATH")]
    UnsupportedUrl(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyRecord {
    pub id: String,
    pub name: String,
    /// The first characters of the key, for people to recognise it (`igk_AbC1…`).
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub name: String,
    pub key_hash: String,
    pub prefix: String,
    pub created_at: i64,
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
    pub created_at_ms: i64,
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
}

/// What `create_task` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// A new task was written (queued).
    New(TaskRecord),
    /// The Idempotency-Key matched an earlier task with the same body: that task.
    Existing(TaskRecord),
    /// The Idempotency-Key matched an earlier task with a different body.
    Conflict,
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
}

/// How long an Idempotency-Key is remembered.
pub const IDEMPOTENCY_WINDOW_MS: i64 = 24 * 3600 * 1000;

#[async_trait]
pub trait Store: Send + Sync {
    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates a key. `key_hash` must be unique.
    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError>;
    /// All keys, newest first, revoked ones included.
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Revokes a key; `false` when no such key. Idempotent.
    async fn revoke_key(&self, id: &str, now: i64) -> Result<bool, StoreError>;
    /// The key whose secret hashes to `key_hash`, revoked or not.
    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// Writes a queued task, atomically with its Idempotency-Key check: two concurrent requests
    /// with the same key create one task.
    async fn create_task(&self, task: NewTask) -> Result<Created, StoreError>;
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

    /// Claims the oldest claimable task (queued, or running with an expired lease) for `worker`
    /// until `lease_until_ms`; counts one attempt. Atomic: a task is claimed by one worker.
    async fn claim_task(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<TaskRecord>, StoreError>;
    /// Extends the lease; `false` when `worker` no longer holds it (the task was re-claimed or ended).
    async fn renew_lease(
        &self,
        task_id: &str,
        worker: &str,
        lease_until_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Ends a task `worker` holds as completed, writing its images in the same transaction.
    /// `false` (and nothing written) when the worker lost the lease.
    async fn complete_task(
        &self,
        task_id: &str,
        worker: &str,
        result: &Value,
        images: &[ImageRecord],
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Ends a task `worker` holds as failed. `false` when the worker lost the lease.
    async fn fail_task(
        &self,
        task_id: &str,
        worker: &str,
        error: &Value,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Puts a task `worker` holds back in the queue (graceful shutdown). The attempt is not refunded.
    async fn release_task(
        &self,
        task_id: &str,
        worker: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Count of tasks that are queued or running (for start-up logging and `/readyz`).
    async fn count_unfinished(&self) -> Result<i64, StoreError>;

    /// An image by id. Images are addressed by unguessable ids, so this read takes no owner.
    async fn get_image(&self, id: &str) -> Result<Option<ImageRecord>, StoreError>;
}

/// Opens the store a database URL names and runs its migrations.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
