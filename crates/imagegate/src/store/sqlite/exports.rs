//! Owed copies of images to their key's export destination (the exporter's queue).

use rusqlite::{Connection, params};

use crate::store::{ExportJob, ExportOutcome, ExportRecord, ImageRecord, StoreError};

/// Owes one export per image when the owner has a destination (`true` then); called inside
/// the transaction that records the images.
pub(super) fn owe(
    conn: &Connection,
    task_id: &str,
    owner: &str,
    images: &[ImageRecord],
    now_ms: i64,
) -> Result<bool, StoreError> {
    let has_destination =
        conn.prepare_cached("SELECT 1 FROM keys WHERE id = ? AND export IS NOT NULL")?.exists([owner])?;
    if !has_destination {
        return Ok(false);
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO exports (image_id, task_id, owner, blob_key, content_type, object_name, status, attempts,
                              next_attempt_at, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
    )?;
    for (index, img) in images.iter().enumerate() {
        let ext = img.blob_key.rsplit_once('.').map(|(_, e)| e).unwrap_or("bin");
        let name = crate::domain::export::object_name(task_id, index, ext);
        insert.execute(params![
            img.id,
            task_id,
            owner,
            img.blob_key,
            img.content_type,
            name,
            now_ms,
            now_ms,
            now_ms
        ])?;
    }
    Ok(true)
}

pub fn claim(
    conn: &Connection,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<ExportJob>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "UPDATE exports SET lease_owner = ?1, lease_expires_at = ?2, updated_at = ?3
         WHERE image_id IN (
             SELECT image_id FROM exports
             WHERE status = 'pending' AND next_attempt_at <= ?3 AND (lease_expires_at IS NULL OR lease_expires_at < ?3)
             ORDER BY next_attempt_at LIMIT ?4)
         RETURNING image_id, task_id, owner, blob_key, content_type, object_name, attempts",
    )?;
    let rows = stmt.query_map(params![worker, lease_until_ms, now_ms, i64::from(limit)], |r| {
        Ok(ExportJob {
            image_id: r.get("image_id")?,
            task_id: r.get("task_id")?,
            owner: r.get("owner")?,
            blob_key: r.get("blob_key")?,
            content_type: r.get("content_type")?,
            object_name: r.get("object_name")?,
            attempts: r.get("attempts")?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn record(conn: &Connection, image_id: &str, outcome: &ExportOutcome, now_ms: i64) -> Result<(), StoreError> {
    let (status, next, bucket, key, error, exported_at) = match outcome {
        ExportOutcome::Exported { bucket, object_key } => {
            ("exported", now_ms, Some(bucket.as_str()), Some(object_key.as_str()), None, Some(now_ms))
        }
        ExportOutcome::RetryAt { at_ms, error } => ("pending", *at_ms, None, None, Some(error.as_str()), None),
        ExportOutcome::GiveUp { error } => ("failed", now_ms, None, None, Some(error.as_str()), None),
    };
    conn.prepare_cached(
        "UPDATE exports SET status = ?, attempts = attempts + 1, next_attempt_at = ?, lease_owner = NULL,
                lease_expires_at = NULL, bucket = COALESCE(?, bucket), object_key = COALESCE(?, object_key),
                last_error = ?, exported_at = COALESCE(?, exported_at), updated_at = ?
         WHERE image_id = ?",
    )?
    .execute(params![status, next, bucket, key, error, exported_at, now_ms, image_id])?;
    Ok(())
}

pub fn next_due(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn
        // A copy being made (leased) is not due before its lease runs out.
        .prepare_cached(
            "SELECT MIN(MAX(next_attempt_at, COALESCE(lease_expires_at, 0))) FROM exports WHERE status = 'pending'",
        )?
        .query_row([], |r| r.get(0))?)
}

pub fn for_tasks(conn: &Connection, owner: &str, task_ids: &[String]) -> Result<Vec<ExportRecord>, StoreError> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    // The ids travel as one JSON array: one statement whatever their number.
    let ids = serde_json::to_string(task_ids).map_err(|source| StoreError::Corrupt { what: "task ids", source })?;
    let mut stmt = conn.prepare_cached(
        "SELECT image_id, task_id, status, attempts, object_name, bucket, object_key, last_error, exported_at
         FROM exports WHERE owner = ? AND task_id IN (SELECT value FROM json_each(?))
         ORDER BY task_id, object_name",
    )?;
    let rows = stmt.query_map(params![owner, ids], |r| {
        Ok(ExportRecord {
            image_id: r.get("image_id")?,
            task_id: r.get("task_id")?,
            status: r.get("status")?,
            attempts: r.get("attempts")?,
            object_name: r.get("object_name")?,
            bucket: r.get("bucket")?,
            object_key: r.get("object_key")?,
            error: r.get("last_error")?,
            exported_at_ms: r.get("exported_at")?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
