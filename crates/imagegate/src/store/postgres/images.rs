//! Image rows, their stored variants, and the retention sweep.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::store::{ImageRecord, StoreError};

const IMAGE_COLUMNS: &str =
    "id, task_id, owner, blob_key, content_type, bytes, width, height, etag, created_at, expires_at, cost_usd";

fn row_to_image(r: &Row) -> Result<ImageRecord, StoreError> {
    let dimension = |col: &str| -> Result<u32, StoreError> {
        let v: i64 = r.try_get(col)?;
        u32::try_from(v).map_err(|_| StoreError::BadValue { what: "image dimension", value: v.to_string() })
    };
    Ok(ImageRecord {
        id: r.try_get("id")?,
        task_id: r.try_get("task_id")?,
        owner: r.try_get("owner")?,
        blob_key: r.try_get("blob_key")?,
        content_type: r.try_get("content_type")?,
        bytes: r.try_get("bytes")?,
        width: dimension("width")?,
        height: dimension("height")?,
        etag: r.try_get("etag")?,
        created_at_ms: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
        cost_usd: r.try_get("cost_usd")?,
    })
}

pub async fn get(c: &impl GenericClient, id: &str) -> Result<Option<ImageRecord>, StoreError> {
    let stmt = c.prepare_cached(&format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1")).await?;
    c.query_opt(&stmt, &[&id]).await?.map(|r| row_to_image(&r)).transpose()
}

/// Inside the transaction that completes the task: all the task's images in one statement.
pub(super) async fn insert(c: &impl GenericClient, images: &[ImageRecord]) -> Result<(), StoreError> {
    if images.is_empty() {
        return Ok(());
    }
    let stmt = c
        .prepare_cached(
            "INSERT INTO images (id, task_id, owner, blob_key, content_type, bytes, width, height, etag, created_at,
                                 expires_at, cost_usd)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[],
                                  $7::bigint[], $8::bigint[], $9::text[], $10::bigint[], $11::bigint[],
                                  $12::float8[])",
        )
        .await?;
    let col = |f: fn(&ImageRecord) -> String| images.iter().map(f).collect::<Vec<_>>();
    let num = |f: fn(&ImageRecord) -> i64| images.iter().map(f).collect::<Vec<_>>();
    let costs: Vec<f64> = images.iter().map(|i| i.cost_usd).collect();
    c.execute(
        &stmt,
        &[
            &col(|i| i.id.clone()),
            &col(|i| i.task_id.clone()),
            &col(|i| i.owner.clone()),
            &col(|i| i.blob_key.clone()),
            &col(|i| i.content_type.clone()),
            &num(|i| i.bytes),
            &num(|i| i64::from(i.width)),
            &num(|i| i64::from(i.height)),
            &col(|i| i.etag.clone()),
            &num(|i| i.created_at_ms),
            &num(|i| i.expires_at),
            &costs,
        ],
    )
    .await?;
    Ok(())
}

pub async fn add_variant(
    c: &impl GenericClient,
    image_id: &str,
    blob_key: &str,
    bytes: i64,
    now_ms: i64,
) -> Result<(), StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO image_variants (image_id, blob_key, bytes, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (image_id, blob_key) DO NOTHING",
        )
        .await?;
    c.execute(&stmt, &[&image_id, &blob_key, &bytes, &now_ms]).await?;
    Ok(())
}

pub async fn live(c: &impl GenericClient, ids: &[String]) -> Result<std::collections::HashSet<String>, StoreError> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let stmt = c.prepare_cached("SELECT id FROM images WHERE deleted_at IS NULL AND id = ANY($1)").await?;
    c.query(&stmt, &[&ids]).await?.iter().map(|r| Ok(r.try_get(0)?)).collect()
}

pub async fn variants(c: &impl GenericClient, image_id: &str) -> Result<Vec<(String, i64)>, StoreError> {
    let stmt = c.prepare_cached("SELECT blob_key, bytes FROM image_variants WHERE image_id = $1").await?;
    c.query(&stmt, &[&image_id]).await?.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

pub async fn expired(
    c: &impl GenericClient,
    now_secs: i64,
    limit: u32,
) -> Result<Vec<(ImageRecord, Vec<String>)>, StoreError> {
    // One statement: each image with its variants' keys aggregated.
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {IMAGE_COLUMNS},
                    ARRAY(SELECT v.blob_key FROM image_variants v WHERE v.image_id = images.id) AS variant_keys
             FROM images WHERE deleted_at IS NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
        ))
        .await?;
    c.query(&stmt, &[&now_secs, &i64::from(limit)])
        .await?
        .iter()
        .map(|r| Ok((row_to_image(r)?, r.try_get::<_, Vec<String>>("variant_keys")?)))
        .collect()
}

pub async fn mark_swept(c: &impl GenericClient, image_id: &str, now_ms: i64) -> Result<(), StoreError> {
    // One statement, so one round trip and atomic without a transaction.
    let stmt = c
        .prepare_cached(
            "WITH swept AS (UPDATE images SET deleted_at = $1 WHERE id = $2)
             DELETE FROM image_variants WHERE image_id = $2",
        )
        .await?;
    c.execute(&stmt, &[&now_ms, &image_id]).await?;
    Ok(())
}
