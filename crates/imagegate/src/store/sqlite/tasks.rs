//! Task rows: creation with idempotency and limits, the fair lease queue, cancel, and ending a
//! task together with the webhook and exports it owes. Each function runs inside the caller's
//! transaction (see `db.rs`).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::webhooks::insert_outbox;
use crate::domain::task::{TaskMode, TaskStatus};
use crate::store::{
    CancelOutcome, Created, Ended, IDEMPOTENCY_WINDOW_MS, ImageRecord, Lease, LimitHit, NewTask, StoreError,
    TaskRecord, WebhookFor, WebhookTarget,
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
    let text: Option<String> = r.get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|source| StoreError::Corrupt { what, source })).transpose()
}

fn row_to_task(r: &Row) -> Result<TaskRecord, StoreError> {
    let status: String = r.get("status")?;
    let mode: String = r.get("mode")?;
    let webhook_url: Option<String> = r.get("webhook_url")?;
    let events: Option<Value> = json_column(r, "webhook_events", "webhook events")?;
    let cancel: Option<i64> = r.get("cancel_requested")?;
    Ok(TaskRecord {
        id: r.get("id")?,
        owner: r.get("owner")?,
        status: TaskStatus::parse(&status).ok_or(StoreError::BadValue { what: "task status", value: status })?,
        mode: TaskMode::parse(&mode),
        model: r.get("model")?,
        request: json_column(r, "request", "task request")?.unwrap_or(Value::Null),
        result: json_column(r, "result", "task result")?,
        error: json_column(r, "error", "task error")?,
        attempts: r.get("attempts")?,
        created_at_ms: r.get("created_at")?,
        started_at_ms: r.get("started_at")?,
        completed_at_ms: r.get("completed_at")?,
        webhook: webhook_url.map(|url| WebhookTarget {
            url,
            events: events.and_then(|e| serde_json::from_value(e).ok()).unwrap_or_default(),
        }),
        cancel_requested: cancel.is_some(),
        cost_usd: r.get("cost_usd")?,
        batch_id: r.get("batch_id")?,
        custom_id: r.get("custom_id")?,
        request_id: r.get("request_id")?,
    })
}

fn row_to_reserved(r: &Row) -> Result<Reserved, StoreError> {
    Ok(Reserved { usd: r.get("reserved_usd")?, images: r.get("reserved_images")?, day: r.get("usage_day")? })
}

/// The first row of a task query (with its reservation), if any.
fn one_task(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<(TaskRecord, Reserved)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    match rows.next()? {
        Some(r) => Ok(Some((row_to_task(r)?, row_to_reserved(r)?))),
        None => Ok(None),
    }
}

/// Settles a task's reservation when it ends with `delivered` images: the key is charged for
/// those (their `actual` price when known, else pro rata of the reservation), the rest of the
/// reservation is given back.
fn settle(
    conn: &Connection,
    task: &TaskRecord,
    reserved: &Reserved,
    delivered: u32,
    actual: Option<f64>,
) -> Result<f64, StoreError> {
    let cost = crate::domain::pricing::charge(reserved.usd, reserved.images, delivered, actual);
    let delivered = i64::from(delivered).min(reserved.images);
    conn.prepare_cached(
        "UPDATE keys SET reserved_usd = MAX(0, reserved_usd - ?), spent_usd = spent_usd + ? WHERE id = ?",
    )?
    .execute(params![reserved.usd, cost, task.owner])?;
    if let Some(day) = &reserved.day {
        conn.prepare_cached(
            "UPDATE usage_daily SET images = images - ?, cost_usd = cost_usd + ? WHERE owner = ? AND day = ? AND model = ?",
        )?
        .execute(params![reserved.images - delivered, cost, task.owner, day, task.model])?;
    }
    conn.prepare_cached("UPDATE tasks SET cost_usd = ? WHERE id = ?")?.execute(params![cost, task.id])?;
    Ok(cost)
}

/// Checks the key's limits inside the creating transaction; `Some` names the one passed.
fn check_limits(conn: &Connection, task: &NewTask) -> Result<Option<LimitHit>, StoreError> {
    let l = &task.limits;
    if let Some(limit) = l.max_concurrency {
        let open: i64 = conn
            .prepare_cached(
                "SELECT COUNT(*) FROM tasks WHERE owner = ? AND status IN ('queued', 'running') AND lane = 0",
            )?
            .query_row([&task.owner], |r| r.get(0))?;
        if open >= i64::from(limit) {
            return Ok(Some(LimitHit::Concurrency { limit }));
        }
    }
    if let Some(limit) = l.daily_images {
        let used: i64 = conn
            .prepare_cached("SELECT COALESCE(SUM(images), 0) FROM usage_daily WHERE owner = ? AND day = ?")?
            .query_row(params![task.owner, task.reservation.day], |r| r.get(0))?;
        if used + i64::from(task.reservation.images) > i64::from(limit) {
            return Ok(Some(LimitHit::DailyImages { limit, used }));
        }
    }
    if let Some(limit) = l.budget_usd {
        let used: Option<f64> = conn
            .prepare_cached("SELECT spent_usd + reserved_usd FROM keys WHERE id = ?")?
            .query_row([&task.owner], |r| r.get(0))
            .optional()?;
        let used = used.unwrap_or(0.0);
        if used + task.reservation.cost_usd > limit + 1e-9 {
            return Ok(Some(LimitHit::Budget { limit, used }));
        }
    }
    Ok(None)
}

/// What the writes of one group commit share (see `group.rs`).
#[derive(Default)]
pub struct BatchState {
    /// The last task queued in this transaction `(created_at, id)` and the queued tasks ahead
    /// of it. A new task nearly always goes to the back of the queue, right after it, so its
    /// position is one more: the (capped) count runs once per batch rather than once per submit.
    last_queued: Option<((i64, String), i64)>,
}

pub fn create(conn: &Connection, task: NewTask, batch: &mut BatchState) -> Result<Created, StoreError> {
    if let Some((key, hash)) = &task.idempotency {
        let existing: Option<(TaskRecord, Option<String>)> = {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS}, request_hash FROM tasks WHERE owner = ? AND idempotency_key = ?"
            ))?;
            let mut rows = stmt.query(params![task.owner, key])?;
            match rows.next()? {
                Some(r) => Some((row_to_task(r)?, r.get("request_hash")?)),
                None => None,
            }
        };
        if let Some((found, stored_hash)) = existing {
            if found.created_at_ms + IDEMPOTENCY_WINDOW_MS > task.created_at_ms {
                return Ok(if stored_hash.as_deref() == Some(hash.as_str()) {
                    Created::Existing(found)
                } else {
                    Created::Conflict
                });
            }
            // Past the window: the key is free again; the old task keeps its record.
            conn.prepare_cached("UPDATE tasks SET idempotency_key = NULL WHERE id = ?")?.execute([&found.id])?;
        }
    }
    if let Some(hit) = check_limits(conn, &task)? {
        return Ok(Created::OverLimit(hit));
    }
    let (idem_key, idem_hash) = match &task.idempotency {
        Some((k, h)) => (Some(k.as_str()), Some(h.as_str())),
        None => (None, None),
    };
    let events = task.webhook.as_ref().map(|w| serde_json::to_string(&w.events).unwrap_or_else(|_| "[]".into()));
    let (status, lease_owner, lease_until, attempts, started_at) = match &task.claimed {
        Some((worker, until)) => {
            (TaskStatus::Running, Some(worker.as_str()), Some(*until), 1, Some(task.created_at_ms))
        }
        None => (TaskStatus::Queued, None, None, 0, None),
    };
    conn.prepare_cached(
        "INSERT INTO tasks (id, owner, status, mode, model, request, attempts, idempotency_key, request_hash,
                            webhook_url, webhook_events, reserved_usd, reserved_images, usage_day, created_at, updated_at,
                            lease_owner, lease_expires_at, started_at, batch_id, custom_id, lane, deadline_at,
                            request_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        task.id,
        task.owner,
        status.as_str(),
        task.mode.as_str(),
        task.model,
        task.request.to_string(),
        attempts,
        idem_key,
        idem_hash,
        task.webhook.as_ref().map(|w| w.url.as_str()),
        events,
        task.reservation.cost_usd,
        task.reservation.images,
        task.reservation.day,
        task.created_at_ms,
        task.created_at_ms,
        lease_owner,
        lease_until,
        started_at,
        task.batch.as_ref().map(|b| b.batch_id.as_str()),
        task.batch.as_ref().map(|b| b.custom_id.as_str()),
        task.lane,
        task.deadline_at,
        task.request_id
    ])?;
    super::inputs::insert(conn, &task.inputs)?;
    conn.prepare_cached("UPDATE keys SET reserved_usd = reserved_usd + ? WHERE id = ?")?
        .execute(params![task.reservation.cost_usd, task.owner])?;
    conn.prepare_cached(
        "INSERT INTO usage_daily (owner, day, model, images, cost_usd) VALUES (?, ?, ?, ?, 0)
         ON CONFLICT (owner, day, model) DO UPDATE SET images = images + excluded.images",
    )?
    .execute(params![task.owner, task.reservation.day, task.model, task.reservation.images])?;
    let queue_position = match status {
        // Batch lines are not counted ahead of anyone, nor counted themselves.
        TaskStatus::Queued if task.mode == TaskMode::Batch => None,
        TaskStatus::Queued => {
            let place = (task.created_at_ms, task.id.clone());
            let ahead = match batch.last_queued.take() {
                Some((last, n)) if last < place => (n + 1).min(crate::store::QUEUE_POSITION_CAP),
                // Created before a task already queued in this batch: count.
                _ => queued_ahead_of(conn, 0, task.created_at_ms, &task.id)?,
            };
            batch.last_queued = Some((place, ahead));
            Some(ahead)
        }
        _ => None,
    };
    let task = TaskRecord {
        id: task.id,
        owner: task.owner,
        status,
        mode: task.mode,
        model: task.model,
        request: task.request,
        result: None,
        error: None,
        attempts,
        created_at_ms: task.created_at_ms,
        started_at_ms: started_at,
        completed_at_ms: None,
        webhook: task.webhook,
        cancel_requested: false,
        cost_usd: None,
        batch_id: task.batch.as_ref().map(|b| b.batch_id.clone()),
        custom_id: task.batch.map(|b| b.custom_id),
        request_id: task.request_id,
    };
    Ok(Created::New { task, queue_position })
}

pub fn find_idempotent(
    conn: &Connection,
    owner: &str,
    key: &str,
    now_ms: i64,
) -> Result<Option<(TaskRecord, String)>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS}, request_hash FROM tasks WHERE owner = ? AND idempotency_key = ? AND created_at > ?"
    ))?;
    let mut rows = stmt.query(params![owner, key, now_ms - IDEMPOTENCY_WINDOW_MS])?;
    match rows.next()? {
        Some(r) => {
            let hash: Option<String> = r.get("request_hash")?;
            Ok(Some((row_to_task(r)?, hash.unwrap_or_default())))
        }
        None => Ok(None),
    }
}

pub fn get(conn: &Connection, owner: &str, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ? AND owner = ?");
    Ok(one_task(conn, &sql, params![id, owner])?.map(|(t, _)| t))
}

/// A task by id, whoever owns it (for readers that reached it through an owned record).
pub fn by_id(conn: &Connection, id: &str) -> Result<Option<TaskRecord>, StoreError> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?");
    Ok(one_task(conn, &sql, params![id])?.map(|(t, _)| t))
}

pub fn list(
    conn: &Connection,
    owner: &str,
    status: Option<TaskStatus>,
    before: Option<&str>,
    limit: u32,
) -> Result<Vec<TaskRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {TASK_COLUMNS} FROM tasks
         WHERE owner = ?1 AND (?2 IS NULL OR status = ?2) AND (?3 IS NULL OR id < ?3)
         ORDER BY id DESC LIMIT ?4"
    ))?;
    let mut rows = stmt.query(params![owner, status.map(|s| s.as_str()), before, i64::from(limit)])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(row_to_task(r)?);
    }
    Ok(out)
}

pub fn queue_position(conn: &Connection, task: &TaskRecord) -> Result<i64, StoreError> {
    queued_ahead_of(conn, task.mode.lane(), task.created_at_ms, &task.id)
}

/// Queued tasks of its lane ahead of (created before) a task, capped at `QUEUE_POSITION_CAP`.
fn queued_ahead_of(conn: &Connection, lane: i64, created_at_ms: i64, id: &str) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT COUNT(*) FROM (SELECT 1 FROM tasks
                 WHERE status = 'queued' AND lane = ?4 AND (created_at < ?1 OR (created_at = ?1 AND id < ?2)) LIMIT ?3)",
        )?
        .query_row(params![created_at_ms, id, crate::store::QUEUE_POSITION_CAP, lane], |r| r.get(0))?)
}

pub fn claim(
    conn: &Connection,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
    batch_lines: bool,
) -> Result<Option<TaskRecord>, StoreError> {
    // Work cut off by a dead worker first: it has waited longest.
    let expired: Option<String> = conn
        .prepare_cached(
            "SELECT id FROM tasks WHERE status = 'running' AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT 1",
        )?
        .query_row([now_ms], |r| r.get(0))
        .optional()?;
    let mut id = expired;
    // Realtime work (lane 0) first; batch lines (lane 1) only when none waits.
    for lane in [0i64, 1] {
        if id.is_some() || (lane == 1 && !batch_lines) {
            break;
        }
        id = conn
            .prepare_cached(
                "SELECT t.id FROM tasks t
                 WHERE t.status = 'queued' AND t.lane = ?1 AND t.owner = (
                     SELECT q.owner FROM (SELECT DISTINCT owner FROM tasks WHERE status = 'queued' AND lane = ?1) q
                     LEFT JOIN queue_owners o ON o.owner = q.owner
                     ORDER BY COALESCE(o.last_claim_ms, 0), q.owner LIMIT 1)
                 ORDER BY t.created_at, t.id LIMIT 1",
            )?
            .query_row([lane], |r| r.get(0))
            .optional()?;
    }
    let Some(id) = id else { return Ok(None) };
    let sql = format!(
        "UPDATE tasks SET status = 'running', lease_owner = ?, lease_expires_at = ?,
                attempts = attempts + 1, started_at = COALESCE(started_at, ?), updated_at = ?
         WHERE id = ? RETURNING {TASK_COLUMNS}"
    );
    let Some((task, _)) = one_task(conn, &sql, params![worker, lease_until_ms, now_ms, now_ms, id])? else {
        return Ok(None);
    };
    conn.prepare_cached(
        "INSERT INTO queue_owners (owner, last_claim_ms) VALUES (?, ?)
         ON CONFLICT (owner) DO UPDATE SET last_claim_ms = excluded.last_claim_ms",
    )?
    .execute(params![task.owner, now_ms])?;
    Ok(Some(task))
}

pub fn renew(conn: &Connection, task_id: &str, worker: &str, lease_until_ms: i64) -> Result<Lease, StoreError> {
    let row: Option<Option<i64>> = conn
        .prepare_cached(
            "UPDATE tasks SET lease_expires_at = ? WHERE id = ? AND lease_owner = ? AND status = 'running'
             RETURNING cancel_requested",
        )?
        .query_row(params![lease_until_ms, task_id, worker], |r| r.get(0))
        .optional()?;
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

/// Moves a task `worker` holds from running to a terminal state, settles it and writes its
/// webhook, images and exports. `None` (nothing written) when the lease was lost.
pub fn end(
    conn: &Connection,
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
        "UPDATE tasks SET status = ?1, result = ?2, error = ?3, completed_at = ?4, updated_at = ?4,
                lease_owner = NULL, lease_expires_at = NULL,
                attempts = CASE WHEN ?5 IS NULL THEN attempts ELSE attempts - 1 + ?5 END
         WHERE id = ?6 AND lease_owner = ?7 AND status = 'running' RETURNING {TASK_COLUMNS}"
    );
    let p = params![
        status.as_str(),
        result.map(Value::to_string),
        error.map(Value::to_string),
        now_ms,
        tries,
        task_id,
        worker
    ];
    let Some((mut task, reserved)) = one_task(conn, &sql, p)? else { return Ok(None) };
    task.cost_usd = Some(settle(conn, &task, &reserved, images.len() as u32, actual)?);
    for img in images {
        super::images::insert(conn, img)?;
    }
    let exports_owed = !images.is_empty() && super::exports::owe(conn, task_id, &task.owner, images, now_ms)?;
    let message = webhook(&task);
    if let Some(msg) = &message {
        insert_outbox(conn, (&task.id, &task.owner), msg, now_ms)?;
    }
    Ok(Some(Ended { task, webhook_queued: message.is_some(), exports_owed }))
}

/// A completion, owned so that it can join a group commit.
pub struct Completion {
    pub task_id: String,
    pub worker: String,
    pub result: Value,
    pub images: Vec<ImageRecord>,
    pub tries: u32,
    pub now_ms: i64,
    pub webhook: WebhookFor,
}

/// Ends a task as completed; `None` when the lease was lost (nothing written).
pub fn complete(conn: &Connection, c: Completion) -> Result<Option<Ended>, StoreError> {
    let how = End::Completed(&c.result, c.tries, &c.images);
    end(conn, &c.task_id, &c.worker, how, c.now_ms, c.webhook)
}

/// The hot writes, which share group commits (see `group.rs`).
pub enum Write {
    Create(Box<NewTask>),
    Claim { worker: String, now_ms: i64, lease_until_ms: i64, batch_lines: bool },
    Complete(Completion),
}

pub enum Written {
    Created(Created),
    Claimed(Option<TaskRecord>),
    Completed(Option<Ended>),
}

pub fn apply(conn: &Connection, w: Write, batch: &mut BatchState) -> Result<Written, StoreError> {
    Ok(match w {
        Write::Create(t) => Written::Created(create(conn, *t, batch)?),
        Write::Claim { worker, now_ms, lease_until_ms, batch_lines } => {
            // The queue's front may move: count afresh for the next submit.
            batch.last_queued = None;
            Written::Claimed(claim(conn, &worker, now_ms, lease_until_ms, batch_lines)?)
        }
        Write::Complete(c) => Written::Completed(complete(conn, c)?),
    })
}

pub fn request_cancel(
    conn: &Connection,
    owner: &str,
    id: &str,
    now_ms: i64,
    webhook: WebhookFor,
) -> Result<CancelOutcome, StoreError> {
    let sql = format!(
        "UPDATE tasks SET status = 'cancelled', completed_at = ?1, updated_at = ?1
         WHERE id = ?2 AND owner = ?3 AND status = 'queued' RETURNING {TASK_COLUMNS}"
    );
    if let Some((mut task, reserved)) = one_task(conn, &sql, params![now_ms, id, owner])? {
        task.cost_usd = Some(settle(conn, &task, &reserved, 0, None)?);
        if let Some(msg) = webhook(&task) {
            insert_outbox(conn, (&task.id, &task.owner), &msg, now_ms)?;
        }
        return Ok(CancelOutcome::Cancelled(task));
    }
    let sql = format!(
        "UPDATE tasks SET cancel_requested = COALESCE(cancel_requested, ?1), updated_at = ?1
         WHERE id = ?2 AND owner = ?3 AND status = 'running' RETURNING {TASK_COLUMNS}"
    );
    if let Some((task, _)) = one_task(conn, &sql, params![now_ms, id, owner])? {
        return Ok(CancelOutcome::Requested(task));
    }
    Ok(match get(conn, owner, id)? {
        Some(task) => CancelOutcome::AlreadyEnded(task),
        None => CancelOutcome::NotFound,
    })
}

pub fn release(conn: &Connection, task_id: &str, worker: &str, now_ms: i64) -> Result<bool, StoreError> {
    // A release is not a failed attempt: the claim's count is given back.
    let n = conn
        .prepare_cached(
            "UPDATE tasks SET status = 'queued', updated_at = ?, lease_owner = NULL, lease_expires_at = NULL,
                    attempts = MAX(0, attempts - 1)
             WHERE id = ? AND lease_owner = ? AND status = 'running'",
        )?
        .execute(params![now_ms, task_id, worker])?;
    Ok(n > 0)
}

pub fn count_unfinished(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn
        .prepare_cached("SELECT COUNT(*) FROM tasks WHERE status IN ('queued', 'running')")?
        .query_row([], |r| r.get(0))?)
}

pub fn queue_stats(conn: &Connection) -> Result<Vec<crate::store::QueueStat>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT lane, status, COUNT(*), MIN(created_at) FROM tasks WHERE status IN ('queued', 'running')
             GROUP BY lane, status",
        )?
        .query_map([], |r| {
            Ok(crate::store::QueueStat {
                lane: r.get(0)?,
                status: r.get(1)?,
                count: r.get(2)?,
                oldest_created_ms: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?)
}
