//! PostgreSQL backend of the Store seam (several replicas sharing one database): the same
//! tables and the same contract as SQLite (`store/sqlite/`, file for file), with the queue
//! shared through row locks (`FOR UPDATE SKIP LOCKED`) instead of one writer.
//!
//! Each operation is one transaction on a pooled connection (see `db.rs`); a transaction the
//! server aborted for a serialization failure or a deadlock runs again from the start.

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
mod notify;
mod quota;
mod tasks;
mod tls;
mod webhooks;

use async_trait::async_trait;
use db::{Db, retrying};
use notify::Notifier;
use serde_json::Value;
use std::sync::Arc;

use crate::domain::export::ExportDestination;
use crate::domain::policy::KeyPolicy;
use crate::domain::task::TaskStatus;

use super::{
    AttemptOutcome, BatchLineRecord, BatchProgress, BatchRecord, CancelOutcome, Created, DeliveryAttempt, Ended,
    ExportJob, ExportOutcome, ExportRecord, FileRecord, ImageRecord, InputRecord, KeyRecord, Lease, NewKey, NewTask,
    NewWebhook, Options, Store, StoreError, StoreEvent, TaskRecord, UpstreamJob, UsageRow, WebhookFor, WebhookMessage,
};

pub struct PgStore {
    db: Arc<Db>,
    /// Plain submits, group-committed (see `group.rs`).
    submits: Arc<group::Submits>,
    /// Tells the other replicas what committed here, and this one what they committed.
    notifier: Notifier,
}

/// Runs `$body` (which uses the transaction `$tx`) in a transaction on a pooled connection,
/// committed when it returns `Ok`, and again from the start when the server asks for it.
macro_rules! in_tx {
    ($db:expr, |$tx:ident| $body:expr) => {
        retrying(|| async {
            let mut conn = $db.conn().await?;
            let $tx = conn.transaction().await?;
            let out = $body;
            $tx.commit().await?;
            Ok(out)
        })
        .await
    };
}

/// Runs `$body` with `$c`, a pooled connection (one statement: no transaction needed).
macro_rules! on_conn {
    ($db:expr, |$c:ident| $body:expr) => {{
        let conn = $db.conn().await?;
        let $c = &conn;
        $body
    }};
}

impl PgStore {
    /// Connects to the database `options.url` names (`postgres://…`) and runs pending
    /// migrations under an advisory lock.
    pub async fn open(options: &Options) -> Result<PgStore, StoreError> {
        let db = Arc::new(Db::open(options)?);
        migrate::run(&db).await?;
        let notifier = Notifier::start(db.clone());
        Ok(PgStore { db, submits: Default::default(), notifier })
    }

    /// Announces what a task's end queued.
    fn ended(&self, ended: &Option<Ended>) {
        if let Some(e) = ended {
            let mut events = vec![StoreEvent::TaskChanged(e.task.id.clone())];
            if e.webhook_queued {
                events.push(StoreEvent::WebhookDue);
            }
            if e.exports_owed {
                events.push(StoreEvent::ExportDue);
            }
            self.notifier.announce(&events);
        }
    }
}

#[async_trait]
impl Store for PgStore {
    fn is_shared(&self) -> bool {
        true
    }

    fn events(&self) -> Option<tokio::sync::broadcast::Receiver<StoreEvent>> {
        Some(self.notifier.subscribe())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        on_conn!(self.db, |c| c.simple_query("SELECT 1").await.map(|_| ()).map_err(StoreError::from))
    }

    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError> {
        on_conn!(self.db, |c| keys::create(c, key).await)
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        on_conn!(self.db, |c| keys::list(c).await)
    }

    async fn revoke_key(&self, id: &str, now: i64) -> Result<bool, StoreError> {
        on_conn!(self.db, |c| keys::revoke(c, id, now).await)
    }

    async fn key_by_hash(&self, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        on_conn!(self.db, |c| keys::by_hash(c, key_hash).await)
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        on_conn!(self.db, |c| keys::get(c, id).await)
    }

    async fn set_key_policy(&self, id: &str, policy: &KeyPolicy) -> Result<Option<KeyRecord>, StoreError> {
        on_conn!(self.db, |c| keys::set_policy(c, id, policy).await)
    }

    async fn set_key_export(
        &self,
        id: &str,
        export: Option<&ExportDestination>,
    ) -> Result<Option<KeyRecord>, StoreError> {
        on_conn!(self.db, |c| keys::set_export(c, id, export).await)
    }

    async fn take_rate(
        &self,
        bucket: &str,
        per_minute: u32,
        now_ms: i64,
    ) -> Result<Option<std::time::Duration>, StoreError> {
        on_conn!(self.db, |c| quota::take_rate(c, bucket, per_minute, now_ms).await)
    }

    async fn take_slot(
        &self,
        scope: &str,
        max: u32,
        holder: &str,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<Option<u32>, StoreError> {
        on_conn!(self.db, |c| quota::take_slot(c, scope, max, holder, until_ms, now_ms).await)
    }

    async fn renew_slot(&self, scope: &str, slot: u32, holder: &str, until_ms: i64) -> Result<bool, StoreError> {
        on_conn!(self.db, |c| quota::renew_slot(c, scope, slot, holder, until_ms).await)
    }

    async fn release_slot(&self, scope: &str, slot: u32, holder: &str) -> Result<(), StoreError> {
        on_conn!(self.db, |c| quota::release_slot(c, scope, slot, holder).await)
    }

    async fn usage(&self, owner: Option<&str>, since_day: &str) -> Result<Vec<UsageRow>, StoreError> {
        on_conn!(self.db, |c| keys::usage(c, owner, since_day).await)
    }

    async fn create_task(&self, task: NewTask) -> Result<Created, StoreError> {
        if tasks::is_plain(&task) {
            let created = self.submits.submit(&self.db, task).await?;
            if let Created::New { task, .. } = &created
                && task.status == TaskStatus::Queued
            {
                self.notifier.announce(&[StoreEvent::Queued]);
            }
            return Ok(created);
        }
        // A submit that lost an Idempotency-Key race to a concurrent one runs again: it then
        // finds the other's task. Twice is enough (the winner has committed by then).
        for _ in 0..3 {
            if let Some(created) = in_tx!(self.db, |tx| tasks::create(&tx, &task).await?)? {
                if let Created::New { task, .. } = &created
                    && task.status == TaskStatus::Queued
                {
                    self.notifier.announce(&[StoreEvent::Queued]);
                }
                return Ok(created);
            }
        }
        Err(StoreError::Unavailable("a submit kept racing another with the same Idempotency-Key".into()))
    }

    async fn find_idempotent(
        &self,
        owner: &str,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<(TaskRecord, String)>, StoreError> {
        on_conn!(self.db, |c| tasks::find_idempotent(c, owner, key, now_ms).await)
    }

    async fn get_task(&self, owner: &str, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        on_conn!(self.db, |c| tasks::get(c, owner, id).await)
    }

    async fn list_tasks(
        &self,
        owner: &str,
        status: Option<TaskStatus>,
        before: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        on_conn!(self.db, |c| tasks::list(c, owner, status, before, limit).await)
    }

    async fn queue_position(&self, task: &TaskRecord) -> Result<i64, StoreError> {
        on_conn!(self.db, |c| tasks::queued_ahead_of(c, task.mode.lane(), task.created_at_ms, &task.id).await)
    }

    async fn claim_task_in(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        batch_lines: bool,
    ) -> Result<Option<TaskRecord>, StoreError> {
        let claimed = in_tx!(self.db, |tx| tasks::claim(&tx, worker, now_ms, lease_until_ms, batch_lines).await?)?;
        if let Some(t) = &claimed {
            self.notifier.announce(&[StoreEvent::TaskChanged(t.id.clone())]);
        }
        Ok(claimed)
    }

    async fn renew_lease(&self, task_id: &str, worker: &str, lease_until_ms: i64) -> Result<Lease, StoreError> {
        on_conn!(self.db, |c| tasks::renew(c, task_id, worker, lease_until_ms).await)
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
        let how = || tasks::End::Completed(result, tries, images);
        let ended = in_tx!(self.db, |tx| tasks::end(&tx, task_id, worker, how(), now_ms, webhook).await?)?;
        self.ended(&ended);
        Ok(ended)
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
        in_tx!(self.db, |tx| tasks::end(&tx, task_id, worker, tasks::End::Failed(error, tries), now_ms, webhook)
            .await?)
    }

    async fn finish_cancelled(
        &self,
        task_id: &str,
        worker: &str,
        now_ms: i64,
        webhook: WebhookFor,
    ) -> Result<Option<Ended>, StoreError> {
        let how = || tasks::End::Cancelled;
        let ended = in_tx!(self.db, |tx| tasks::end(&tx, task_id, worker, how(), now_ms, webhook).await?)?;
        self.ended(&ended);
        Ok(ended)
    }

    async fn request_cancel(
        &self,
        owner: &str,
        id: &str,
        now_ms: i64,
        webhook: WebhookFor,
    ) -> Result<CancelOutcome, StoreError> {
        let outcome = in_tx!(self.db, |tx| tasks::request_cancel(&tx, owner, id, now_ms, webhook).await?)?;
        match &outcome {
            CancelOutcome::Cancelled(t) => {
                self.notifier.announce(&[StoreEvent::TaskChanged(t.id.clone()), StoreEvent::WebhookDue])
            }
            CancelOutcome::Requested(t) => self.notifier.announce(&[StoreEvent::CancelRequested(t.id.clone())]),
            _ => {}
        }
        Ok(outcome)
    }

    async fn release_task(&self, task_id: &str, worker: &str, now_ms: i64) -> Result<bool, StoreError> {
        let released = on_conn!(self.db, |c| tasks::release(c, task_id, worker, now_ms).await)?;
        if released {
            self.notifier.announce(&[StoreEvent::Queued, StoreEvent::TaskChanged(task_id.to_string())]);
        }
        Ok(released)
    }

    async fn count_unfinished(&self) -> Result<i64, StoreError> {
        on_conn!(self.db, |c| tasks::count_unfinished(c).await)
    }

    async fn queue_stats(&self) -> Result<Vec<super::QueueStat>, StoreError> {
        on_conn!(self.db, |c| tasks::queue_stats(c).await)
    }

    async fn create_file(&self, file: &FileRecord) -> Result<(), StoreError> {
        on_conn!(self.db, |c| files::insert(c, file).await)
    }

    async fn get_file(&self, owner: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
        on_conn!(self.db, |c| files::get(c, owner, id).await)
    }

    async fn list_files(
        &self,
        owner: &str,
        purpose: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<FileRecord>, StoreError> {
        on_conn!(self.db, |c| files::list(c, owner, purpose, after, limit).await)
    }

    async fn delete_file(&self, owner: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
        on_conn!(self.db, |c| files::delete(c, owner, id).await)
    }

    async fn expired_files(&self, now_secs: i64, limit: u32) -> Result<Vec<FileRecord>, StoreError> {
        on_conn!(self.db, |c| files::expired(c, now_secs, limit).await)
    }

    async fn create_batch(&self, batch: &BatchRecord) -> Result<(), StoreError> {
        on_conn!(self.db, |c| batches::insert(c, batch).await)
    }

    async fn get_batch(&self, owner: &str, id: &str) -> Result<Option<BatchRecord>, StoreError> {
        on_conn!(self.db, |c| batches::get(c, owner, id).await)
    }

    async fn list_batches(&self, owner: &str, after: Option<&str>, limit: u32) -> Result<Vec<BatchRecord>, StoreError> {
        on_conn!(self.db, |c| batches::list(c, owner, after, limit).await)
    }

    async fn cancel_batch(&self, owner: &str, id: &str, now_secs: i64) -> Result<Option<BatchRecord>, StoreError> {
        on_conn!(self.db, |c| batches::cancel(c, owner, id, now_secs).await)
    }

    async fn claim_batch(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<BatchRecord>, StoreError> {
        in_tx!(self.db, |tx| batches::claim(&tx, worker, now_ms, lease_until_ms).await?)
    }

    async fn renew_batch(&self, id: &str, worker: &str, lease_until_ms: i64) -> Result<bool, StoreError> {
        on_conn!(self.db, |c| batches::renew(c, id, worker, lease_until_ms).await)
    }

    async fn save_batch(
        &self,
        batch: &BatchRecord,
        worker: &str,
        next_check_at_ms: i64,
        webhook: Option<&NewWebhook>,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let saved = in_tx!(self.db, |tx| batches::save(&tx, batch, worker, next_check_at_ms, webhook, now_ms).await?)?;
        if saved && webhook.is_some() {
            self.notifier.announce(&[StoreEvent::WebhookDue]);
        }
        Ok(saved)
    }

    async fn add_batch_line(
        &self,
        batch_id: &str,
        line: i64,
        custom_id: &str,
        task_id: Option<&str>,
        error: Option<&Value>,
    ) -> Result<(), StoreError> {
        on_conn!(self.db, |c| batches::add_line(c, batch_id, line, custom_id, task_id, error).await)
    }

    async fn batch_progress(&self, batch_id: &str) -> Result<BatchProgress, StoreError> {
        on_conn!(self.db, |c| batches::progress(c, batch_id).await)
    }

    async fn batch_lines(&self, batch_id: &str, after: i64, limit: u32) -> Result<Vec<BatchLineRecord>, StoreError> {
        on_conn!(self.db, |c| batches::lines(c, batch_id, after, limit).await)
    }

    async fn open_batch_tasks(&self, batch_id: &str, limit: u32) -> Result<Vec<(String, String)>, StoreError> {
        on_conn!(self.db, |c| batches::open_tasks(c, batch_id, limit).await)
    }

    async fn create_job(
        &self,
        job: &UpstreamJob,
        model: &str,
        limit: u32,
        lease_until_ms: i64,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        in_tx!(self.db, |tx| jobs::create(&tx, job, model, limit, lease_until_ms).await?)
    }

    async fn claim_job(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> Result<Option<UpstreamJob>, StoreError> {
        in_tx!(self.db, |tx| jobs::claim(&tx, worker, now_ms, lease_until_ms).await?)
    }

    async fn renew_job(&self, id: &str, worker: &str, lease_until_ms: i64) -> Result<bool, StoreError> {
        on_conn!(self.db, |c| jobs::renew(c, id, worker, lease_until_ms).await)
    }

    async fn save_job(&self, job: &UpstreamJob, worker: &str, next_check_at_ms: i64) -> Result<bool, StoreError> {
        on_conn!(self.db, |c| jobs::save(c, job, worker, next_check_at_ms).await)
    }

    async fn release_job_tasks(&self, job_id: &str, task_ids: &[String]) -> Result<(), StoreError> {
        in_tx!(self.db, |tx| jobs::release(&tx, job_id, task_ids).await?)
    }

    async fn job_tasks(&self, job_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
        on_conn!(self.db, |c| jobs::tasks(c, job_id).await)
    }

    async fn waiting_models(&self, batch_id: &str) -> Result<Vec<String>, StoreError> {
        on_conn!(self.db, |c| jobs::waiting_models(c, batch_id).await)
    }

    async fn flex_waiting(&self) -> Result<Vec<(String, i64, i64)>, StoreError> {
        on_conn!(self.db, |c| jobs::flex_waiting(c).await)
    }

    async fn flex_fallback(&self, now_secs: i64, margin_secs: i64, limit: u32) -> Result<Vec<TaskRecord>, StoreError> {
        let moved = in_tx!(self.db, |tx| jobs::flex_fallback(&tx, now_secs, margin_secs, limit).await?)?;
        if !moved.is_empty() {
            self.notifier.announce(&[StoreEvent::Queued]);
        }
        Ok(moved)
    }

    async fn task_inputs(&self, owner: &str, task_id: &str) -> Result<Vec<InputRecord>, StoreError> {
        on_conn!(self.db, |c| inputs::of_task(c, owner, task_id).await)
    }

    async fn expired_inputs(&self, now_secs: i64, limit: u32) -> Result<Vec<(InputRecord, bool)>, StoreError> {
        on_conn!(self.db, |c| inputs::expired(c, now_secs, limit).await)
    }

    async fn live_input_blobs(&self, blob_keys: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
        on_conn!(self.db, |c| inputs::live_blobs(c, blob_keys).await)
    }

    async fn mark_input_swept(&self, input_id: &str, now_ms: i64) -> Result<(), StoreError> {
        on_conn!(self.db, |c| inputs::mark_swept(c, input_id, now_ms).await)
    }

    async fn get_image(&self, id: &str) -> Result<Option<ImageRecord>, StoreError> {
        on_conn!(self.db, |c| images::get(c, id).await)
    }

    async fn add_variant(&self, image_id: &str, blob_key: &str, bytes: i64, now_ms: i64) -> Result<(), StoreError> {
        on_conn!(self.db, |c| images::add_variant(c, image_id, blob_key, bytes, now_ms).await)
    }

    async fn live_images(&self, ids: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
        on_conn!(self.db, |c| images::live(c, ids).await)
    }

    async fn variants(&self, image_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
        on_conn!(self.db, |c| images::variants(c, image_id).await)
    }

    async fn expired_images(&self, now_secs: i64, limit: u32) -> Result<Vec<(ImageRecord, Vec<String>)>, StoreError> {
        on_conn!(self.db, |c| images::expired(c, now_secs, limit).await)
    }

    async fn mark_swept(&self, image_id: &str, now_ms: i64) -> Result<(), StoreError> {
        on_conn!(self.db, |c| images::mark_swept(c, image_id, now_ms).await)
    }

    async fn webhook_secret(&self, owner: &str) -> Result<Option<String>, StoreError> {
        on_conn!(self.db, |c| keys::webhook_secret(c, owner).await)
    }

    async fn set_webhook_secret(&self, owner: &str, secret: &str) -> Result<bool, StoreError> {
        on_conn!(self.db, |c| keys::set_webhook_secret(c, owner, secret).await)
    }

    async fn enqueue_webhook(&self, task: &TaskRecord, msg: &NewWebhook, now_ms: i64) -> Result<(), StoreError> {
        on_conn!(self.db, |c| webhooks::insert_outbox(c, (&task.id, &task.owner), msg, now_ms).await)?;
        self.notifier.announce(&[StoreEvent::WebhookDue]);
        Ok(())
    }

    async fn claim_webhooks(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<WebhookMessage>, StoreError> {
        on_conn!(self.db, |c| webhooks::claim(c, worker, now_ms, lease_until_ms, limit).await)
    }

    async fn record_attempt(&self, attempt: &DeliveryAttempt, outcome: AttemptOutcome) -> Result<(), StoreError> {
        on_conn!(self.db, |c| webhooks::record_attempt(c, attempt, outcome).await)
    }

    async fn list_attempts(&self, owner: &str, task_id: &str) -> Result<Option<Vec<DeliveryAttempt>>, StoreError> {
        on_conn!(self.db, |c| webhooks::list_attempts(c, owner, task_id).await)
    }

    async fn next_webhook_due(&self) -> Result<Option<i64>, StoreError> {
        on_conn!(self.db, |c| webhooks::next_due(c).await)
    }

    async fn claim_exports(
        &self,
        worker: &str,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> Result<Vec<ExportJob>, StoreError> {
        on_conn!(self.db, |c| exports::claim(c, worker, now_ms, lease_until_ms, limit).await)
    }

    async fn record_export(&self, image_id: &str, outcome: &ExportOutcome, now_ms: i64) -> Result<(), StoreError> {
        on_conn!(self.db, |c| exports::record(c, image_id, outcome, now_ms).await)
    }

    async fn next_export_due(&self) -> Result<Option<i64>, StoreError> {
        on_conn!(self.db, |c| exports::next_due(c).await)
    }

    async fn task_exports(&self, owner: &str, task_ids: &[String]) -> Result<Vec<ExportRecord>, StoreError> {
        on_conn!(self.db, |c| exports::for_tasks(c, owner, task_ids).await)
    }
}
