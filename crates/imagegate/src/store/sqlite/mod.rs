//! SQLite backend of the Store seam (the embedded default): WAL mode, one writer connection
//! (SQLite has one writer anyway) and a few readers, used in place (see `db.rs`).

mod batches;
mod db;
mod exports;
mod files;
mod group;
mod images;
mod inputs;
mod jobs;
mod keys;
mod migrate;
mod quota;
mod tasks;
mod webhooks;

use async_trait::async_trait;
use db::Db;
use group::Batcher;
use serde_json::Value;
use std::sync::Arc;

use crate::domain::durability::Durability;
use crate::domain::export::ExportDestination;
use crate::domain::policy::KeyPolicy;

use super::{
    AttemptOutcome, BatchLineRecord, BatchProgress, BatchRecord, CancelOutcome, Created, DeliveryAttempt, Ended,
    ExportJob, ExportOutcome, ExportRecord, FileRecord, ImageRecord, InputRecord, KeyRecord, Lease, NewKey, NewTask,
    NewWebhook, Store, StoreError, TaskRecord, UpstreamJob, UsageRow, WebhookFor, WebhookMessage,
};
use crate::domain::task::TaskStatus;

pub struct SqliteStore {
    db: Arc<Db>,
    /// Request rates and channel slots, in memory (see `quota.rs`).
    quota: quota::Quota,
    /// Submits, claims and completions: the hot writes, group-committed together.
    writes: Arc<Batcher<tasks::Write, tasks::Written, tasks::BatchState>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH` or `sqlite::memory:`)
    /// and runs pending migrations.
    pub async fn open(url: &str, durability: Durability) -> Result<SqliteStore, StoreError> {
        let path = match url {
            "sqlite::memory:" | "sqlite://:memory:" => None,
            _ => Some(
                url.strip_prefix("sqlite://")
                    .or_else(|| url.strip_prefix("sqlite:"))
                    .map(std::path::PathBuf::from)
                    .ok_or_else(|| StoreError::UnsupportedUrl(url.to_string()))?,
            ),
        };
        let db = Db::open(path.as_deref(), durability)?;
        db.with_writer(migrate::run)?;
        Ok(SqliteStore { db: Arc::new(db), quota: Default::default(), writes: Batcher::new(tasks::apply) })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.db.read(|c| Ok(c.query_row("SELECT 1", [], |_| Ok(()))?))
    }

    fn checkpoint(&self) -> Result<(), StoreError> {
        self.db.checkpoint()
    }

    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError> {
        self.db.write(|c| keys::create(c, key))
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.db.read(keys::list)
    }

    async fn revoke_key(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        self.db.write(|c| keys::revoke(c, id, now))
    }

    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.db.read(|c| keys::by_hash(c, key_hash))
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.db.read(|c| keys::get(c, id))
    }

    async fn set_key_policy(&self, id: &str, policy: &KeyPolicy) -> Result<Option<KeyRecord>, StoreError> {
        self.db.write(|c| keys::set_policy(c, id, policy))
    }

    async fn set_key_export(
        &self,
        id: &str,
        export: Option<&ExportDestination>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.db.write(|c| keys::set_export(c, id, export))
    }

    async fn take_rate(
        &self,
        bucket: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<Option<std::time::Duration>, StoreError> {
        self.quota.take_rate(bucket, per_minute, now_ms)
    }

    async fn take_slot(
        &self,
        scope: &str,
        max: u32,
        holder: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        self.quota.take_slot(scope, max, holder, until_ms, now_ms)
    }

    async fn renew_slot(&self, scope: &str, slot: u32, holder: &str, until_ms: i64) -> Result<bool, StoreError> {
        self.quota.renew_slot(scope, slot, holder, until_ms)
    }

    async fn release_slot(&self, scope: &str, slot: u32, holder: &str) -> Result<(), StoreError> {
        self.quota.release_slot(scope, slot, holder)
    }

    async fn usage(&self, owner: Option<&str>, since_day: &str) -> Result<Vec<UsageRow>, StoreError> {
        self.db.read(|c| keys::usage(c, owner, since_day))
    }

    async fn create_task(&self, task: NewTask) -> Result<Created, StoreError> {
        match self.writes.submit(&self.db, tasks::Write::Create(Box::new(task))).await? {
            tasks::Written::Created(c) => Ok(c),
            _ => Err(StoreError::Unavailable("a submit was answered as another write".into())),
        }
    }

    async fn find_idempotent(
        &self,
        owner: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<(TaskRecord, String)>, StoreError> {
        self.db.read(|c| tasks::find_idempotent(c, owner, key, now_ms))
    }

    async fn get_task(&self, owner: &str, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.db.read(|c| tasks::get(c, owner, id))
    }

    async fn list_tasks(
        &self,
        owner: &str,
        status: Option<TaskStatus>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.db.read(|c| tasks::list(c, owner, status, before, limit))
    }

    async fn queue_position(&self, task: &TaskRecord) -> Result<i64, StoreError> {
        self.db.read(|c| tasks::queue_position(c, task))
    }

    async fn claim_task_in(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        batch_lines: bool,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let job = tasks::Write::Claim { worker: worker.to_string(), now_ms, lease_until_ms, batch_lines };
        match self.writes.submit(&self.db, job).await? {
            tasks::Written::Claimed(t) => Ok(t),
            _ => Err(StoreError::Unavailable("a claim was answered as another write".into())),
        }
    }

    async fn renew_lease(&self, task_id: &str, worker: &str, lease_until_ms: i64) -> Result<Lease, StoreError> {
        self.db.write(|c| tasks::renew(c, task_id, worker, lease_until_ms))
    }

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
    ) -> Result<Option<Ended>, StoreError> {
        let job = tasks::Completion {
            task_id: task_id.to_string(),
            worker: worker.to_string(),
            result: result.clone(),
            images: images.to_vec(),
            tries,
            now_ms,
            webhook,
        };
        match self.writes.submit(&self.db, tasks::Write::Complete(job)).await? {
            tasks::Written::Completed(done) => Ok(done),
            _ => Err(StoreError::Unavailable("a completion was answered as another write".into())),
        }
    }

    async fn fail_task(
        &self,
        task_id: &str,
        worker: &str,
        error: &Value,
        tries: u32,
        now_ms: i64,
        webhook: WebhookFor,
    ) -> Result<Option<Ended>, StoreError> {
        self.db.write(|c| tasks::end(c, task_id, worker, tasks::End::Failed(error, tries), now_ms, webhook))
    }

    async fn finish_cancelled(
        &self,
        task_id: &str,
        worker: &str,
        now_ms: i64,
        webhook: WebhookFor,
    ) -> Result<Option<Ended>, StoreError> {
        self.db.write(|c| tasks::end(c, task_id, worker, tasks::End::Cancelled, now_ms, webhook))
    }

    async fn request_cancel(
        &self,
        owner: &str,
        id: &str,
        now_ms: i64,
        webhook: WebhookFor,
    ) -> Result<CancelOutcome, StoreError> {
        self.db.write(|c| tasks::request_cancel(c, owner, id, now_ms, webhook))
    }

    async fn release_task(&self, task_id: &str, worker: &str, now_ms: i64) -> Result<bool, StoreError> {
        self.db.write(|c| tasks::release(c, task_id, worker, now_ms))
    }

    async fn count_unfinished(&self) -> Result<i64, StoreError> {
        self.db.read(tasks::count_unfinished)
    }

    async fn queue_stats(&self) -> Result<Vec<super::QueueStat>, StoreError> {
        self.db.read(tasks::queue_stats)
    }

    async fn create_file(&self, file: &FileRecord) -> Result<(), StoreError> {
        self.db.write(|c| files::insert(c, file))
    }

    async fn get_file(&self, owner: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
        self.db.read(|c| files::get(c, owner, id))
    }

    async fn list_files(
        &self,
        owner: &str,
        purpose: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FileRecord>, StoreError> {
        self.db.read(|c| files::list(c, owner, purpose, after, limit))
    }

    async fn delete_file(&self, owner: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
        self.db.write(|c| files::delete(c, owner, id))
    }

    async fn expired_files(&self, now_secs: i64, limit: u32) -> Result<Vec<FileRecord>, StoreError> {
        self.db.read(|c| files::expired(c, now_secs, limit))
    }

    async fn create_batch(&self, batch: &BatchRecord) -> Result<(), StoreError> {
        self.db.write(|c| batches::insert(c, batch))
    }

    async fn get_batch(&self, owner: &str, id: &str) -> Result<Option<BatchRecord>, StoreError> {
        self.db.read(|c| batches::get(c, owner, id))
    }

    async fn list_batches(&self, owner: &str, after: Option<&str>, limit: u32) -> Result<Vec<BatchRecord>, StoreError> {
        self.db.read(|c| batches::list(c, owner, after, limit))
    }

    async fn cancel_batch(&self, owner: &str, id: &str, now_secs: i64) -> Result<Option<BatchRecord>, StoreError> {
        self.db.write(|c| batches::cancel(c, owner, id, now_secs))
    }

    async fn claim_batch(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<BatchRecord>, StoreError> {
        self.db.write(|c| batches::claim(c, worker, now_ms, lease_until_ms))
    }

    async fn renew_batch(&self, id: &str, worker: &str, lease_until_ms: i64) -> Result<bool, StoreError> {
        self.db.write(|c| batches::renew(c, id, worker, lease_until_ms))
    }

    async fn save_batch(
        &self,
        batch: &BatchRecord,
        worker: &str,
        next_check_at_ms: i64,
        webhook: Option<&NewWebhook>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.db.write(|c| batches::save(c, batch, worker, next_check_at_ms, webhook, now_ms))
    }

    async fn add_batch_line(
        &self,
        batch_id: &str,
        line: i64,
        custom_id: &str,
        task_id: Option<&str>,
        error: Option<&Value>,
    ) -> Result<(), StoreError> {
        self.db.write(|c| batches::add_line(c, batch_id, line, custom_id, task_id, error))
    }

    async fn batch_progress(&self, batch_id: &str) -> Result<BatchProgress, StoreError> {
        self.db.read(|c| batches::progress(c, batch_id))
    }

    async fn batch_lines(&self, batch_id: &str, after: i64, limit: u32) -> Result<Vec<BatchLineRecord>, StoreError> {
        self.db.read(|c| batches::lines(c, batch_id, after, limit))
    }

    async fn open_batch_tasks(&self, batch_id: &str, limit: u32) -> Result<Vec<(String, String)>, StoreError> {
        self.db.read(|c| batches::open_tasks(c, batch_id, limit))
    }

    async fn create_job(
        &self,
        job: &UpstreamJob,
        model: &str,
        limit: u32,
        lease_until_ms: i64,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.db.write(|c| jobs::create(c, job, model, limit, lease_until_ms))
    }

    async fn claim_job(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<UpstreamJob>, StoreError> {
        self.db.write(|c| jobs::claim(c, worker, now_ms, lease_until_ms))
    }

    async fn renew_job(&self, id: &str, worker: &str, lease_until_ms: i64) -> Result<bool, StoreError> {
        self.db.write(|c| jobs::renew(c, id, worker, lease_until_ms))
    }

    async fn save_job(&self, job: &UpstreamJob, worker: &str, next_check_at_ms: i64) -> Result<bool, StoreError> {
        self.db.write(|c| jobs::save(c, job, worker, next_check_at_ms))
    }

    async fn release_job_tasks(&self, job_id: &str, task_ids: &[String]) -> Result<(), StoreError> {
        self.db.write(|c| jobs::release(c, job_id, task_ids))
    }

    async fn job_tasks(&self, job_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        self.db.read(|c| jobs::tasks(c, job_id))
    }

    async fn waiting_models(&self, batch_id: &str) -> Result<Vec<String>, StoreError> {
        self.db.read(|c| jobs::waiting_models(c, batch_id))
    }

    async fn flex_waiting(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        self.db.read(jobs::flex_waiting)
    }

    async fn flex_fallback(&self, now_secs: i64, margin_secs: i64, limit: u32) -> Result<Vec<TaskRecord>, StoreError> {
        self.db.write(|c| jobs::flex_fallback(c, now_secs, margin_secs, limit))
    }

    async fn task_inputs(&self, owner: &str, task_id: &str) -> Result<Vec<InputRecord>, StoreError> {
        self.db.read(|c| inputs::of_task(c, owner, task_id))
    }

    async fn expired_inputs(&self, now_secs: i64, limit: u32) -> Result<Vec<(InputRecord, bool)>, StoreError> {
        self.db.read(|c| inputs::expired(c, now_secs, limit))
    }

    async fn live_input_blobs(&self, blob_keys: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
        self.db.read(|c| inputs::live_blobs(c, blob_keys))
    }

    async fn mark_input_swept(&self, input_id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.db.write(|c| inputs::mark_swept(c, input_id, now_ms))
    }

    async fn get_image(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        self.db.read(|c| images::get(c, id))
    }

    async fn add_variant(&self, image_id: &str, blob_key: &str, bytes: i64, now_ms: i64) -> Result<(), StoreError> {
        self.db.write(|c| images::add_variant(c, image_id, blob_key, bytes, now_ms))
    }

    async fn live_images(&self, ids: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
        self.db.read(|c| images::live(c, ids))
    }

    async fn variants(&self, image_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        self.db.read(|c| images::variants(c, image_id))
    }

    async fn expired_images(&self, now_secs: i64, limit: u32) -> Result<Vec<(ImageRecord, Vec<String>)>, StoreError> {
        self.db.read(|c| images::expired(c, now_secs, limit))
    }

    async fn mark_swept(&self, image_id: &str, now_ms: i64) -> Result<(), StoreError> {
        self.db.write(|c| images::mark_swept(c, image_id, now_ms))
    }

    async fn webhook_secret(&self, owner: &str) -> Result<Option<String>, StoreError> {
        self.db.read(|c| keys::webhook_secret(c, owner))
    }

    async fn set_webhook_secret(&self, owner: &str, secret: &str) -> Result<bool, StoreError> {
        self.db.write(|c| keys::set_webhook_secret(c, owner, secret))
    }

    async fn enqueue_webhook(&self, task: &TaskRecord, msg: &NewWebhook, now_ms: i64) -> Result<(), StoreError> {
        self.db.write(|c| webhooks::insert_outbox(c, (&task.id, &task.owner), msg, now_ms))
    }

    async fn claim_webhooks(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<WebhookMessage>, StoreError> {
        self.db.write(|c| webhooks::claim(c, worker, now_ms, lease_until_ms, limit))
    }

    async fn record_attempt(&self, attempt: &DeliveryAttempt, outcome: AttemptOutcome) -> Result<(), StoreError> {
        self.db.write(|c| webhooks::record_attempt(c, attempt, outcome))
    }

    async fn list_attempts(&self, owner: &str, task_id: &str) -> Result<Option<Vec<DeliveryAttempt>>, StoreError> {
        self.db.read(|c| webhooks::list_attempts(c, owner, task_id))
    }

    async fn next_webhook_due(&self) -> Result<Option<i64>, StoreError> {
        self.db.read(webhooks::next_due)
    }

    async fn claim_exports(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<ExportJob>, StoreError> {
        self.db.write(|c| exports::claim(c, worker, now_ms, lease_until_ms, limit))
    }

    async fn record_export(&self, image_id: &str, outcome: &ExportOutcome, now_ms: i64) -> Result<(), StoreError> {
        self.db.write(|c| exports::record(c, image_id, outcome, now_ms))
    }

    async fn next_export_due(&self) -> Result<Option<i64>, StoreError> {
        self.db.read(exports::next_due)
    }

    async fn task_exports(&self, owner: &str, task_ids: &[String]) -> Result<Vec<ExportRecord>, StoreError> {
        self.db.read(|c| exports::for_tasks(c, owner, task_ids))
    }
}
