//! Task and image rows: creation with idempotency, the fair lease queue, cancel, and ending a
//! task together with the webhook it owes.

use serde_json::Value;
use sqlx::{Row, Sqlite, SqlitePool, Transaction, sqlite::SqliteRow};

use super::webhooks::insert_outbox;
use crate::domain::task::{TaskMode, TaskStatus};
use crate::store::{
    CancelOutcome, Created, IDEMPOTENCY_WINDOW_MS, ImageRecord, Lease, LimitHit, NewTask, StoreError, TaskRecord,
    WebhookFor, WebhookTarget,
};

/// The columns `row_to_task` reads (a macro so queries stay `&'static str` for sqlx).
macro_rules! task_columns {
    () => {
        "id, owner, status, mode, model, request, result, error, attempts, created_at, started_at, completed_at, \
         webhook_url, webhook_events, cancel_requested, cost_usd, reserved_usd, reserved_images, usage_day"
    };
}

fn json_column(r: &SqliteRow, col: &str, what: &'static str) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = r.try_get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|source| StoreError::Corrupt { what, source })).transpose()
}

pub(super) fn row_to_task(r: &SqliteRow) -> Result<TaskRecord, StoreError> {
    let status: String = r.try_get("status")?;
    let mode: String = r.try_get("mode")?;
    let webhook_url: Option<String> = r.try_get("webhook_url")?;
    let events: Option<Value> = json_column(r, "webhook_events", "webhook events")?;
    let cancel: Option<i64> = r.try_get("cancel_requested")?;
    Ok(TaskRecord {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        status: TaskStatus::parse(&status)
            .ok_or_else(|| sqlx::Error::Decode(format!("task status {status:?}").into()))?,
        mode: if mode == "async" { TaskMode::Async } else { TaskMode::Sync },
        model: r.try_get("model")?,
        request: json_column(r, "request", "task request")?.unwrap_or(Value::Null),
        result: json_column(r, "result", "task result")?,
        error: json_column(r, "error", "task error")?,
        attempts: r.try_get("attempts")?,
        created_at_ms: r.try_get("created_at")?,
        started_at_ms: r.try_get("started_at")?,
        completed_at_ms: r.try_get("completed_at")?,
        webhook: webhook_url.map(|url| WebhookTarget {
            url,
            events: events.and_then(|e| serde_json::from_value(e).ok()).unwrap_or_default(),
        }),
        cancel_requested: cancel.is_some(),
        cost_usd: r.try_get("cost_usd")?,
    })
}

/// Settles a task's reservation when it ends with `delivered` images: the key is charged for
/// those (their `actual` price when known, else pro rata of the reservation), the rest of the
/// reservation is given back.
async fn settle(
    tx: &mut Transaction<'_, Sqlite>,
    row: &SqliteRow,
    delivered: u32,
    actual: Option<f64>,
) -> Result<f64, StoreError> {
    let owner: String = row.try_get("owner")?;
    let model: String = row.try_get("model")?;
    let reserved_usd: f64 = row.try_get("reserved_usd")?;
    let reserved_images: i64 = row.try_get("reserved_images")?;
    let day: Option<String> = row.try_get("usage_day")?;
    let delivered = i64::from(delivered).min(reserved_images);
    let cost = match actual {
        // The images' own prices (a fallback model may be cheaper), never above the reservation.
        Some(c) => crate::domain::pricing::round6(c.min(reserved_usd)),
        None if reserved_images > 0 => {
            crate::domain::pricing::round6(reserved_usd * delivered as f64 / reserved_images as f64)
        }
        None => 0.0,
    };
    sqlx::query("UPDATE keys SET reserved_usd = MAX(0, reserved_usd - ?), spent_usd = spent_usd + ? WHERE id = ?")
        .bind(reserved_usd)
        .bind(cost)
        .bind(&owner)
        .execute(&mut **tx)
        .await?;
    if let Some(day) = day {
        sqlx::query(
            "UPDATE usage_daily SET images = images - ?, cost_usd = cost_usd + ? WHERE owner = ? AND day = ? AND model = ?",
        )
        .bind(reserved_images - delivered)
        .bind(cost)
        .bind(&owner)
        .bind(&day)
        .bind(&model)
        .execute(&mut **tx)
        .await?;
    }
    sqlx::query("UPDATE tasks SET cost_usd = ? WHERE id = ?")
        .bind(cost)
        .bind(row.try_get::<String, _>("id")?)
        .execute(&mut **tx)
        .await?;
    Ok(cost)
}

/// Checks the key's limits inside the creating transaction; `Some` names the one passed.
async fn check_limits(tx: &mut Transaction<'_, Sqlite>, task: &NewTask) -> Result<Option<LimitHit>, StoreError> {
    let l = &task.limits;
    if let Some(limit) = l.max_concurrency {
        let open: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE owner = ? AND status IN ('queued', 'running')")
                .bind(&task.owner)
                .fetch_one(&mut **tx)
                .await?;
        if open >= i64::from(limit) {
            return Ok(Some(LimitHit::Concurrency { limit }));
        }
    }
    if let Some(limit) = l.daily_images {
        let used: i64 =
            sqlx::query_scalar("SELECT COALESCE(SUM(images), 0) FROM usage_daily WHERE owner = ? AND day = ?")
                .bind(&task.owner)
                .bind(&task.reservation.day)
                .fetch_one(&mut **tx)
                .await?;
        if used + i64::from(task.reservation.images) > i64::from(limit) {
            return Ok(Some(LimitHit::DailyImages { limit, used }));
        }
    }
    if let Some(limit) = l.budget_usd {
        let used: Option<f64> = sqlx::query_scalar("SELECT spent_usd + reserved_usd FROM keys WHERE id = ?")
            .bind(&task.owner)
            .fetch_optional(&mut **tx)
            .await?;
        let used = used.unwrap_or(0.0);
        if used + task.reservation.cost_usd > limit + 1e-9 {
            return Ok(Some(LimitHit::Budget { limit, used }));
        }
    }
    Ok(None)
}

pub async fn create(pool: &SqlitePool, task: NewTask) -> Result<Created, StoreError> {
    let mut tx = pool.begin().await?;
    if let Some((key, hash)) = &task.idempotency {
        let existing = sqlx::query(concat!(
            "SELECT ",
            task_columns!(),
            ", request_hash FROM tasks WHERE owner = ? AND idempotency_key = ?"
        ))
        .bind(&task.owner)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(row) = existing {
            let found = row_to_task(&row)?;
            if found.created_at_ms + IDEMPOTENCY_WINDOW_MS > task.created_at_ms {
                let stored_hash: Option<String> = row.try_get("request_hash")?;
                tx.commit().await?;
                return Ok(if stored_hash.as_deref() == Some(hash.as_str()) {
                    Created::Existing(found)
                } else {
                    Created::Conflict
                });
            }
            // Past the window: the key is free again; the old task keeps its record.
            sqlx::query("UPDATE tasks SET idempotency_key = NULL WHERE id = ?")
                .bind(&found.id)
                .execute(&mut *tx)
                .await?;
        }
    }
    if let Some(hit) = check_limits(&mut tx, &task).await? {
        tx.rollback().await?;
        return Ok(Created::OverLimit(hit));
    }
    let (idem_key, idem_hash) = match &task.idempotency {
        Some((k, h)) => (Some(k.as_str()), Some(h.as_str())),
        None => (None, None),
    };
    let events = task.webhook.as_ref().map(|w| serde_json::to_string(&w.events).unwrap_or_else(|_| "[]".into()));
    sqlx::query(
        "INSERT INTO tasks (id, owner, status, mode, model, request, attempts, idempotency_key, request_hash,
                            webhook_url, webhook_events, reserved_usd, reserved_images, usage_day, created_at, updated_at)
         VALUES (?, ?, 'queued', ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&task.id)
    .bind(&task.owner)
    .bind(task.mode.as_str())
    .bind(&task.model)
    .bind(task.request.to_string())
    .bind(idem_key)
    .bind(idem_hash)
    .bind(task.webhook.as_ref().map(|w| w.url.as_str()))
    .bind(events)
    .bind(task.reservation.cost_usd)
    .bind(task.reservation.images)
    .bind(&task.reservation.day)
    .bind(task.created_at_ms)
    .bind(task.created_at_ms)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE keys SET reserved_usd = reserved_usd + ? WHERE id = ?")
        .bind(task.reservation.cost_usd)
        .bind(&task.owner)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO usage_daily (owner, day, model, images, cost_usd) VALUES (?, ?, ?, ?, 0)
         ON CONFLICT (owner, day, model) DO UPDATE SET images = images + excluded.images",
    )
    .bind(&task.owner)
    .bind(&task.reservation.day)
    .bind(&task.model)
    .bind(task.reservation.images)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Created::New(TaskRecord {
        id: task.id,
        owner: task.owner,
        status: TaskStatus::Queued,
        mode: task.mode,
        model: task.model,
        request: task.request,
        result: None,
        error: None,
        attempts: 0,
        created_at_ms: task.created_at_ms,
        started_at_ms: None,
        completed_at_ms: None,
        webhook: task.webhook,
        cancel_requested: false,
        cost_usd: None,
    }))
}

pub async fn get(pool: &SqlitePool, owner: &str, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let row = sqlx::query(concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = ? AND owner = ?"))
        .bind(id)
        .bind(owner)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(row_to_task).transpose()
}

pub async fn list(
    pool: &SqlitePool,
    owner: &str,
    status: Option<TaskStatus>,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<TaskRecord>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        task_columns!(),
        " FROM tasks
         WHERE owner = ? AND (? IS NULL OR status = ?) AND (? IS NULL OR id < ?)
         ORDER BY id DESC LIMIT ?"
    ))
    .bind(owner)
    .bind(status.map(|s| s.as_str()))
    .bind(status.map(|s| s.as_str()))
    .bind(before)
    .bind(before)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter().map(row_to_task).collect()
}

pub async fn queue_position(pool: &SqlitePool, task: &TaskRecord) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM tasks WHERE status = 'queued' AND (created_at < ? OR (created_at = ? AND id < ?))",
    )
    .bind(task.created_at_ms)
    .bind(task.created_at_ms)
    .bind(&task.id)
    .fetch_one(pool)
    .await?)
}

pub async fn claim(
    pool: &SqlitePool,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Option<TaskRecord>, StoreError> {
    let mut tx = pool.begin().await?;
    // Work cut off by a dead worker first: it has waited longest.
    let expired: Option<String> = sqlx::query_scalar(
        "SELECT id FROM tasks WHERE status = 'running' AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT 1",
    )
    .bind(now_ms)
    .fetch_optional(&mut *tx)
    .await?;
    let id = match expired {
        Some(id) => Some(id),
        None => {
            sqlx::query_scalar(
                "SELECT t.id FROM tasks t
                 WHERE t.status = 'queued' AND t.owner = (
                     SELECT q.owner FROM (SELECT DISTINCT owner FROM tasks WHERE status = 'queued') q
                     LEFT JOIN queue_owners o ON o.owner = q.owner
                     ORDER BY COALESCE(o.last_claim_ms, 0), q.owner LIMIT 1)
                 ORDER BY t.created_at, t.id LIMIT 1",
            )
            .fetch_optional(&mut *tx)
            .await?
        }
    };
    let Some(id) = id else {
        tx.commit().await?;
        return Ok(None);
    };
    let row = sqlx::query(concat!(
        "UPDATE tasks SET status = 'running', lease_owner = ?, lease_expires_at = ?,
                attempts = attempts + 1, started_at = COALESCE(started_at, ?), updated_at = ?
         WHERE id = ? RETURNING ",
        task_columns!()
    ))
    .bind(worker)
    .bind(lease_until_ms)
    .bind(now_ms)
    .bind(now_ms)
    .bind(&id)
    .fetch_one(&mut *tx)
    .await?;
    let task = row_to_task(&row)?;
    sqlx::query(
        "INSERT INTO queue_owners (owner, last_claim_ms) VALUES (?, ?)
         ON CONFLICT (owner) DO UPDATE SET last_claim_ms = excluded.last_claim_ms",
    )
    .bind(&task.owner)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(task))
}

pub async fn renew(pool: &SqlitePool, task_id: &str, worker: &str, lease_until_ms: i64) -> Result<Lease, StoreError> {
    let row: Option<Option<i64>> = sqlx::query_scalar(
        "UPDATE tasks SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND status = 'running'
         RETURNING cancel_requested",
    )
    .bind(lease_until_ms)
    .bind(task_id)
    .bind(worker)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        None => Lease::Lost,
        Some(Some(_)) => Lease::CancelRequested,
        Some(None) => Lease::Held,
    })
}

/// How a running task ends.
pub enum End<'a> {
    /// With the upstream tries this run made and the images delivered.
    Completed(&'a Value, u32, &'a [ImageRecord]),
    Failed(&'a Value, u32),
    Cancelled,
}

/// Moves a task `worker` holds from running to a terminal state, then writes its webhook.
async fn end_held(
    tx: &mut Transaction<'_, Sqlite>,
    task_id: &str,
    worker: &str,
    end: End<'_>,
    now_ms: i64,
    webhook: WebhookFor<'_>,
) -> Result<Option<TaskRecord>, StoreError> {
    let (status, result, error, tries, delivered, actual) = match end {
        End::Completed(r, t, images) => (
            TaskStatus::Completed,
            Some(r),
            None,
            Some(i64::from(t)),
            images.len() as u32,
            Some(images.iter().map(|i| i.cost_usd).sum::<f64>()),
        ),
        End::Failed(e, t) => (TaskStatus::Failed, None, Some(e), Some(i64::from(t)), 0, None),
        End::Cancelled => (TaskStatus::Cancelled, None, None, None, 0, None),
    };
    let row = sqlx::query(concat!(
        "UPDATE tasks SET status = ?, result = ?, error = ?, completed_at = ?, updated_at = ?,
                lease_owner = NULL, lease_expires_at = NULL,
                attempts = CASE WHEN ? IS NULL THEN attempts ELSE attempts - 1 + ? END
         WHERE id = ? AND lease_owner = ? AND status = 'running' RETURNING ",
        task_columns!()
    ))
    .bind(status.as_str())
    .bind(result.map(Value::to_string))
    .bind(error.map(Value::to_string))
    .bind(now_ms)
    .bind(now_ms)
    .bind(tries)
    .bind(tries)
    .bind(task_id)
    .bind(worker)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let mut task = row_to_task(&row)?;
    task.cost_usd = Some(settle(tx, &row, delivered, actual).await?);
    if let Some(msg) = webhook(&task) {
        insert_outbox(tx, &task, &msg, now_ms).await?;
    }
    Ok(Some(task))
}

#[allow(clippy::too_many_arguments)]
pub async fn complete(
    pool: &SqlitePool,
    task_id: &str,
    worker: &str,
    result: &Value,
    images: &[ImageRecord],
    tries: u32,
    now_ms: i64,
    webhook: WebhookFor<'_>,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let ended = end_held(&mut tx, task_id, worker, End::Completed(result, tries, images), now_ms, webhook).await?;
    if ended.is_none() {
        tx.rollback().await?;
        return Ok(false);
    }
    for img in images {
        sqlx::query(
            "INSERT INTO images (id, task_id, owner, blob_key, content_type, bytes, width, height, etag, created_at,
                                 expires_at, cost_usd)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&img.id)
        .bind(&img.task_id)
        .bind(&img.owner)
        .bind(&img.blob_key)
        .bind(&img.content_type)
        .bind(img.bytes)
        .bind(img.width)
        .bind(img.height)
        .bind(&img.etag)
        .bind(img.created_at_ms)
        .bind(img.expires_at)
        .bind(img.cost_usd)
        .execute(&mut *tx)
        .await?;
    }
    if let Some(task) = &ended {
        super::exports::owe(&mut tx, task_id, &task.owner, images, now_ms).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Ends a task `worker` holds as failed or cancelled, with its webhook, in one transaction.
pub async fn end(
    pool: &SqlitePool,
    task_id: &str,
    worker: &str,
    how: End<'_>,
    now_ms: i64,
    webhook: WebhookFor<'_>,
) -> Result<bool, StoreError> {
    let mut tx = pool.begin().await?;
    let ended = end_held(&mut tx, task_id, worker, how, now_ms, webhook).await?;
    tx.commit().await?;
    Ok(ended.is_some())
}

pub async fn request_cancel(
    pool: &SqlitePool,
    owner: &str,
    id: &str,
    now_ms: i64,
    webhook: WebhookFor<'_>,
) -> Result<CancelOutcome, StoreError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(concat!(
        "UPDATE tasks SET status = 'cancelled', completed_at = ?, updated_at = ?
         WHERE id = ? AND owner = ? AND status = 'queued' RETURNING ",
        task_columns!()
    ))
    .bind(now_ms)
    .bind(now_ms)
    .bind(id)
    .bind(owner)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = row {
        let mut task = row_to_task(&row)?;
        task.cost_usd = Some(settle(&mut tx, &row, 0, None).await?);
        if let Some(msg) = webhook(&task) {
            insert_outbox(&mut tx, &task, &msg, now_ms).await?;
        }
        tx.commit().await?;
        return Ok(CancelOutcome::Cancelled(task));
    }
    let row = sqlx::query(concat!(
        "UPDATE tasks SET cancel_requested = COALESCE(cancel_requested, ?), updated_at = ?
         WHERE id = ? AND owner = ? AND status = 'running' RETURNING ",
        task_columns!()
    ))
    .bind(now_ms)
    .bind(now_ms)
    .bind(id)
    .bind(owner)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = row {
        let task = row_to_task(&row)?;
        tx.commit().await?;
        return Ok(CancelOutcome::Requested(task));
    }
    let row = sqlx::query(concat!("SELECT ", task_columns!(), " FROM tasks WHERE id = ? AND owner = ?"))
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(match row {
        Some(row) => CancelOutcome::AlreadyEnded(row_to_task(&row)?),
        None => CancelOutcome::NotFound,
    })
}

pub async fn release(pool: &SqlitePool, task_id: &str, worker: &str, now_ms: i64) -> Result<bool, StoreError> {
    let n = sqlx::query(
        "UPDATE tasks SET status = 'queued', updated_at = ?, lease_owner = NULL, lease_expires_at = NULL
         WHERE id = ? AND lease_owner = ? AND status = 'running'",
    )
    .bind(now_ms)
    .bind(task_id)
    .bind(worker)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(n > 0)
}

pub async fn count_unfinished(pool: &SqlitePool) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM tasks WHERE status IN ('queued', 'running')").fetch_one(pool).await?)
}
