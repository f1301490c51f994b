//! Upstream batch jobs and the lines they hold, on PostgreSQL.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::domain::batch::JobStep;
use crate::store::{StoreError, TaskRecord, UpstreamJob};

const COLUMNS: &str = "id, batch_id, owner, channel, model, state, input_file, upstream_name, error, lines, created_at";

fn row_to_job(r: &Row) -> Result<UpstreamJob, StoreError> {
    let state: String = r.try_get("state")?;
    Ok(UpstreamJob {
        id: r.try_get("id")?,
        batch_id: r.try_get("batch_id")?,
        owner: r.try_get("owner")?,
        channel: r.try_get("channel")?,
        model: r.try_get("model")?,
        step: JobStep::parse(&state).ok_or(StoreError::BadValue { what: "job state", value: state })?,
        input_file: r.try_get("input_file")?,
        upstream_name: r.try_get("upstream_name")?,
        error: r.try_get("error")?,
        lines: r.try_get("lines")?,
        created_at_ms: r.try_get("created_at")?,
    })
}

pub async fn create(
    c: &impl GenericClient,
    job: &UpstreamJob,
    model: &str,
    limit: u32,
    lease_until_ms: i64,
) -> Result<Vec<TaskRecord>, StoreError> {
    let claim = format!("job:{}", job.id);
    let take = c
        .prepare_cached(
            "UPDATE tasks SET status = 'running', job_id = $1, lease_owner = $2, lease_expires_at = $3,
                    attempts = attempts + 1, started_at = COALESCE(started_at, $4), updated_at = $4
             WHERE id IN (SELECT id FROM tasks
                          WHERE batch_id IS NOT DISTINCT FROM $5::text AND lane = 2 AND status = 'queued' AND model = $6
                          ORDER BY created_at, id LIMIT $7 FOR UPDATE SKIP LOCKED)
             RETURNING id",
        )
        .await?;
    let taken = c
        .query(&take, &[&job.id, &claim, &lease_until_ms, &job.created_at_ms, &job.batch_id, &model, &i64::from(limit)])
        .await?;
    if taken.is_empty() {
        return Ok(Vec::new());
    }
    let insert = c
        .prepare_cached(&format!(
            "INSERT INTO upstream_jobs ({COLUMNS}, next_check_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, 0)"
        ))
        .await?;
    c.execute(
        &insert,
        &[
            &job.id,
            &job.batch_id,
            &job.owner,
            &job.channel,
            &job.model,
            &job.step.as_str(),
            &job.input_file,
            &job.upstream_name,
            &job.error,
            &(taken.len() as i64),
            &job.created_at_ms,
        ],
    )
    .await?;
    tasks(c, &job.id).await
}

pub async fn claim(
    c: &impl GenericClient,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<Option<UpstreamJob>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "UPDATE upstream_jobs SET lease_owner = $1, lease_until = $2
             WHERE id = (SELECT id FROM upstream_jobs
                         WHERE state <> 'done' AND next_check_at <= $3 AND (lease_until IS NULL OR lease_until < $3)
                         ORDER BY next_check_at LIMIT 1 FOR UPDATE SKIP LOCKED)
             RETURNING {COLUMNS}"
        ))
        .await?;
    c.query_opt(&stmt, &[&worker, &lease_until_ms, &now_ms]).await?.as_ref().map(row_to_job).transpose()
}

pub async fn save(
    c: &impl GenericClient,
    job: &UpstreamJob,
    worker: &str,
    next_check_at_ms: i64,
) -> Result<bool, StoreError> {
    let stmt = c
        .prepare_cached(
            "UPDATE upstream_jobs SET state = $1, input_file = $2, upstream_name = $3, error = $4, channel = $8,
                    lease_owner = NULL, lease_until = NULL, next_check_at = $5
             WHERE id = $6 AND lease_owner = $7",
        )
        .await?;
    let n = c
        .execute(
            &stmt,
            &[
                &job.step.as_str(),
                &job.input_file,
                &job.upstream_name,
                &job.error,
                &next_check_at_ms,
                &job.id,
                &worker,
                &job.channel,
            ],
        )
        .await?;
    Ok(n == 1)
}

pub async fn tasks(c: &impl GenericClient, job_id: &str) -> Result<Vec<TaskRecord>, StoreError> {
    let stmt = c.prepare_cached("SELECT id FROM tasks WHERE job_id = $1 ORDER BY created_at, id").await?;
    let ids: Vec<String> = c.query(&stmt, &[&job_id]).await?.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
    let mut found = super::tasks::by_ids(c, &ids).await?;
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}

pub async fn waiting_models(c: &impl GenericClient, batch_id: &str) -> Result<Vec<String>, StoreError> {
    let stmt = c
        .prepare_cached("SELECT DISTINCT model FROM tasks WHERE batch_id = $1 AND lane = 2 AND status = 'queued'")
        .await?;
    c.query(&stmt, &[&batch_id]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

pub async fn flex_waiting(c: &impl GenericClient) -> Result<Vec<(String, i64, i64)>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT model, COUNT(*), MIN(created_at) FROM tasks
             WHERE lane = 2 AND batch_id IS NULL AND status = 'queued' GROUP BY model",
        )
        .await?;
    c.query(&stmt, &[]).await?.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?))).collect()
}

pub async fn flex_fallback(
    c: &impl GenericClient,
    now_secs: i64,
    margin_secs: i64,
    limit: u32,
) -> Result<Vec<TaskRecord>, StoreError> {
    let stmt = c
        .prepare_cached(
            "UPDATE tasks SET lane = 0, status = 'queued', job_id = NULL, lease_owner = NULL, lease_expires_at = NULL
             WHERE id IN (SELECT id FROM tasks
                          WHERE lane = 2 AND batch_id IS NULL AND status IN ('queued', 'running')
                                AND deadline_at - $2 <= $1
                          ORDER BY deadline_at LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING id",
        )
        .await?;
    let ids: Vec<String> = c
        .query(&stmt, &[&now_secs, &margin_secs, &i64::from(limit)])
        .await?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let mut found = super::tasks::by_ids(c, &ids).await?;
    Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
}

pub async fn renew(c: &impl GenericClient, id: &str, worker: &str, lease_until_ms: i64) -> Result<bool, StoreError> {
    let stmt = c.prepare_cached("UPDATE upstream_jobs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3").await?;
    Ok(c.execute(&stmt, &[&lease_until_ms, &id, &worker]).await? == 1)
}

pub async fn release(c: &impl GenericClient, job_id: &str, task_ids: &[String]) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "WITH released AS (
                 UPDATE tasks SET status = 'queued', job_id = NULL, lease_owner = NULL, lease_expires_at = NULL,
                        attempts = GREATEST(0, attempts - 1)
                 WHERE id = ANY($1) AND job_id = $2 AND status = 'running' RETURNING 1)
             UPDATE upstream_jobs SET lines = lines - (SELECT COUNT(*) FROM released) WHERE id = $2",
        )
        .await?;
    c.execute(&stmt, &[&task_ids, &job_id]).await?;
    Ok(())
}
