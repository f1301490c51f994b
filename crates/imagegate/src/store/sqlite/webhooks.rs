//! The webhook outbox and the attempt log.

use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::store::{AttemptOutcome, DeliveryAttempt, NewWebhook, StoreError, TaskRecord, WebhookMessage};

pub(super) async fn insert_outbox(
    tx: &mut Transaction<'_, Sqlite>,
    task: &TaskRecord,
    msg: &NewWebhook,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO webhook_outbox (id, task_id, owner, event_type, url, payload, status, attempts, next_attempt_at,
                                     created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
    )
    .bind(&msg.id)
    .bind(&task.id)
    .bind(&task.owner)
    .bind(&msg.event_type)
    .bind(&msg.url)
    .bind(&msg.payload)
    .bind(now_ms)
    .bind(now_ms)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

pub async fn enqueue(pool: &SqlitePool, task: &TaskRecord, msg: &NewWebhook, now_ms: i64) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    insert_outbox(&mut tx, task, msg, now_ms).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn claim(
    pool: &SqlitePool,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<WebhookMessage>, StoreError> {
    let rows = sqlx::query(
        "UPDATE webhook_outbox SET lease_owner = ?, lease_expires_at = ?, updated_at = ?
         WHERE id IN (
             SELECT id FROM webhook_outbox
             WHERE status = 'pending' AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at < ?)
             ORDER BY next_attempt_at LIMIT ?)
         RETURNING id, task_id, owner, event_type, url, payload, attempts",
    )
    .bind(worker)
    .bind(lease_until_ms)
    .bind(now_ms)
    .bind(now_ms)
    .bind(now_ms)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(WebhookMessage {
                id: r.try_get("id")?,
                task_id: r.try_get("task_id")?,
                owner: r.try_get("owner")?,
                event_type: r.try_get("event_type")?,
                url: r.try_get("url")?,
                payload: r.try_get("payload")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .collect()
}

pub async fn record_attempt(pool: &SqlitePool, a: &DeliveryAttempt, outcome: AttemptOutcome) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (message_id, task_id, event_type, url, attempted_at, status_code, error, latency_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&a.message_id)
    .bind(&a.task_id)
    .bind(&a.event_type)
    .bind(&a.url)
    .bind(a.attempted_at_ms)
    .bind(a.status_code.map(i64::from))
    .bind(&a.error)
    .bind(a.latency_ms)
    .execute(&mut *tx)
    .await?;
    let (status, next) = match outcome {
        AttemptOutcome::Delivered => ("delivered", None),
        AttemptOutcome::RetryAt(at) => ("pending", Some(at)),
        AttemptOutcome::GiveUp => ("failed", None),
    };
    sqlx::query(
        "UPDATE webhook_outbox SET status = ?, attempts = attempts + 1, next_attempt_at = COALESCE(?, next_attempt_at),
                lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
         WHERE id = ?",
    )
    .bind(status)
    .bind(next)
    .bind(a.attempted_at_ms)
    .bind(&a.message_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn list_attempts(
    pool: &SqlitePool,
    owner: &str,
    task_id: &str,
) -> Result<Option<Vec<DeliveryAttempt>>, StoreError> {
    let exists: Option<String> = sqlx::query_scalar("SELECT id FROM tasks WHERE id = ? AND owner = ?")
        .bind(task_id)
        .bind(owner)
        .fetch_optional(pool)
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let rows = sqlx::query(
        "SELECT message_id, task_id, event_type, url, attempted_at, status_code, error, latency_ms
         FROM webhook_attempts WHERE task_id = ? ORDER BY id",
    )
    .bind(task_id)
    .fetch_all(pool)
    .await?;
    let attempts = rows
        .iter()
        .map(|r| {
            let code: Option<i64> = r.try_get("status_code")?;
            Ok(DeliveryAttempt {
                message_id: r.try_get("message_id")?,
                task_id: r.try_get("task_id")?,
                event_type: r.try_get("event_type")?,
                url: r.try_get("url")?,
                attempted_at_ms: r.try_get("attempted_at")?,
                status_code: code.and_then(|c| u16::try_from(c).ok()),
                error: r.try_get("error")?,
                latency_ms: r.try_get("latency_ms")?,
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    Ok(Some(attempts))
}

pub async fn next_due(pool: &SqlitePool) -> Result<Option<i64>, StoreError> {
    Ok(sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM webhook_outbox WHERE status = 'pending'")
        .fetch_one(pool)
        .await?)
}
