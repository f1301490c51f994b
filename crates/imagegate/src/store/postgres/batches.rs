//! Batches and their lines on PostgreSQL. Drivers on several replicas claim due batches with
//! `FOR UPDATE SKIP LOCKED` and a lease: one driver per batch at a time.

use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;

use super::webhooks::insert_outbox;
use crate::domain::batch::BatchStatus;
use crate::store::{BatchLineRecord, BatchProgress, BatchRecord, NewWebhook, StoreError};

const COLUMNS: &str = "id, owner, endpoint, input_file_id, completion_window, status, metadata, errors, webhook_url, \
     total, completed, failed, cost_usd, output_file_id, error_file_id, created_at, in_progress_at, finalizing_at, \
     completed_at, failed_at, expired_at, cancelling_at, cancelled_at, expires_at";

fn json(r: &Row, col: &str, what: &'static str) -> Result<Option<Value>, StoreError> {
    let text: Option<String> = r.try_get(col)?;
    text.map(|t| serde_json::from_str(&t).map_err(|source| StoreError::Corrupt { what, source })).transpose()
}

fn row_to_batch(r: &Row) -> Result<BatchRecord, StoreError> {
    let status: String = r.try_get("status")?;
    Ok(BatchRecord {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        endpoint: r.try_get("endpoint")?,
        input_file_id: r.try_get("input_file_id")?,
        completion_window: r.try_get("completion_window")?,
        status: BatchStatus::parse(&status).ok_or(StoreError::BadValue { what: "batch status", value: status })?,
        metadata: json(r, "metadata", "batch metadata")?,
        errors: json(r, "errors", "batch errors")?,
        webhook_url: r.try_get("webhook_url")?,
        total: r.try_get("total")?,
        completed: r.try_get("completed")?,
        failed: r.try_get("failed")?,
        cost_usd: r.try_get("cost_usd")?,
        output_file_id: r.try_get("output_file_id")?,
        error_file_id: r.try_get("error_file_id")?,
        created_at: r.try_get("created_at")?,
        in_progress_at: r.try_get("in_progress_at")?,
        finalizing_at: r.try_get("finalizing_at")?,
        completed_at: r.try_get("completed_at")?,
        failed_at: r.try_get("failed_at")?,
        expired_at: r.try_get("expired_at")?,
        cancelling_at: r.try_get("cancelling_at")?,
        cancelled_at: r.try_get("cancelled_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

fn text(v: &Option<Value>) -> Option<String> {
    v.as_ref().map(Value::to_string)
}

pub async fn insert(c: &impl GenericClient, b: &BatchRecord) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "INSERT INTO batches ({COLUMNS}, next_check_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21,
                     $22, $23, $24, 0)"
        ))
        .await?;
    c.execute(
        &stmt,
        &[
            &b.id,
            &b.owner,
            &b.endpoint,
            &b.input_file_id,
            &b.completion_window,
            &b.status.as_str(),
            &text(&b.metadata),
            &text(&b.errors),
            &b.webhook_url,
            &b.total,
            &b.completed,
            &b.failed,
            &b.cost_usd,
            &b.output_file_id,
            &b.error_file_id,
            &b.created_at,
            &b.in_progress_at,
            &b.finalizing_at,
            &b.completed_at,
            &b.failed_at,
            &b.expired_at,
            &b.cancelling_at,
            &b.cancelled_at,
            &b.expires_at,
        ],
    )
    .await?;
    Ok(())
}

pub async fn get(c: &impl GenericClient, owner: &str, id: &str) -> Result<Option<BatchRecord>, StoreError> {
    let stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM batches WHERE id = $1 AND owner = $2")).await?;
    c.query_opt(&stmt, &[&id, &owner]).await?.as_ref().map(row_to_batch).transpose()
}

pub async fn list(
    c: &impl GenericClient,
    owner: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<BatchRecord>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM batches WHERE owner = $1 AND ($2::text IS NULL OR id < $2) ORDER BY id DESC LIMIT $3"
        ))
        .await?;
    c.query(&stmt, &[&owner, &after, &i64::from(limit)]).await?.iter().map(row_to_batch).collect()
}

pub async fn cancel(
    c: &impl GenericClient,
    owner: &str,
    id: &str,
    now_secs: i64,
) -> Result<Option<BatchRecord>, StoreError> {
    let stmt = c
        .prepare_cached(
            "UPDATE batches SET status = 'cancelling', cancelling_at = $1, next_check_at = 0
             WHERE id = $2 AND owner = $3 AND status IN ('validating', 'in_progress', 'finalizing')",
        )
        .await?;
    c.execute(&stmt, &[&now_secs, &id, &owner]).await?;
    get(c, owner, id).await
}

pub async fn claim(
    c: &impl GenericClient,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Option<BatchRecord>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "UPDATE batches SET lease_owner = $1, lease_until = $2
             WHERE id = (SELECT id FROM batches
                         WHERE status IN ('validating', 'in_progress', 'finalizing', 'cancelling')
                               AND next_check_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
                         ORDER BY next_check_at LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}"
        ))
        .await?;
    c.query_opt(&stmt, &[&worker, &lease_until_ms, &now_ms]).await?.as_ref().map(row_to_batch).transpose()
}

pub async fn renew(c: &impl GenericClient, id: &str, worker: &str, lease_until_ms: i64) -> Result<bool, StoreError> {
    let stmt = c.prepare_cached("UPDATE batches SET lease_until = $1 WHERE id = $2 AND lease_owner = $3").await?;
    Ok(c.execute(&stmt, &[&lease_until_ms, &id, &worker]).await? == 1)
}

pub async fn save(
    c: &impl GenericClient,
    b: &BatchRecord,
    worker: &str,
    next_check_at_ms: i64,
    webhook: Option<&NewWebhook>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let stmt = c
        .prepare_cached(
            "UPDATE batches SET
                 status = CASE WHEN status = 'cancelling' AND $1 IN ('validating', 'in_progress', 'finalizing')
                               THEN status ELSE $1 END,
                 errors = COALESCE($2, errors), total = $3, completed = $4, failed = $5, cost_usd = $6,
                 output_file_id = COALESCE($7, output_file_id), error_file_id = COALESCE($8, error_file_id),
                 in_progress_at = COALESCE(in_progress_at, $9), finalizing_at = COALESCE(finalizing_at, $10),
                 completed_at = COALESCE(completed_at, $11), failed_at = COALESCE(failed_at, $12),
                 expired_at = COALESCE(expired_at, $13), cancelled_at = COALESCE(cancelled_at, $14),
                 lease_owner = NULL, lease_until = NULL,
                 next_check_at = CASE WHEN status = 'cancelling' AND $1 IN ('validating', 'in_progress', 'finalizing') THEN 0
                                      ELSE $15::bigint END
             WHERE id = $16 AND lease_owner = $17",
        )
        .await?;
    let changed = c
        .execute(
            &stmt,
            &[
                &b.status.as_str(),
                &text(&b.errors),
                &b.total,
                &b.completed,
                &b.failed,
                &b.cost_usd,
                &b.output_file_id,
                &b.error_file_id,
                &b.in_progress_at,
                &b.finalizing_at,
                &b.completed_at,
                &b.failed_at,
                &b.expired_at,
                &b.cancelled_at,
                &next_check_at_ms,
                &b.id,
                &worker,
            ],
        )
        .await?;
    if changed == 1
        && let Some(msg) = webhook
    {
        insert_outbox(c, (&b.id, &b.owner), msg, now_ms).await?;
    }
    Ok(changed == 1)
}

pub async fn add_line(
    c: &impl GenericClient,
    batch_id: &str,
    line: i64,
    custom_id: &str,
    task_id: Option<&str>,
    error: Option<&Value>,
) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO batch_lines (batch_id, line, custom_id, task_id, error) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (batch_id, line) DO NOTHING",
        )
        .await?;
    c.execute(&stmt, &[&batch_id, &line, &custom_id, &task_id, &error.map(Value::to_string)]).await?;
    Ok(())
}

pub async fn progress(c: &impl GenericClient, batch_id: &str) -> Result<BatchProgress, StoreError> {
    let lines = c
        .prepare_cached(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE error IS NOT NULL) FROM batch_lines WHERE batch_id = $1",
        )
        .await?;
    let row = c.query_one(&lines, &[&batch_id]).await?;
    let mut p = BatchProgress { lines: row.try_get(0)?, failed: row.try_get(1)?, ..Default::default() };
    let tasks = c
        .prepare_cached(
            "SELECT status, COUNT(*), COALESCE(SUM(cost_usd), 0)::float8 FROM tasks WHERE batch_id = $1 GROUP BY status",
        )
        .await?;
    for r in c.query(&tasks, &[&batch_id]).await? {
        let status: String = r.try_get(0)?;
        let n: i64 = r.try_get(1)?;
        p.cost_usd += r.try_get::<_, f64>(2)?;
        match status.as_str() {
            "completed" => p.completed += n,
            "failed" | "cancelled" => p.failed += n,
            _ => p.open += n,
        }
    }
    Ok(p)
}

pub async fn lines(
    c: &impl GenericClient,
    batch_id: &str,
    after: i64,
    limit: u32,
) -> Result<Vec<BatchLineRecord>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT line, custom_id, task_id, error FROM batch_lines WHERE batch_id = $1 AND line > $2
             ORDER BY line LIMIT $3",
        )
        .await?;
    let rows = c.query(&stmt, &[&batch_id, &after, &i64::from(limit)]).await?;
    let ids: Vec<String> = rows.iter().filter_map(|r| r.try_get::<_, Option<String>>(2).ok().flatten()).collect();
    let mut tasks = super::tasks::by_ids(c, &ids).await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let task_id: Option<String> = r.try_get(2)?;
        let error = json(&r, "error", "batch line error")?;
        out.push(BatchLineRecord {
            line: r.try_get(0)?,
            custom_id: r.try_get(1)?,
            task: task_id.and_then(|id| tasks.remove(&id)),
            error,
        });
    }
    Ok(out)
}

pub async fn open_tasks(
    c: &impl GenericClient,
    batch_id: &str,
    limit: u32,
) -> Result<Vec<(String, String)>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT owner, id FROM tasks WHERE batch_id = $1 AND status IN ('queued', 'running')
             AND cancel_requested IS NULL LIMIT $2",
        )
        .await?;
    let rows = c.query(&stmt, &[&batch_id, &i64::from(limit)]).await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}
