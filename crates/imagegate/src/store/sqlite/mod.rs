//! SQLite backend of the Store seam: WAL mode, one writer connection (SQLite has one writer
//! anyway; a single pooled writer avoids SQLITE_BUSY storms) and a pool of readers.

mod exports;
mod images;
mod keys;
mod migrate;
mod tasks;
mod webhooks;

use async_trait::async_trait;
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use std::str::FromStr;
use std::time::Duration;

use crate::domain::export::ExportDestination;
use crate::domain::policy::KeyPolicy;

use super::{
    AttemptOutcome, CancelOutcome, Created, DeliveryAttempt, ExportJob, ExportOutcome, ExportRecord, ImageRecord,
    KeyRecord, Lease, NewKey, NewTask, NewWebhook, Store, StoreError, TaskRecord, UsageRow, WebhookFor, WebhookMessage,
};
use crate::domain::task::TaskStatus;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH` or `sqlite::memory:`)
    /// and runs pending migrations.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory");
        if let Some(dir) = opts.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            let _ = std::fs::create_dir_all(dir);
        }
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.clone())
            .await?;
        migrate::run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(opts.read_only(true))
            .await?;
        Ok(SqliteStore { writer, reader })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError> {
        keys::create(&self.writer, key).await
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        keys::list(&self.reader).await
    }

    async fn revoke_key(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        keys::revoke(&self.writer, id, now).await
    }

    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        keys::by_hash(&self.reader, key_hash).await
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        keys::get(&self.reader, id).await
    }

    async fn set_key_policy(&self, id: &str, policy: &KeyPolicy) -> Result<Option<KeyRecord>, StoreError> {
        keys::set_policy(&self.writer, id, policy).await
    }

    async fn set_key_export(
        &self,
        id: &str,
        export: Option<&ExportDestination>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        keys::set_export(&self.writer, id, export).await
    }

    async fn usage(&self, owner: Option<&str>, since_day: &str) -> Result<Vec<UsageRow>, StoreError> {
        keys::usage(&self.reader, owner, since_day).await
    }

    async fn create_task(&self, task: NewTask) -> Result<Created, StoreError> {
        tasks::create(&self.writer, task).await
    }

    async fn get_task(&self, owner: &str, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        tasks::get(&self.reader, owner, id).await
    }

    async fn list_tasks(
        &self,
        owner: &str,
        status: Option<TaskStatus>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        tasks::list(&self.reader, owner, status, before, limit).await
    }

    async fn queue_position(&self, task: &TaskRecord) -> Result<i64, StoreError> {
        tasks::queue_position(&self.reader, task).await
    }

    async fn claim_task(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<TaskRecord>, StoreError> {
        tasks::claim(&self.writer, worker, now_ms, lease_until_ms).await
    }

    async fn renew_lease(&self, task_id: &str, worker: &str, lease_until_ms: i64) -> Result<Lease, StoreError> {
        tasks::renew(&self.writer, task_id, worker, lease_until_ms).await
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
        webhook: WebhookFor<'_>,
    ) -> Result<bool, StoreError> {
        tasks::complete(&self.writer, task_id, worker, result, images, tries, now_ms, webhook).await
    }

    async fn fail_task(
        &self,
        task_id: &str,
        worker: &str,
        error: &Value,
        tries: u32,
        now_ms: i64,
        webhook: WebhookFor<'_>,
    ) -> Result<bool, StoreError> {
        tasks::end(&self.writer, task_id, worker, tasks::End::Failed(error, tries), now_ms, webhook).await
    }

    async fn finish_cancelled(
        &self,
        task_id: &str,
        worker: &str,
        now_ms: i64,
        webhook: WebhookFor<'_>,
    ) -> Result<bool, StoreError> {
        tasks::end(&self.writer, task_id, worker, tasks::End::Cancelled, now_ms, webhook).await
    }

    async fn request_cancel(
        &self,
        owner: &str,
        id: &str,
        now_ms: i64,
        webhook: WebhookFor<'_>,
    ) -> Result<CancelOutcome, StoreError> {
        tasks::request_cancel(&self.writer, owner, id, now_ms, webhook).await
    }

    async fn release_task(&self, task_id: &str, worker: &str, now_ms: i64) -> Result<bool, StoreError> {
        tasks::release(&self.writer, task_id, worker, now_ms).await
    }

    async fn count_unfinished(&self) -> Result<i64, StoreError> {
        tasks::count_unfinished(&self.reader).await
    }

    async fn get_image(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        images::get(&self.reader, id).await
    }

    async fn add_variant(&self, image_id: &str, blob_key: &str, bytes: i64, now_ms: i64) -> Result<(), StoreError> {
        images::add_variant(&self.writer, image_id, blob_key, bytes, now_ms).await
    }

    async fn has_variant(&self, image_id: &str, blob_key: &str) -> Result<bool, StoreError> {
        images::has_variant(&self.reader, image_id, blob_key).await
    }

    async fn expired_images(&self, now_secs: i64, limit: u32) -> Result<Vec<(ImageRecord, Vec<String>)>, StoreError> {
        images::expired(&self.reader, now_secs, limit).await
    }

    async fn mark_swept(&self, image_id: &str, now_ms: i64) -> Result<(), StoreError> {
        images::mark_swept(&self.writer, image_id, now_ms).await
    }

    async fn webhook_secret(&self, owner: &str) -> Result<Option<String>, StoreError> {
        keys::webhook_secret(&self.reader, owner).await
    }

    async fn set_webhook_secret(&self, owner: &str, secret: &str) -> Result<bool, StoreError> {
        keys::set_webhook_secret(&self.writer, owner, secret).await
    }

    async fn enqueue_webhook(&self, task: &TaskRecord, msg: &NewWebhook, now_ms: i64) -> Result<(), StoreError> {
        webhooks::enqueue(&self.writer, task, msg, now_ms).await
    }

    async fn claim_webhooks(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<WebhookMessage>, StoreError> {
        webhooks::claim(&self.writer, worker, now_ms, lease_until_ms, limit).await
    }

    async fn record_attempt(&self, attempt: &DeliveryAttempt, outcome: AttemptOutcome) -> Result<(), StoreError> {
        webhooks::record_attempt(&self.writer, attempt, outcome).await
    }

    async fn list_attempts(&self, owner: &str, task_id: &str) -> Result<Option<Vec<DeliveryAttempt>>, StoreError> {
        webhooks::list_attempts(&self.reader, owner, task_id).await
    }

    async fn next_webhook_due(&self) -> Result<Option<i64>, StoreError> {
        webhooks::next_due(&self.reader).await
    }

    async fn claim_exports(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<ExportJob>, StoreError> {
        exports::claim(&self.writer, worker, now_ms, lease_until_ms, limit).await
    }

    async fn record_export(&self, image_id: &str, outcome: &ExportOutcome, now_ms: i64) -> Result<(), StoreError> {
        exports::record(&self.writer, image_id, outcome, now_ms).await
    }

    async fn next_export_due(&self) -> Result<Option<i64>, StoreError> {
        exports::next_due(&self.reader).await
    }

    async fn task_exports(&self, owner: &str, task_ids: &[String]) -> Result<Vec<ExportRecord>, StoreError> {
        exports::for_tasks(&self.reader, owner, task_ids).await
    }
}
