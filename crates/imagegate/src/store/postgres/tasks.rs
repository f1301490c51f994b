//! Task rows on PostgreSQL: creation with idempotency and limits, the lease queue shared by
//! every replica (`FOR UPDATE SKIP LOCKED`), cancel, and ending a task together with the
//! webhook and exports it owes. Functions that change several rows run inside the caller's
//! transaction; statements that do not depend on each other are sent together (pipelined on
//! the connection), so a transaction costs a few round trips whatever its number of rows.

use deadpool_postgres::GenericClient;
use futures_util::future::try_join4;
use serde_json::Value;
use tokio_postgres::Row;

use super::webhooks::insert_outbox;
use crate::domain::task::{TaskMode, TaskStatus};
use crate::store::{
    CancelOutcome, Created, Ended, IDEMPOTENCY_WINDOW_MS, ImageRecord, Lease, LimitHit, NewTask, QUEUE_POSITION_CAP,
    StoreError, TaskRecord, WebhookFor, WebhookTarget,
};

/// The columns `row_to_task` reads.
const TASK_COLUMNS: &str = "id, owner, status, mode, model, request, result, error, attempts, created_at, started_at, \
     completed_at, webhook_url, webhook_events, cancel_requested, cost_usd, reserved_usd, reserved_images, usage_day, \
     batch_id, custom_id, request_id";

/// What a task reserved against its key, settled when it ends.
struct Reserved {
    usd: f64,
    images: i64,
    day: Option<String>,
}

fn json_column(r: &Row, col: &str, what: &'static str) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = r.try_get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|source| StoreError::Corrupt { what, source })).transpose()
}

fn row_to_task(r: &Row) -> Result<TaskRecord, StoreError> {
    let status: String = r.try_get("status")?;
    let mode: String = r.try_get("mode")?;
    let webhook_url: Option<String> = r.try_get("webhook_url")?;
    let events: Option<Value> = json_column(r, "webhook_events", "webhook events")?;
    let cancel: Option<i64> = r.try_get("cancel_requested")?;
    Ok(TaskRecord {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        status: TaskStatus::parse(&status).ok_or(StoreError::BadValue { what: "task status", value: status })?,
        mode: TaskMode::parse(&mode),
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
        batch_id: r.try_get("batch_id")?,
        custom_id: r.try_get("custom_id")?,
        request_id: r.try_get("request_id")?,
    })
}

fn row_to_reserved(r: &Row) -> Result<Reserved, StoreError> {
    Ok(Reserved {
        usd: r.try_get("reserved_usd")?,
        images: r.try_get("reserved_images")?,
        day: r.try_get("usage_day")?,
    })
}

/// The first row of a task query (with its reservation), if any.
async fn one_task(
    c: &impl GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<(TaskRecord, Reserved)>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    match c.query_opt(&stmt, params).await? {
        Some(r) => Ok(Some((row_to_task(&r)?, row_to_reserved(&r)?))),
        None => Ok(None),
    }
}

/// Settles a task's reservation: the key is charged `cost`, the rest of the reservation is
/// given back, and the day's image count keeps only the images delivered.
async fn settle(
    c: &impl GenericClient,
    task: &TaskRecord,
    reserved: &Reserved,
    delivered: u32,
    cost: f64,
) -> Result<(), StoreError> {
    let delivered = i64::from(delivered).min(reserved.images);
    // Prepared first, then sent in this order on the connection: every transaction takes the
    // key's row before the day's usage row (submits do too), so two never wait on each other.
    let (key, usage, row) = futures_util::future::try_join3(
        c.prepare_cached(
            "UPDATE keys SET reserved_usd = GREATEST(0, reserved_usd - $1), spent_usd = spent_usd + $2 WHERE id = $3",
        ),
        c.prepare_cached(
            "UPDATE usage_daily SET images = images - $1, cost_usd = cost_usd + $2
             WHERE owner = $3 AND day = $4 AND model = $5",
        ),
        c.prepare_cached("UPDATE tasks SET cost_usd = $1 WHERE id = $2"),
    )
    .await?;
    let images_left = reserved.images - delivered;
    let day = reserved.day.as_deref().unwrap_or("");
    futures_util::future::try_join3(
        c.execute(&key, &[&reserved.usd, &cost, &task.owner]),
        c.execute(&usage, &[&images_left, &cost, &task.owner, &day, &task.model]),
        c.execute(&row, &[&cost, &task.id]),
    )
    .await?;
    Ok(())
}

/// Checks the key's limits inside the creating transaction, after locking the key's row (so
/// that concurrent submits of one key, from any replica, check one after the other); `Some`
/// names the limit passed.
async fn check_limits(c: &impl GenericClient, task: &NewTask) -> Result<Option<LimitHit>, StoreError> {
    let l = &task.limits;
    if l.max_concurrency.is_none() && l.daily_images.is_none() && l.budget_usd.is_none() {
        return Ok(None);
    }
    let lock = c.prepare_cached("SELECT spent_usd + reserved_usd FROM keys WHERE id = $1 FOR UPDATE").await?;
    let spent: f64 = c.query_opt(&lock, &[&task.owner]).await?.map(|r| r.try_get(0)).transpose()?.unwrap_or(0.0);
    let counts = c
        .prepare_cached(
            "SELECT CASE WHEN $2 THEN (SELECT COUNT(*) FROM tasks WHERE owner = $1 AND status IN ('queued', 'running')
                                                     AND lane = 0)
                         ELSE 0 END,
                    CASE WHEN $3 THEN (SELECT COALESCE(SUM(images), 0)::bigint FROM usage_daily
                                       WHERE owner = $1 AND day = $4)
                         ELSE 0 END",
        )
        .await?;
    let row = c
        .query_one(
            &counts,
            &[&task.owner, &l.max_concurrency.is_some(), &l.daily_images.is_some(), &task.reservation.day],
        )
        .await?;
    let (open, used): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
    if let Some(limit) = l.max_concurrency
        && open >= i64::from(limit)
    {
        return Ok(Some(LimitHit::Concurrency { limit }));
    }
    if let Some(limit) = l.daily_images
        && used + i64::from(task.reservation.images) > i64::from(limit)
    {
        return Ok(Some(LimitHit::DailyImages { limit, used }));
    }
    if let Some(limit) = l.budget_usd
        && spent + task.reservation.cost_usd > limit + 1e-9
    {
        return Ok(Some(LimitHit::Budget { limit, used: spent }));
    }
    Ok(None)
}

/// Writes a task (see `Store::create_task`). `None` when a concurrent submit with the same
/// Idempotency-Key committed first: the caller runs the transaction again, and finds it.
pub async fn create(c: &impl GenericClient, task: &NewTask) -> Result<Option<Created>, StoreError> {
    if let Some((key, hash)) = &task.idempotency {
        let stmt = c
            .prepare_cached(&format!(
                "SELECT {TASK_COLUMNS}, request_hash FROM tasks WHERE owner = $1 AND idempotency_key = $2"
            ))
            .await?;
        if let Some(r) = c.query_opt(&stmt, &[&task.owner, key]).await? {
            let found = row_to_task(&r)?;
            let stored_hash: Option<String> = r.try_get("request_hash")?;
            if found.created_at_ms + IDEMPOTENCY_WINDOW_MS > task.created_at_ms {
                return Ok(Some(if stored_hash.as_deref() == Some(hash.as_str()) {
                    Created::Existing(found)
                } else {
                    Created::Conflict
                }));
            }
            // Past the window: the key is free again; the old task keeps its record.
            let free = c.prepare_cached("UPDATE tasks SET idempotency_key = NULL WHERE id = $1").await?;
            c.execute(&free, &[&found.id]).await?;
        }
    }
    if let Some(hit) = check_limits(c, task).await? {
        return Ok(Some(Created::OverLimit(hit)));
    }
    if !write_task(c, task).await? {
        return Ok(None);
    }
    super::inputs::insert(c, &task.inputs).await?;
    let queue_position = match task.claimed {
        None if task.mode == TaskMode::Batch => None,
        None => Some(queued_ahead_of(c, 0, task.created_at_ms, &task.id).await?),
        Some(_) => None,
    };
    Ok(Some(Created::New { task: new_record(task), queue_position }))
}

/// The record of a task just written.
pub fn new_record(task: &NewTask) -> TaskRecord {
    let (status, attempts, started_at) = match &task.claimed {
        Some(_) => (TaskStatus::Running, 1, Some(task.created_at_ms)),
        None => (TaskStatus::Queued, 0, None),
    };
    TaskRecord {
        id: task.id.clone(),
        owner: task.owner.clone(),
        status,
        mode: task.mode,
        model: task.model.clone(),
        request: task.request.clone(),
        result: None,
        error: None,
        attempts,
        created_at_ms: task.created_at_ms,
        started_at_ms: started_at,
        completed_at_ms: None,
        webhook: task.webhook.clone(),
        cancel_requested: false,
        cost_usd: None,
        batch_id: task.batch.as_ref().map(|b| b.batch_id.clone()),
        custom_id: task.batch.as_ref().map(|b| b.custom_id.clone()),
        request_id: task.request_id.clone(),
    }
}

/// Whether a submit can join a group commit: no Idempotency-Key to look up, no limit to check
/// first and no inputs to record (see `write_task` and `group.rs`).
pub fn is_plain(task: &NewTask) -> bool {
    let l = &task.limits;
    task.inputs.is_empty()
        && task.idempotency.is_none()
        && l.max_concurrency.is_none()
        && l.daily_images.is_none()
        && l.budget_usd.is_none()
}

/// Writes a task in one statement: the task, its reservation, the day's usage and the key's
/// place in the round-robin; `false` (nothing written) when its Idempotency-Key is taken by a
/// task committed meanwhile. The day's usage row is written by the main statement after it has
/// read `reserved` (the key's row, locked first): every transaction takes the key's row before
/// the usage row, so none waits on another in a cycle. Group commits send many of these down
/// one connection back to back (see `group.rs`).
pub async fn write_task(c: &impl GenericClient, task: &NewTask) -> Result<bool, StoreError> {
    let stmt = c
        .prepare_cached(
            "WITH written AS (
                 INSERT INTO tasks (id, owner, status, mode, model, request, attempts, webhook_url, webhook_events,
                                    reserved_usd, reserved_images, usage_day, created_at, updated_at, lease_owner,
                                    lease_expires_at, started_at, idempotency_key, request_hash, batch_id,
                                    custom_id, lane, deadline_at, request_id)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15, $16, $17, $18,
                         $19, $20, $21, $22, $23)
                 ON CONFLICT (owner, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                 RETURNING id),
             reserved AS (
                 UPDATE keys SET reserved_usd = reserved_usd + $10
                 WHERE id = $2 AND EXISTS (SELECT 1 FROM written) RETURNING 1),
             turn AS (
                 INSERT INTO queue_owners (owner, last_claim_ms)
                 SELECT $2, 0 WHERE $3::text = 'queued' AND EXISTS (SELECT 1 FROM written)
                 ON CONFLICT (owner) DO NOTHING)
             INSERT INTO usage_daily (owner, day, model, images, cost_usd)
             SELECT $2, $12, $5, $11, 0 WHERE (SELECT COUNT(*) FROM reserved) >= 0 AND EXISTS (SELECT 1 FROM written)
             ON CONFLICT (owner, day, model) DO UPDATE SET images = usage_daily.images + excluded.images
             RETURNING 1",
        )
        .await?;
    let record = new_record(task);
    let events = task.webhook.as_ref().map(|w| serde_json::to_string(&w.events).unwrap_or_else(|_| "[]".into()));
    let (lease_owner, lease_until) = match &task.claimed {
        Some((worker, until)) => (Some(worker.as_str()), Some(*until)),
        None => (None, None),
    };
    let (idem_key, idem_hash) = match &task.idempotency {
        Some((k, h)) => (Some(k.as_str()), Some(h.as_str())),
        None => (None, None),
    };
    let request = task.request.to_string();
    let written = c
        .query_opt(
            &stmt,
            &[
                &task.id,
                &task.owner,
                &record.status.as_str(),
                &task.mode.as_str(),
                &task.model,
                &request,
                &record.attempts,
                &task.webhook.as_ref().map(|w| w.url.as_str()),
                &events,
                &task.reservation.cost_usd,
                &i64::from(task.reservation.images),
                &task.reservation.day,
                &task.created_at_ms,
                &lease_owner,
                &lease_until,
                &record.started_at_ms,
                &idem_key,
                &idem_hash,
                &task.batch.as_ref().map(|b| b.batch_id.as_str()),
                &task.batch.as_ref().map(|b| b.custom_id.as_str()),
                &task.lane,
                &task.deadline_at,
                &task.request_id,
            ],
        )
        .await?;
    Ok(written.is_some())
}

pub async fn find_idempotent(
    c: &impl GenericClient,
    owner: &str,
    key: &str,
    now_ms: i64,
) -> Result<Option<(TaskRecord, String)>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {TASK_COLUMNS}, request_hash FROM tasks WHERE owner = $1 AND idempotency_key = $2 AND created_at > $3"
        ))
        .await?;
    match c.query_opt(&stmt, &[&owner, &key, &(now_ms - IDEMPOTENCY_WINDOW_MS)]).await? {
        Some(r) => {
            let hash: Option<String> = r.try_get("request_hash")?;
            Ok(Some((row_to_task(&r)?, hash.unwrap_or_default())))
        }
        None => Ok(None),
    }
}

pub async fn get(c: &impl GenericClient, owner: &str, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND owner = $2");
    Ok(one_task(c, &sql, &[&id, &owner]).await?.map(|(t, _)| t))
}

/// Tasks by id, whoever owns them (for readers that reached them through an owned record).
pub async fn by_ids(
    c: &impl GenericClient,
    ids: &[String],
) -> Result<std::collections::HashMap<String, TaskRecord>, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ANY($1)");
    let stmt = c.prepare_cached(&sql).await?;
    let mut out = std::collections::HashMap::with_capacity(ids.len());
    for r in c.query(&stmt, &[&ids]).await? {
        let t = row_to_task(&r)?;
        out.insert(t.id.clone(), t);
    }
    Ok(out)
}

/// A page of the owner's tasks. Planned with the page's own values each time (an unnamed
/// statement, still one round trip): a plan cached for any owner, status and cursor sorts a
/// whole key's tasks to return twenty of them once a key holds many.
pub async fn list(
    c: &tokio_postgres::Client,
    owner: &str,
    status: Option<TaskStatus>,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<TaskRecord>, StoreError> {
    use tokio_postgres::types::Type;
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks
         WHERE owner = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    );
    let status = status.map(|s| s.as_str());
    let rows = c
        .query_typed(
            &sql,
            &[(&owner, Type::TEXT), (&status, Type::TEXT), (&before, Type::TEXT), (&i64::from(limit), Type::INT8)],
        )
        .await?;
    rows.iter().map(row_to_task).collect()
}

/// Queued tasks of a lane ahead of (created before) a task, capped at `QUEUE_POSITION_CAP`.
pub async fn queued_ahead_of(
    c: &impl GenericClient,
    lane: i64,
    created_at_ms: i64,
    id: &str,
) -> Result<i64, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM tasks
                 WHERE status = 'queued' AND lane = $4 AND (created_at < $1 OR (created_at = $1 AND id < $2))
                 LIMIT $3) ahead",
        )
        .await?;
    Ok(c.query_one(&stmt, &[&created_at_ms, &id, &QUEUE_POSITION_CAP, &lane]).await?.try_get(0)?)
}

/// Claims a task (see `Store::claim_task`); in the caller's transaction, whose row locks keep
/// replicas claiming at the same moment apart (each skips what another has locked).
pub async fn claim(
    c: &impl GenericClient,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
    batch_lines: bool,
) -> Result<Option<TaskRecord>, StoreError> {
    // Work cut off by a dead worker first: it has waited longest.
    let expired = c
        .prepare_cached(
            "SELECT id FROM tasks WHERE status = 'running' AND lease_expires_at < $1
             ORDER BY lease_expires_at LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .await?;
    let mut id: Option<String> = c.query_opt(&expired, &[&now_ms]).await?.map(|r| r.try_get(0)).transpose()?;
    // Realtime work (lane 0) first; batch lines (lane 1) only when none waits.
    for lane in [0i64, 1] {
        if lane == 1 && !batch_lines {
            break;
        }
        if id.is_none() {
            // Round-robin: the key whose last claim is oldest and has work queued. Its row is
            // locked (claimers at the same moment move on to the next key), then its oldest task.
            let fair = c
                .prepare_cached(
                    "WITH next_owner AS (
                         SELECT q.owner FROM queue_owners q
                         WHERE EXISTS (SELECT 1 FROM tasks t
                                       WHERE t.status = 'queued' AND t.lane = $1 AND t.owner = q.owner)
                         ORDER BY q.last_claim_ms, q.owner LIMIT 1 FOR UPDATE SKIP LOCKED)
                     SELECT id FROM tasks WHERE status = 'queued' AND lane = $1 AND owner = (SELECT owner FROM next_owner)
                     ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
                )
                .await?;
            id = c.query_opt(&fair, &[&lane]).await?.map(|r| r.try_get(0)).transpose()?;
        }
        if id.is_none() {
            // Every key with work is being claimed from right now (or a released task's key has
            // no round-robin row): the oldest task nobody holds.
            let oldest = c
                .prepare_cached(
                    "SELECT id FROM tasks WHERE status = 'queued' AND lane = $1 ORDER BY created_at, id LIMIT 1
                     FOR UPDATE SKIP LOCKED",
                )
                .await?;
            id = c.query_opt(&oldest, &[&lane]).await?.map(|r| r.try_get(0)).transpose()?;
        }
    }
    let Some(id) = id else { return Ok(None) };
    let sql = format!(
        "UPDATE tasks SET status = 'running', lease_owner = $1, lease_expires_at = $2,
                attempts = attempts + 1, started_at = COALESCE(started_at, $3), updated_at = $3
         WHERE id = $4 RETURNING {TASK_COLUMNS}"
    );
    let Some((task, _)) = one_task(c, &sql, &[&worker, &lease_until_ms, &now_ms, &id]).await? else {
        return Ok(None);
    };
    // The key's turn is recorded (a key that had no round-robin row gets one).
    let turn = c
        .prepare_cached(
            "INSERT INTO queue_owners (owner, last_claim_ms) VALUES ($1, $2)
             ON CONFLICT (owner) DO UPDATE SET last_claim_ms = GREATEST(queue_owners.last_claim_ms, excluded.last_claim_ms)",
        )
        .await?;
    c.execute(&turn, &[&task.owner, &now_ms]).await?;
    Ok(Some(task))
}

pub async fn renew(
    c: &impl GenericClient,
    task_id: &str,
    worker: &str,
    lease_until_ms: i64,
) -> Result<Lease, StoreError> {
    let stmt = c
        .prepare_cached(
            "UPDATE tasks SET lease_expires_at = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'running'
             RETURNING cancel_requested",
        )
        .await?;
    let row = c.query_opt(&stmt, &[&lease_until_ms, &task_id, &worker]).await?;
    Ok(match row.map(|r| r.try_get::<_, Option<i64>>(0)).transpose()? {
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

/// Moves a task `worker` holds from running to a terminal state, settles it and writes its
/// webhook, images and exports, in the caller's transaction. `None` (nothing written) when the
/// lease was lost: the fencing token no longer matches.
pub async fn end(
    c: &impl GenericClient,
    task_id: &str,
    worker: &str,
    end: End<'_>,
    now_ms: i64,
    webhook: WebhookFor,
) -> Result<Option<Ended>, StoreError> {
    let (status, result, error, tries, images, actual) = match end {
        End::Completed(r, t, images) => (
            TaskStatus::Completed,
            Some(r),
            None,
            Some(i64::from(t)),
            images,
            Some(images.iter().map(|i| i.cost_usd).sum::<f64>()),
        ),
        End::Failed(e, t) => (TaskStatus::Failed, None, Some(e), Some(i64::from(t)), &[][..], None),
        End::Cancelled => (TaskStatus::Cancelled, None, None, None, &[][..], None),
    };
    let sql = format!(
        "UPDATE tasks SET status = $1, result = $2, error = $3, completed_at = $4, updated_at = $4,
                lease_owner = NULL, lease_expires_at = NULL,
                attempts = CASE WHEN $5::bigint IS NULL THEN attempts ELSE attempts - 1 + $5::bigint END
         WHERE id = $6 AND lease_owner = $7 AND status = 'running' RETURNING {TASK_COLUMNS}"
    );
    let (result, error) = (result.map(Value::to_string), error.map(Value::to_string));
    let p: [&(dyn tokio_postgres::types::ToSql + Sync); 7] =
        [&status.as_str(), &result, &error, &now_ms, &tries, &task_id, &worker];
    let Some((mut task, reserved)) = one_task(c, &sql, &p).await? else { return Ok(None) };
    let delivered = images.len() as u32;
    let cost = crate::domain::pricing::charge(reserved.usd, reserved.images, delivered, actual);
    task.cost_usd = Some(cost);
    let message = webhook(&task);
    let (_, _, exports_owed, _) = try_join4(
        settle(c, &task, &reserved, delivered, cost),
        super::images::insert(c, images),
        async {
            if images.is_empty() {
                Ok(false)
            } else {
                super::exports::owe(c, task_id, &task.owner, images, now_ms).await
            }
        },
        async {
            match &message {
                Some(msg) => insert_outbox(c, (&task.id, &task.owner), msg, now_ms).await,
                None => Ok(()),
            }
        },
    )
    .await?;
    Ok(Some(Ended { task, webhook_queued: message.is_some(), exports_owed }))
}

pub async fn request_cancel(
    c: &impl GenericClient,
    owner: &str,
    id: &str,
    now_ms: i64,
    webhook: WebhookFor,
) -> Result<CancelOutcome, StoreError> {
    let sql = format!(
        "UPDATE tasks SET status = 'cancelled', completed_at = $1, updated_at = $1
         WHERE id = $2 AND owner = $3 AND status = 'queued' RETURNING {TASK_COLUMNS}"
    );
    if let Some((mut task, reserved)) = one_task(c, &sql, &[&now_ms, &id, &owner]).await? {
        task.cost_usd = Some(0.0);
        settle(c, &task, &reserved, 0, 0.0).await?;
        if let Some(msg) = webhook(&task) {
            insert_outbox(c, (&task.id, &task.owner), &msg, now_ms).await?;
        }
        return Ok(CancelOutcome::Cancelled(task));
    }
    let sql = format!(
        "UPDATE tasks SET cancel_requested = COALESCE(cancel_requested, $1), updated_at = $1
         WHERE id = $2 AND owner = $3 AND status = 'running' RETURNING {TASK_COLUMNS}"
    );
    if let Some((task, _)) = one_task(c, &sql, &[&now_ms, &id, &owner]).await? {
        return Ok(CancelOutcome::Requested(task));
    }
    Ok(match get(c, owner, id).await? {
        Some(task) => CancelOutcome::AlreadyEnded(task),
        None => CancelOutcome::NotFound,
    })
}

pub async fn release(c: &impl GenericClient, task_id: &str, worker: &str, now_ms: i64) -> Result<bool, StoreError> {
    // A release is not a failed attempt: the claim's count is given back.
    let stmt = c
        .prepare_cached(
            "UPDATE tasks SET status = 'queued', updated_at = $1, lease_owner = NULL, lease_expires_at = NULL,
                    attempts = GREATEST(0, attempts - 1)
             WHERE id = $2 AND lease_owner = $3 AND status = 'running'",
        )
        .await?;
    Ok(c.execute(&stmt, &[&now_ms, &task_id, &worker]).await? > 0)
}

pub async fn count_unfinished(c: &impl GenericClient) -> Result<i64, StoreError> {
    let stmt = c.prepare_cached("SELECT COUNT(*) FROM tasks WHERE status IN ('queued', 'running')").await?;
    Ok(c.query_one(&stmt, &[]).await?.try_get(0)?)
}

pub async fn queue_stats(c: &impl GenericClient) -> Result<Vec<crate::store::QueueStat>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT lane, status, COUNT(*), MIN(created_at) FROM tasks WHERE status IN ('queued', 'running')
             GROUP BY lane, status",
        )
        .await?;
    c.query(&stmt, &[])
        .await?
        .iter()
        .map(|r| {
            Ok(crate::store::QueueStat {
                lane: r.try_get(0)?,
                status: r.try_get(1)?,
                count: r.try_get(2)?,
                oldest_created_ms: r.try_get(3)?,
            })
        })
        .collect()
}
