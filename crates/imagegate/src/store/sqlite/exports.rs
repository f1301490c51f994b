//! Owed copies of images to their key's export destination (the exporter's queue).

use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use crate::store::{ExportJob, ExportOutcome, ExportRecord, ImageRecord, StoreError};

/// Owes one export per image when the owner has a destination; called inside the transaction
/// that records the images.
pub(super) async fn owe(
    tx: &mut Transaction<'_, Sqlite>,
    task_id: &str,
    owner: &str,
    images: &[ImageRecord],
    now_ms: i64,
) -> Result<(), StoreError> {
    for (index, img) in images.iter().enumerate() {
        let ext = img.blob_key.rsplit_once('.').map(|(_, e)| e).unwrap_or("bin");
        sqlx::query(
            "INSERT INTO exports (image_id, task_id, owner, blob_key, content_type, object_name, status, attempts,
                                  next_attempt_at, created_at, updated_at)
             SELECT ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ? FROM keys WHERE id = ? AND export IS NOT NULL",
        )
        .bind(&img.id)
        .bind(task_id)
        .bind(owner)
        .bind(&img.blob_key)
        .bind(&img.content_type)
        .bind(crate::domain::export::object_name(task_id, index, ext))
        .bind(now_ms)
        .bind(now_ms)
        .bind(now_ms)
        .bind(owner)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

pub async fn claim(
    pool: &SqlitePool,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<ExportJob>, StoreError> {
    let rows = sqlx::query(
        "UPDATE exports SET lease_owner = ?, lease_expires_at = ?, updated_at = ?
         WHERE image_id IN (
             SELECT image_id FROM exports
             WHERE status = 'pending' AND next_attempt_at <= ? AND (lease_expires_at IS NULL OR lease_expires_at < ?)
             ORDER BY next_attempt_at LIMIT ?)
         RETURNING image_id, task_id, owner, blob_key, content_type, object_name, attempts",
    )
    .bind(worker)
    .bind(lease_until_ms)
    .bind(now_ms)
    .bind(now_ms)
    .bind(now_ms)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ExportJob {
                image_id: r.try_get("image_id")?,
                task_id: r.try_get("task_id")?,
                owner: r.try_get("owner")?,
                blob_key: r.try_get("blob_key")?,
                content_type: r.try_get("content_type")?,
                object_name: r.try_get("object_name")?,
                attempts: r.try_get("attempts")?,
            })
        })
        .collect()
}

pub async fn record(pool: &SqlitePool, image_id: &str, outcome: &ExportOutcome, now_ms: i64) -> Result<(), StoreError> {
    let (status, next, bucket, key, error, exported_at) = match outcome {
        ExportOutcome::Exported { bucket, object_key } => {
            ("exported", now_ms, Some(bucket.as_str()), Some(object_key.as_str()), None, Some(now_ms))
        }
        ExportOutcome::RetryAt { at_ms, error } => ("pending", *at_ms, None, None, Some(error.as_str()), None),
        ExportOutcome::GiveUp { error } => ("failed", now_ms, None, None, Some(error.as_str()), None),
    };
    sqlx::query(
        "UPDATE exports SET status = ?, attempts = attempts + 1, next_attempt_at = ?, lease_owner = NULL,
                lease_expires_at = NULL, bucket = COALESCE(?, bucket), object_key = COALESCE(?, object_key),
                last_error = ?, exported_at = COALESCE(?, exported_at), updated_at = ?
         WHERE image_id = ?",
    )
    .bind(status)
    .bind(next)
    .bind(bucket)
    .bind(key)
    .bind(error)
    .bind(exported_at)
    .bind(now_ms)
    .bind(image_id)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn next_due(pool: &SqlitePool) -> Result<Option<i64>, StoreError> {
    let due: Option<i64> =
        sqlx::query_scalar("SELECT MIN(next_attempt_at) FROM exports WHERE status = 'pending'").fetch_one(pool).await?;
    Ok(due)
}

pub async fn for_tasks(pool: &SqlitePool, owner: &str, task_ids: &[String]) -> Result<Vec<ExportRecord>, StoreError> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    // The ids travel as one JSON array: one statement whatever their number.
    let ids = serde_json::to_string(task_ids).map_err(|source| StoreError::Corrupt { what: "task ids", source })?;
    let rows = sqlx::query(
        "SELECT image_id, task_id, status, attempts, object_name, bucket, object_key, last_error, exported_at
         FROM exports WHERE owner = ? AND task_id IN (SELECT value FROM json_each(?))
         ORDER BY task_id, object_name",
    )
    .bind(owner)
    .bind(ids)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ExportRecord {
                image_id: r.try_get("image_id")?,
                task_id: r.try_get("task_id")?,
                status: r.try_get("status")?,
                attempts: r.try_get("attempts")?,
                object_name: r.try_get("object_name")?,
                bucket: r.try_get("bucket")?,
                object_key: r.try_get("object_key")?,
                error: r.try_get("last_error")?,
                exported_at_ms: r.try_get("exported_at")?,
            })
        })
        .collect()
}
