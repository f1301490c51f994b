//! Input images of tasks (edits, reference images), and their retention sweep.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::store::{InputRecord, StoreError};

const INPUT_COLUMNS: &str =
    "id, task_id, owner, position, blob_key, content_type, sha256, bytes, width, height, created_at, expires_at";

fn row_to_input(r: &Row) -> Result<InputRecord, StoreError> {
    let small = |col: &str| -> Result<u32, StoreError> {
        let v: i64 = r.try_get(col)?;
        u32::try_from(v).map_err(|_| StoreError::BadValue { what: "input dimension", value: v.to_string() })
    };
    Ok(InputRecord {
        id: r.try_get("id")?,
        task_id: r.try_get("task_id")?,
        owner: r.try_get("owner")?,
        position: small("position")?,
        blob_key: r.try_get("blob_key")?,
        content_type: r.try_get("content_type")?,
        sha256: r.try_get("sha256")?,
        bytes: r.try_get("bytes")?,
        width: small("width")?,
        height: small("height")?,
        created_at_ms: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

/// Inside the transaction that writes the task.
pub(super) async fn insert(c: &impl GenericClient, inputs: &[InputRecord]) -> Result<(), StoreError> {
    if inputs.is_empty() {
        return Ok(());
    }
    let stmt = c
        .prepare_cached(&format!(
            "INSERT INTO task_inputs ({INPUT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .await?;
    for i in inputs {
        let (position, width, height) = (i64::from(i.position), i64::from(i.width), i64::from(i.height));
        c.execute(
            &stmt,
            &[
                &i.id,
                &i.task_id,
                &i.owner,
                &position,
                &i.blob_key,
                &i.content_type,
                &i.sha256,
                &i.bytes,
                &width,
                &height,
                &i.created_at_ms,
                &i.expires_at,
            ],
        )
        .await?;
    }
    Ok(())
}

pub async fn of_task(c: &impl GenericClient, owner: &str, task_id: &str) -> Result<Vec<InputRecord>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {INPUT_COLUMNS} FROM task_inputs WHERE task_id = $1 AND owner = $2 ORDER BY position"
        ))
        .await?;
    c.query(&stmt, &[&task_id, &owner]).await?.iter().map(row_to_input).collect()
}

pub async fn expired(
    c: &impl GenericClient,
    now_secs: i64,
    limit: u32,
) -> Result<Vec<(InputRecord, bool)>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {INPUT_COLUMNS},
                    EXISTS (SELECT 1 FROM task_inputs o WHERE o.blob_key = i.blob_key AND o.deleted_at IS NULL
                            AND o.expires_at > $1) AS shared
             FROM task_inputs i WHERE deleted_at IS NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
        ))
        .await?;
    c.query(&stmt, &[&now_secs, &i64::from(limit)])
        .await?
        .iter()
        .map(|r| Ok((row_to_input(r)?, r.try_get::<_, bool>("shared")?)))
        .collect()
}

pub async fn mark_swept(c: &impl GenericClient, input_id: &str, now_ms: i64) -> Result<(), StoreError> {
    let stmt = c.prepare_cached("UPDATE task_inputs SET deleted_at = $1 WHERE id = $2").await?;
    c.execute(&stmt, &[&now_ms, &input_id]).await?;
    Ok(())
}

pub async fn live_blobs(
    c: &impl GenericClient,
    keys: &[String],
) -> Result<std::collections::HashSet<String>, StoreError> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    let stmt = c
        .prepare_cached("SELECT DISTINCT blob_key FROM task_inputs WHERE deleted_at IS NULL AND blob_key = ANY($1)")
        .await?;
    c.query(&stmt, &[&keys]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
}
