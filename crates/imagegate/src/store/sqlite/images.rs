//! Image rows, their stored variants, and the retention sweep.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::{ImageRecord, StoreError};

const IMAGE_COLUMNS: &str =
    "id, task_id, owner, blob_key, content_type, bytes, width, height, etag, created_at, expires_at, cost_usd";

fn row_to_image(r: &Row) -> rusqlite::Result<ImageRecord> {
    Ok(ImageRecord {
        id: r.get("id")?,
        task_id: r.get("task_id")?,
        owner: r.get("owner")?,
        blob_key: r.get("blob_key")?,
        content_type: r.get("content_type")?,
        bytes: r.get("bytes")?,
        width: r.get("width")?,
        height: r.get("height")?,
        etag: r.get("etag")?,
        created_at_ms: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        cost_usd: r.get("cost_usd")?,
    })
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<ImageRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = ?"))?
        .query_row([id], row_to_image)
        .optional()?)
}

/// Inside the transaction that completes the task.
pub(super) fn insert(conn: &Connection, img: &ImageRecord) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO images (id, task_id, owner, blob_key, content_type, bytes, width, height, etag, created_at,
                             expires_at, cost_usd)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        img.id,
        img.task_id,
        img.owner,
        img.blob_key,
        img.content_type,
        img.bytes,
        img.width,
        img.height,
        img.etag,
        img.created_at_ms,
        img.expires_at,
        img.cost_usd
    ])?;
    Ok(())
}

pub fn add_variant(
    conn: &Connection,
    image_id: &str,
    blob_key: &str,
    bytes: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO image_variants (image_id, blob_key, bytes, created_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (image_id, blob_key) DO NOTHING",
    )?
    .execute(params![image_id, blob_key, bytes, now_ms])?;
    Ok(())
}

pub fn live(conn: &Connection, ids: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    // The ids travel as one JSON array: one statement whatever their number.
    let list = serde_json::to_string(ids).map_err(|source| StoreError::Corrupt { what: "image ids", source })?;
    Ok(conn
        .prepare_cached("SELECT id FROM images WHERE deleted_at IS NULL AND id IN (SELECT value FROM json_each(?))")?
        .query_map([list], |r| r.get(0))?
        .collect::<Result<_, _>>()?)
}

pub fn variants(conn: &Connection, image_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT blob_key, bytes FROM image_variants WHERE image_id = ?")?
        .query_map([image_id], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?)
}

pub fn expired(conn: &Connection, now_secs: i64, limit: u32) -> Result<Vec<(ImageRecord, Vec<String>)>, StoreError> {
    let images: Vec<ImageRecord> = conn
        .prepare_cached(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE deleted_at IS NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?"
        ))?
        .query_map(params![now_secs, i64::from(limit)], row_to_image)?
        .collect::<Result<_, _>>()?;
    let mut variants_of = conn.prepare_cached("SELECT blob_key FROM image_variants WHERE image_id = ?")?;
    let mut out = Vec::with_capacity(images.len());
    for img in images {
        let variants: Vec<String> = variants_of.query_map([&img.id], |r| r.get(0))?.collect::<Result<_, _>>()?;
        out.push((img, variants));
    }
    Ok(out)
}

pub fn mark_swept(conn: &Connection, image_id: &str, now_ms: i64) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE images SET deleted_at = ? WHERE id = ?")?.execute(params![now_ms, image_id])?;
    conn.prepare_cached("DELETE FROM image_variants WHERE image_id = ?")?.execute([image_id])?;
    Ok(())
}
