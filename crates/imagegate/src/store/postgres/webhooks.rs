//! The webhook outbox and the attempt log. Replicas claim due messages with
//! `FOR UPDATE SKIP LOCKED`: each message goes to one deliverer at a time, and a message whose
//! deliverer died comes back when its lease runs out (at-least-once).

use deadpool_postgres::GenericClient;

use crate::store::{AttemptOutcome, DeliveryAttempt, NewWebhook, StoreError, WebhookMessage};

/// Writes a message about `subject` (`(id, owner)` of a task or a batch) to the outbox (inside
/// the caller's transaction).
pub(super) async fn insert_outbox(
    c: &impl GenericClient,
    subject: (&str, &str),
    msg: &NewWebhook,
    now_ms: i64,
) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO webhook_outbox (id, task_id, owner, event_type, url, payload, status, attempts,
                                         next_attempt_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7)",
        )
        .await?;
    c.execute(&stmt, &[&msg.id, &subject.0, &subject.1, &msg.event_type, &msg.url, &msg.payload, &now_ms]).await?;
    Ok(())
}

pub async fn claim(
    c: &impl GenericClient,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<WebhookMessage>, StoreError> {
    let stmt = c
        .prepare_cached(
            "UPDATE webhook_outbox SET lease_owner = $1, lease_expires_at = $2, updated_at = $3
             WHERE id IN (
                 SELECT id FROM webhook_outbox
                 WHERE status = 'pending' AND next_attempt_at <= $3
                       AND (lease_expires_at IS NULL OR lease_expires_at < $3)
                 ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING id, task_id, owner, event_type, url, payload, attempts",
        )
        .await?;
    c.query(&stmt, &[&worker, &lease_until_ms, &now_ms, &i64::from(limit)])
        .await?
        .iter()
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

pub async fn record_attempt(
    c: &impl GenericClient,
    a: &DeliveryAttempt,
    outcome: AttemptOutcome,
) -> Result<(), StoreError> {
    let (status, next) = match outcome {
        AttemptOutcome::Delivered => ("delivered", None),
        AttemptOutcome::RetryAt(at) => ("pending", Some(at)),
        AttemptOutcome::GiveUp => ("failed", None),
    };
    // One statement: the attempt logged and the message moved on together.
    let stmt = c
        .prepare_cached(
            "WITH logged AS (
                 INSERT INTO webhook_attempts (message_id, task_id, event_type, url, attempted_at, status_code,
                                               error, latency_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8))
             UPDATE webhook_outbox SET status = $9, attempts = attempts + 1,
                    next_attempt_at = COALESCE($10, next_attempt_at), lease_owner = NULL, lease_expires_at = NULL,
                    updated_at = $5
             WHERE id = $1",
        )
        .await?;
    c.execute(
        &stmt,
        &[
            &a.message_id,
            &a.task_id,
            &a.event_type,
            &a.url,
            &a.attempted_at_ms,
            &a.status_code.map(i64::from),
            &a.error,
            &a.latency_ms,
            &status,
            &next,
        ],
    )
    .await?;
    Ok(())
}

pub async fn list_attempts(
    c: &impl GenericClient,
    owner: &str,
    task_id: &str,
) -> Result<Option<Vec<DeliveryAttempt>>, StoreError> {
    let exists = c.prepare_cached("SELECT 1 FROM tasks WHERE id = $1 AND owner = $2").await?;
    if c.query_opt(&exists, &[&task_id, &owner]).await?.is_none() {
        return Ok(None);
    }
    let stmt = c
        .prepare_cached(
            "SELECT message_id, task_id, event_type, url, attempted_at, status_code, error, latency_ms
             FROM webhook_attempts WHERE task_id = $1 ORDER BY id",
        )
        .await?;
    let rows = c.query(&stmt, &[&task_id]).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let code: Option<i64> = r.try_get("status_code")?;
        out.push(DeliveryAttempt {
            message_id: r.try_get("message_id")?,
            task_id: r.try_get("task_id")?,
            event_type: r.try_get("event_type")?,
            url: r.try_get("url")?,
            attempted_at_ms: r.try_get("attempted_at")?,
            status_code: code.and_then(|c| u16::try_from(c).ok()),
            error: r.try_get("error")?,
            latency_ms: r.try_get("latency_ms")?,
        });
    }
    Ok(Some(out))
}

pub async fn next_due(c: &impl GenericClient) -> Result<Option<i64>, StoreError> {
    // A message being delivered (leased) is not due before its lease runs out.
    let stmt = c
        .prepare_cached(
            "SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_expires_at, 0))) FROM webhook_outbox
             WHERE status = 'pending'",
        )
        .await?;
    Ok(c.query_one(&stmt, &[]).await?.try_get(0)?)
}
