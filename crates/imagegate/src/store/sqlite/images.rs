//! Image rows, their stored variants, and the retention sweep.

use sqlx::{Row, SqlitePool, sqlite::SqliteRow};

use crate::store::{ImageRecord, StoreError};

const IMAGE_COLUMNS: &str =
    "id, task_id, owner, blob_key, content_type, bytes, width, height, etag, created_at, expires_at, cost_usd";

fn row_to_image(r: &SqliteRow) -> Result<ImageRecord, sqlx::Error> {
    Ok(ImageRecord {
        id: r.try_get("id")?,
        task_id: r.try_get("task_id")?,
        owner: r.try_get("owner")?,
        blob_key: r.try_get("blob_key")?,
        content_type: r.try_get("content_type")?,
        bytes: r.try_get("bytes")?,
        width: r.try_get("width")?,
        height: r.try_get("height")?,
        etag: r.try_get("etag")?,
        created_at_ms: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        cost_usd: r.try_get("cost_usd")?,
    })
}

pub async fn get(pool: &SqlitePool, id: &str) -> Result<Option<ImageRecord>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?")))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(row_to_image).transpose()?)
}

pub async fn add_variant(
    pool: &SqlitePool,
    image_id: &str,
    blob_key: &str,
    bytes: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO image_variants (image_id, blob_key, bytes, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (image_id, blob_key) DO NOTHING",
    )
    .bind(image_id)
    .bind(blob_key)
    .bind(bytes)
    .bind(now_ms)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn has_variant(pool: &SqlitePool, image_id: &str, blob_key: &str) -> Result<bool, StoreError> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM image_variants WHERE image_id = ? AND blob_key = ?")
        .bind(image_id)
        .bind(blob_key)
        .fetch_optional(pool)
        .await?;
    Ok(found.is_some())
}

pub async fn expired(
    pool: &SqlitePool,
    now_secs: i64,
    limit: u32,
) -> Result<Vec<(ImageRecord, Vec<String>)>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {IMAGE_COLUMNS} FROM images WHERE deleted_at IS NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?"
    )))
    .bind(now_secs)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let img = row_to_image(r)?;
        let variants: Vec<String> = sqlx::query_scalar("SELECT blob_key FROM image_variants WHERE image_id = ?")
            .bind(&img.id)
            .fetch_all(pool)
            .await?;
        out.push((img, variants));
    }
    Ok(out)
}

pub async fn mark_swept(pool: &SqlitePool, image_id: &str, now_ms: i64) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE images SET deleted_at = ? WHERE id = ?").bind(now_ms).bind(image_id).execute(&mut *tx).await?;
    sqlx::query("DELETE FROM image_variants WHERE image_id = ?").bind(image_id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
