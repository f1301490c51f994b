//! Batches and their lines.

use rusqlite::{Connection, Row, params};
use serde_json::Value;

use super::webhooks::insert_outbox;
use crate::domain::batch::BatchStatus;
use crate::store::{BatchLineRecord, BatchProgress, BatchRecord, NewWebhook, StoreError};

const COLUMNS: &str = "id, owner, endpoint, input_file_id, completion_window, status, metadata, errors, webhook_url, \
     total, completed, failed, cost_usd, output_file_id, error_file_id, created_at, in_progress_at, finalizing_at, \
     completed_at, failed_at, expired_at, cancelling_at, cancelled_at, expires_at";

/// Statuses a driver still has work in.
const ACTIVE: &str = "('validating', 'in_progress', 'finalizing', 'cancelling')";

fn json(r: &Row, col: &str, what: &'static str) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = r.get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|source| StoreError::Corrupt { what, source })).transpose()
}

fn row_to_batch(r: &Row) -> Result<BatchRecord, StoreError> {
    let status: String = r.get("status")?;
    Ok(BatchRecord {
        id: r.get("id")?,
        owner: r.get("owner")?,
        endpoint: r.get("endpoint")?,
        input_file_id: r.get("input_file_id")?,
        completion_window: r.get("completion_window")?,
        status: BatchStatus::parse(&status).ok_or(StoreError::BadValue { what: "batch status", value: status })?,
        metadata: json(r, "metadata", "batch metadata")?,
        errors: json(r, "errors", "batch errors")?,
        webhook_url: r.get("webhook_url")?,
        total: r.get("total")?,
        completed: r.get("completed")?,
        failed: r.get("failed")?,
        cost_usd: r.get("cost_usd")?,
        output_file_id: r.get("output_file_id")?,
        error_file_id: r.get("error_file_id")?,
        created_at: r.get("created_at")?,
        in_progress_at: r.get("in_progress_at")?,
        finalizing_at: r.get("finalizing_at")?,
        completed_at: r.get("completed_at")?,
        failed_at: r.get("failed_at")?,
        expired_at: r.get("expired_at")?,
        cancelling_at: r.get("cancelling_at")?,
        cancelled_at: r.get("cancelled_at")?,
        expires_at: r.get("expires_at")?,
    })
}

fn one(conn: &Connection, sql: &str, p: impl rusqlite::Params) -> Result<Option<BatchRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(p)?;
    rows.next()?.map(row_to_batch).transpose()
}

fn text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

pub fn insert(conn: &Connection, b: &BatchRecord) -> Result<(), StoreError> {
    conn.prepare_cached(&format!(
        "INSERT INTO batches ({COLUMNS}, next_check_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"
    ))?
    .execute(params![
        b.id,
        b.owner,
        b.endpoint,
        b.input_file_id,
        b.completion_window,
        b.status.as_str(),
        text(&b.metadata),
        text(&b.errors),
        b.webhook_url,
        b.total,
        b.completed,
        b.failed,
        b.cost_usd,
        b.output_file_id,
        b.error_file_id,
        b.created_at,
        b.in_progress_at,
        b.finalizing_at,
        b.completed_at,
        b.failed_at,
        b.expired_at,
        b.cancelling_at,
        b.cancelled_at,
        b.expires_at
    ])?;
    Ok(())
}

pub fn get(conn: &Connection, owner: &str, id: &str) -> Result<Option<BatchRecord>, StoreError> {
    one(conn, &format!("SELECT {COLUMNS} FROM batches WHERE id = ? AND owner = ?"), params![id, owner])
}

pub fn list(conn: &Connection, owner: &str, after: Option<&str>, limit: u32) -> Result<Vec<BatchRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM batches WHERE owner = ?1 AND (?2 IS NULL OR id < ?2) ORDER BY id DESC LIMIT ?3"
    ))?;
    let mut rows = stmt.query(params![owner, after, limit])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(row_to_batch(r)?);
    }
    Ok(out)
}

pub fn cancel(conn: &Connection, owner: &str, id: &str, now_secs: i64) -> Result<Option<BatchRecord>, StoreError> {
    conn.prepare_cached(
        "UPDATE batches SET status = 'cancelling', cancelling_at = ?, next_check_at = 0
         WHERE id = ? AND owner = ? AND status IN ('validating', 'in_progress', 'finalizing')",
    )?
    .execute(params![now_secs, id, owner])?;
    get(conn, owner, id)
}

pub fn claim(
    conn: &Connection,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Option<BatchRecord>, StoreError> {
    one(
        conn,
        &format!(
            "UPDATE batches SET lease_owner = ?1, lease_until = ?2
             WHERE id = (SELECT id FROM batches
                         WHERE status IN {ACTIVE} AND next_check_at <= ?3 AND (lease_until IS NULL OR lease_until < ?3)
                         ORDER BY next_check_at LIMIT 1)
             RETURNING {COLUMNS}"
        ),
        params![worker, lease_until_ms, now_ms],
    )
}

pub fn renew(conn: &Connection, id: &str, worker: &str, lease_until_ms: i64) -> Result<bool, StoreError> {
    Ok(conn.prepare_cached("UPDATE batches SET lease_until = ? WHERE id = ? AND lease_owner = ?")?.execute(params![
        lease_until_ms,
        id,
        worker
    ])? == 1)
}

pub fn save(
    conn: &Connection,
    b: &BatchRecord,
    worker: &str,
    next_check_at_ms: i64,
    webhook: Option<&NewWebhook>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let changed = conn
        .prepare_cached(
            "UPDATE batches SET
                 status = CASE WHEN status = 'cancelling' AND ?1 IN ('validating', 'in_progress', 'finalizing')
                               THEN status ELSE ?1 END,
                 errors = COALESCE(?2, errors), total = ?3, completed = ?4, failed = ?5, cost_usd = ?6,
                 output_file_id = COALESCE(?7, output_file_id), error_file_id = COALESCE(?8, error_file_id),
                 in_progress_at = COALESCE(in_progress_at, ?9), finalizing_at = COALESCE(finalizing_at, ?10),
                 completed_at = COALESCE(completed_at, ?11), failed_at = COALESCE(failed_at, ?12),
                 expired_at = COALESCE(expired_at, ?13), cancelled_at = COALESCE(cancelled_at, ?14),
                 lease_owner = NULL, lease_until = NULL,
                 next_check_at = CASE WHEN status = 'cancelling' AND ?1 IN ('validating', 'in_progress', 'finalizing') THEN 0
                                      ELSE ?15 END
             WHERE id = ?16 AND lease_owner = ?17",
        )?
        .execute(params![
            b.status.as_str(),
            text(&b.errors),
            b.total,
            b.completed,
            b.failed,
            b.cost_usd,
            b.output_file_id,
            b.error_file_id,
            b.in_progress_at,
            b.finalizing_at,
            b.completed_at,
            b.failed_at,
            b.expired_at,
            b.cancelled_at,
            next_check_at_ms,
            b.id,
            worker
        ])?;
    if changed == 1
        && let Some(msg) = webhook
    {
        insert_outbox(conn, (&b.id, &b.owner), msg, now_ms)?;
    }
    Ok(changed == 1)
}

pub fn add_line(
    conn: &Connection,
    batch_id: &str,
    line: i64,
    custom_id: &str,
    task_id: Option<&str>,
    error: Option<&Value>,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO batch_lines (batch_id, line, custom_id, task_id, error) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT (batch_id, line) DO NOTHING",
    )?
    .execute(params![batch_id, line, custom_id, task_id, error.map(Value::to_string)])?;
    Ok(())
}

pub fn progress(conn: &Connection, batch_id: &str) -> Result<BatchProgress, StoreError> {
    let (lines, refused): (i64, i64) = conn
        .prepare_cached("SELECT COUNT(*), COALESCE(SUM(error IS NOT NULL), 0) FROM batch_lines WHERE batch_id = ?")?
        .query_row([batch_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut p = BatchProgress { lines, failed: refused, ..Default::default() };
    let mut stmt = conn.prepare_cached(
        "SELECT status, COUNT(*), COALESCE(SUM(cost_usd), 0) FROM tasks WHERE batch_id = ? GROUP BY status",
    )?;
    let mut rows = stmt.query([batch_id])?;
    while let Some(r) = rows.next()? {
        let status: String = r.get(0)?;
        let n: i64 = r.get(1)?;
        p.cost_usd += r.get::<_, f64>(2)?;
        match status.as_str() {
            "completed" => p.completed += n,
            "failed" | "cancelled" => p.failed += n,
            _ => p.open += n,
        }
    }
    Ok(p)
}

pub fn lines(conn: &Connection, batch_id: &str, after: i64, limit: u32) -> Result<Vec<BatchLineRecord>, StoreError> {
    let rows: Vec<(i64, String, Option<String>, Option<String>)> = conn
        .prepare_cached(
            "SELECT line, custom_id, task_id, error FROM batch_lines WHERE batch_id = ? AND line > ?
             ORDER BY line LIMIT ?",
        )?
        .query_map(params![batch_id, after, limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(rows.len());
    for (line, custom_id, task_id, error) in rows {
        let task = match task_id {
            Some(id) => super::tasks::by_id(conn, &id)?,
            None => None,
        };
        let error = error
            .map(|t| {
                serde_json::from_str(&t).map_err(|source| StoreError::Corrupt { what: "batch line error", source })
            })
            .transpose()?;
        out.push(BatchLineRecord { line, custom_id, task, error });
    }
    Ok(out)
}

pub fn open_tasks(conn: &Connection, batch_id: &str, limit: u32) -> Result<Vec<(String, String)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT owner, id FROM tasks WHERE batch_id = ? AND status IN ('queued', 'running')
             AND cancel_requested IS NULL LIMIT ?",
        )?
        .query_map(params![batch_id, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}
