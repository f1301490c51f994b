//! Upstream batch jobs and the lines they hold.

use rusqlite::{Connection, Row, params};

use crate::domain::batch::JobStep;
use crate::store::{StoreError, TaskRecord, UpstreamJob};

use super::tasks::by_id;

const COLUMNS: &str = "id, batch_id, owner, channel, model, state, input_file, upstream_name, error, lines, created_at";

fn row_to_job(r: &Row) -> Result<UpstreamJob, StoreError> {
    let state: String = r.get("state")?;
    Ok(UpstreamJob {
        id: r.get("id")?,
        batch_id: r.get("batch_id")?,
        owner: r.get("owner")?,
        channel: r.get("channel")?,
        model: r.get("model")?,
        step: JobStep::parse(&state).ok_or(StoreError::BadValue { what: "job state", value: state })?,
        input_file: r.get("input_file")?,
        upstream_name: r.get("upstream_name")?,
        error: r.get("error")?,
        lines: r.get("lines")?,
        created_at_ms: r.get("created_at")?,
    })
}

pub fn create(
    conn: &Connection,
    job: &UpstreamJob,
    model: &str,
    limit: u32,
    lease_until_ms: i64,
) -> Result<Vec<TaskRecord>, StoreError> {
    let claim = format!("job:{}", job.id);
    let ids: Vec<String> = conn
        .prepare_cached(
            "UPDATE tasks SET status = 'running', job_id = ?1, lease_owner = ?2, lease_expires_at = ?3,
                    attempts = attempts + 1, started_at = COALESCE(started_at, ?4), updated_at = ?4
             WHERE id IN (SELECT id FROM tasks
                          WHERE (batch_id = ?5 OR (?5 IS NULL AND batch_id IS NULL)) AND lane = 2
                                AND status = 'queued' AND model = ?6
                          ORDER BY created_at, id LIMIT ?7)
             RETURNING id",
        )?
        .query_map(params![job.id, claim, lease_until_ms, job.created_at_ms, job.batch_id, model, limit], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    conn.prepare_cached(&format!(
        "INSERT INTO upstream_jobs ({COLUMNS}, next_check_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)"
    ))?
    .execute(params![
        job.id,
        job.batch_id,
        job.owner,
        job.channel,
        job.model,
        job.step.as_str(),
        job.input_file,
        job.upstream_name,
        job.error,
        ids.len() as i64,
        job.created_at_ms
    ])?;
    tasks(conn, &job.id)
}

pub fn claim(
    conn: &Connection,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Option<UpstreamJob>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "UPDATE upstream_jobs SET lease_owner = ?1, lease_until = ?2
         WHERE id = (SELECT id FROM upstream_jobs
                     WHERE state <> 'done' AND next_check_at <= ?3 AND (lease_until IS NULL OR lease_until < ?3)
                     ORDER BY next_check_at LIMIT 1)
         RETURNING {COLUMNS}"
    ))?;
    let mut rows = stmt.query(params![worker, lease_until_ms, now_ms])?;
    rows.next()?.map(row_to_job).transpose()
}

pub fn save(conn: &Connection, job: &UpstreamJob, worker: &str, next_check_at_ms: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached(
            "UPDATE upstream_jobs SET state = ?, input_file = ?, upstream_name = ?, error = ?, channel = ?,
                    lease_owner = NULL, lease_until = NULL, next_check_at = ?
             WHERE id = ? AND lease_owner = ?",
        )?
        .execute(params![
            job.step.as_str(),
            job.input_file,
            job.upstream_name,
            job.error,
            job.channel,
            next_check_at_ms,
            job.id,
            worker
        ])?
        == 1)
}

pub fn tasks(conn: &Connection, job_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
    let ids: Vec<String> = conn
        .prepare_cached("SELECT id FROM tasks WHERE job_id = ? ORDER BY created_at, id")?
        .query_map([job_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(t) = by_id(conn, &id)? {
            out.push(t);
        }
    }
    Ok(out)
}

pub fn waiting_models(conn: &Connection, batch_id: &str) -> Result<Vec<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT DISTINCT model FROM tasks WHERE batch_id = ? AND lane = 2 AND status = 'queued'")?
        .query_map([batch_id], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

pub fn flex_waiting(conn: &Connection) -> Result<Vec<(String, i64, i64)>, StoreError> {
    Ok(conn
        .prepare_cached(
            "SELECT model, COUNT(*), MIN(created_at) FROM tasks
             WHERE lane = 2 AND batch_id IS NULL AND status = 'queued' GROUP BY model",
        )?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?)
}

pub fn flex_fallback(
    conn: &Connection,
    now_secs: i64,
    margin_secs: i64,
    limit: u32,
) -> Result<Vec<TaskRecord>, StoreError> {
    let ids: Vec<String> = conn
        .prepare_cached(
            "UPDATE tasks SET lane = 0, status = 'queued', job_id = NULL, lease_owner = NULL, lease_expires_at = NULL
             WHERE id IN (SELECT id FROM tasks
                          WHERE lane = 2 AND batch_id IS NULL AND status IN ('queued', 'running')
                                AND deadline_at - ?2 <= ?1
                          ORDER BY deadline_at LIMIT ?3)
             RETURNING id",
        )?
        .query_map(params![now_secs, margin_secs, limit], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(t) = by_id(conn, &id)? {
            out.push(t);
        }
    }
    Ok(out)
}

pub fn renew(conn: &Connection, id: &str, worker: &str, lease_until_ms: i64) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("UPDATE upstream_jobs SET lease_until = ? WHERE id = ? AND lease_owner = ?")?
        .execute(params![lease_until_ms, id, worker])?
        == 1)
}

pub fn release(conn: &Connection, job_id: &str, task_ids: &[String]) -> Result<(), StoreError> {
    let mut released = 0i64;
    for id in task_ids {
        released += conn
            .prepare_cached(
                "UPDATE tasks SET status = 'queued', job_id = NULL, lease_owner = NULL, lease_expires_at = NULL,
                        attempts = MAX(0, attempts - 1)
                 WHERE id = ? AND job_id = ? AND status = 'running'",
            )?
            .execute(params![id, job_id])? as i64;
    }
    conn.prepare_cached("UPDATE upstream_jobs SET lines = lines - ? WHERE id = ?")?
        .execute(params![released, job_id])?;
    Ok(())
}
