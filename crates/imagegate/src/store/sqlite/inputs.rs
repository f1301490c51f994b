//! Input images of tasks (edits, reference images), and their retention sweep.

use rusqlite::{Connection, Row, params};

use crate::store::{InputRecord, StoreError};

const INPUT_COLUMNS: &str =
    "id, task_id, owner, position, blob_key, content_type, sha256, bytes, width, height, created_at, expires_at";

fn row_to_input(r: &Row) -> rusqlite::Result<InputRecord> {
    Ok(InputRecord {
        id: r.get("id")?,
        task_id: r.get("task_id")?,
        owner: r.get("owner")?,
        position: r.get("position")?,
        blob_key: r.get("blob_key")?,
        content_type: r.get("content_type")?,
        sha256: r.get("sha256")?,
        bytes: r.get("bytes")?,
        width: r.get("width")?,
        height: r.get("height")?,
        created_at_ms: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
    })
}

/// Inside the transaction that writes the task.
pub(super) fn insert(conn: &Connection, inputs: &[InputRecord]) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "INSERT INTO task_inputs ({INPUT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))?;
    for i in inputs {
        stmt.execute(params![
            i.id,
            i.task_id,
            i.owner,
            i.position,
            i.blob_key,
            i.content_type,
            i.sha256,
            i.bytes,
            i.width,
            i.height,
            i.created_at_ms,
            i.expires_at
        ])?;
    }
    Ok(())
}

pub fn of_task(conn: &Connection, owner: &str, task_id: &str) -> Result<Vec<InputRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {INPUT_COLUMNS} FROM task_inputs WHERE task_id = ? AND owner = ? ORDER BY position"
        ))?
        .query_map(params![task_id, owner], row_to_input)?
        .collect::<Result<_, _>>()?)
}

pub fn expired(conn: &Connection, now_secs: i64, limit: u32) -> Result<Vec<(InputRecord, bool)>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {INPUT_COLUMNS},
                EXISTS (SELECT 1 FROM task_inputs o WHERE o.blob_key = i.blob_key AND o.deleted_at IS NULL
                        AND o.expires_at > ?1) AS shared
         FROM task_inputs i WHERE deleted_at IS NULL AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![now_secs, i64::from(limit)], |r| Ok((row_to_input(r)?, r.get("shared")?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn mark_swept(conn: &Connection, input_id: &str, now_ms: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE task_inputs SET deleted_at = ? WHERE id = ?")?.execute(params![now_ms, input_id])?;
    Ok(())
}

pub fn live_blobs(conn: &Connection, keys: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
    if keys.is_empty() {
        return Ok(Default::default());
    }
    // The keys travel as one JSON array: one statement whatever their number.
    let list = serde_json::to_string(keys).map_err(|source| StoreError::Corrupt { what: "blob keys", source })?;
    Ok(conn
        .prepare_cached(
            "SELECT DISTINCT blob_key FROM task_inputs
             WHERE deleted_at IS NULL AND blob_key IN (SELECT value FROM json_each(?))",
        )?
        .query_map([list], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}
