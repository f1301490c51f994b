//! Owed copies of images to their key's export destination (the exporter's queue), claimed by
//! any replica with `FOR UPDATE SKIP LOCKED`.

use deadpool_postgres::GenericClient;

use crate::store::{ExportJob, ExportOutcome, ExportRecord, ImageRecord, StoreError};

/// Owes one export per image when the owner has a destination (`true` then); called inside
/// the transaction that records the images.
pub(super) async fn owe(
    c: &impl GenericClient,
    task_id: &str,
    owner: &str,
    images: &[ImageRecord],
    now_ms: i64,
) -> Result<bool, StoreError> {
    let has = c.prepare_cached("SELECT 1 FROM keys WHERE id = $1 AND export IS NOT NULL").await?;
    if c.query_opt(&has, &[&owner]).await?.is_none() {
        return Ok(false);
    }
    let insert = c
        .prepare_cached(
            "INSERT INTO exports (image_id, task_id, owner, blob_key, content_type, object_name, status, attempts,
                                  next_attempt_at, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7)",
        )
        .await?;
    for (index, img) in images.iter().enumerate() {
        let ext = img.blob_key.rsplit_once('.').map(|(_, e)| e).unwrap_or("bin");
        let name = crate::domain::export::object_name(task_id, index, ext);
        c.execute(&insert, &[&img.id, &task_id, &owner, &img.blob_key, &img.content_type, &name, &now_ms]).await?;
    }
    Ok(true)
}

pub async fn claim(
    c: &impl GenericClient,
    worker: &str,
    now_ms: i64,
    lease_until_ms: i64,
    limit: u32,
) -> Result<Vec<ExportJob>, StoreError> {
    let stmt = c
        .prepare_cached(
            "UPDATE exports SET lease_owner = $1, lease_expires_at = $2, updated_at = $3
             WHERE image_id IN (
                 SELECT image_id FROM exports
                 WHERE status = 'pending' AND next_attempt_at <= $3
                       AND (lease_expires_at IS NULL OR lease_expires_at < $3)
                 ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED)
             RETURNING image_id, task_id, owner, blob_key, content_type, object_name, attempts",
        )
        .await?;
    c.query(&stmt, &[&worker, &lease_until_ms, &now_ms, &i64::from(limit)])
        .await?
        .iter()
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

pub async fn record(
    c: &impl GenericClient,
    image_id: &str,
    outcome: &ExportOutcome,
    now_ms: i64,
) -> Result<(), StoreError> {
    let (status, next, bucket, key, error, exported_at) = match outcome {
        ExportOutcome::Exported { bucket, object_key } => {
            ("exported", now_ms, Some(bucket.as_str()), Some(object_key.as_str()), None, Some(now_ms))
        }
        ExportOutcome::RetryAt { at_ms, error } => ("pending", *at_ms, None, None, Some(error.as_str()), None),
        ExportOutcome::GiveUp { error } => ("failed", now_ms, None, None, Some(error.as_str()), None),
    };
    let stmt = c
        .prepare_cached(
            "UPDATE exports SET status = $1, attempts = attempts + 1, next_attempt_at = $2, lease_owner = NULL,
                    lease_expires_at = NULL, bucket = COALESCE($3, bucket), object_key = COALESCE($4, object_key),
                    last_error = $5, exported_at = COALESCE($6, exported_at), updated_at = $7
             WHERE image_id = $8",
        )
        .await?;
    c.execute(&stmt, &[&status, &next, &bucket, &key, &error, &exported_at, &now_ms, &image_id]).await?;
    Ok(())
}

pub async fn next_due(c: &impl GenericClient) -> Result<Option<i64>, StoreError> {
    // A copy being made (leased) is not due before its lease runs out.
    let stmt = c
        .prepare_cached(
            "SELECT MIN(GREATEST(next_attempt_at, COALESCE(lease_expires_at, 0))) FROM exports WHERE status = 'pending'",
        )
        .await?;
    Ok(c.query_one(&stmt, &[]).await?.try_get(0)?)
}

pub async fn for_tasks(
    c: &impl GenericClient,
    owner: &str,
    task_ids: &[String],
) -> Result<Vec<ExportRecord>, StoreError> {
    if task_ids.is_empty() {
        return Ok(Vec::new());
    }
    let stmt = c
        .prepare_cached(
            "SELECT image_id, task_id, status, attempts, object_name, bucket, object_key, last_error, exported_at
             FROM exports WHERE owner = $1 AND task_id = ANY($2) ORDER BY task_id, object_name",
        )
        .await?;
    c.query(&stmt, &[&owner, &task_ids])
        .await?
        .iter()
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
