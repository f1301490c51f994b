//! The webhook outbox and the attempt log.

use rusqlite::{Connection, params};

use crate::store::{AttemptOutcome, DeliveryAttempt, NewWebhook, StoreError, WebhookMessage};

/// Writes a message about `subject` (`(id, owner)` of a task or a batch) to the outbox (inside
/// the caller's transaction).
pub(super) fn insert_outbox(
    conn: &Connection,
    subject: (&str, &str),
    msg: &NewWebhook,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO webhook_outbox (id, task_id, owner, event_type, url, payload, status, attempts, next_attempt_at,
                                     created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
    )?
    .execute(params![
        msg.id,
        subject.0,
        subject.1,
        msg.event_type,
        msg.url,
        msg.payload,
        now_ms,
        now_ms,
        now_ms
    ])?;
    Ok(())
}

pub fn claim(
    conn: &Connection,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<WebhookMessage>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "UPDATE webhook_outbox SET lease_owner = ?1, lease_expires_at = ?2, updated_at = ?3
         WHERE id IN (
             SELECT id FROM webhook_outbox
             WHERE status = 'pending' AND next_attempt_at <= ?3 AND (lease_expires_at IS NULL OR lease_expires_at < ?3)
             ORDER BY next_attempt_at LIMIT ?4)
         RETURNING id, task_id, owner, event_type, url, payload, attempts",
    )?;
    let rows = stmt.query_map(params![worker, lease_until_ms, now_ms, i64::from(limit)], |r| {
        Ok(WebhookMessage {
            id: r.get("id")?,
            task_id: r.get("task_id")?,
            owner: r.get("owner")?,
            event_type: r.get("event_type")?,
            url: r.get("url")?,
            payload: r.get("payload")?,
            attempts: r.get("attempts")?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn record_attempt(conn: &Connection, a: &DeliveryAttempt, outcome: AttemptOutcome) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO webhook_attempts (message_id, task_id, event_type, url, attempted_at, status_code, error, latency_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        a.message_id,
        a.task_id,
        a.event_type,
        a.url,
        a.attempted_at_ms,
        a.status_code.map(i64::from),
        a.error,
        a.latency_ms
    ])?;
    let (status, next) = match outcome {
        AttemptOutcome::Delivered => ("delivered", None),
        AttemptOutcome::RetryAt(at) => ("pending", Some(at)),
        AttemptOutcome::GiveUp => ("failed", None),
    };
    conn.prepare_cached(
        "UPDATE webhook_outbox SET status = ?, attempts = attempts + 1, next_attempt_at = COALESCE(?, next_attempt_at),
                lease_owner = NULL, lease_expires_at = NULL, updated_at = ?
         WHERE id = ?",
    )?
    .execute(params![status, next, a.attempted_at_ms, a.message_id])?;
    Ok(())
}

pub fn list_attempts(
    conn: &Connection,
    owner: &str,
    task_id: &str,
) -> Result<Option<Vec<DeliveryAttempt>>, StoreError> {
    let exists =
        conn.prepare_cached("SELECT 1 FROM tasks WHERE id = ? AND owner = ?")?.exists(params![task_id, owner])?;
    if !exists {
        return Ok(None);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT message_id, task_id, event_type, url, attempted_at, status_code, error, latency_ms
         FROM webhook_attempts WHERE task_id = ? ORDER BY id",
    )?;
    let rows = stmt.query_map([task_id], |r| {
        let code: Option<i64> = r.get("status_code")?;
        Ok(DeliveryAttempt {
            message_id: r.get("message_id")?,
            task_id: r.get("task_id")?,
            event_type: r.get("event_type")?,
            url: r.get("url")?,
            attempted_at_ms: r.get("attempted_at")?,
            status_code: code.and_then(|c| u16::try_from(c).ok()),
            error: r.get("error")?,
            latency_ms: r.get("latency_ms")?,
        })
    })?;
    Ok(Some(rows.collect::<Result<_, _>>()?))
}

pub fn next_due(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        // A message being delivered (leased) is not due before its lease runs out.
        .prepare_cached(
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_expires_at, 0))) FROM webhook_outbox WHERE status = 'pending'",
        )?
        .query_row([], |r| r.get(0))?)
}
