//! Files of the Files API.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::store::{FileRecord, StoreError};

const COLUMNS: &str = "id, owner, purpose, filename, bytes, blob_key, created_at, expires_at";

fn row_to_file(r: &Row) -> Result<FileRecord, StoreError> {
    Ok(FileRecord {
        id: r.try_get("id")?,
        owner: r.try_get("owner")?,
        purpose: r.try_get("purpose")?,
        filename: r.try_get("filename")?,
        bytes: r.try_get("bytes")?,
        blob_key: r.try_get("blob_key")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

pub async fn insert(c: &impl GenericClient, f: &FileRecord) -> Result<(), StoreError> {
    let stmt =
        c.prepare_cached(&format!("INSERT INTO files ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)")).await?;
    c.execute(&stmt, &[&f.id, &f.owner, &f.purpose, &f.filename, &f.bytes, &f.blob_key, &f.created_at, &f.expires_at])
        .await?;
    Ok(())
}

pub async fn get(c: &impl GenericClient, owner: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
    let stmt = c.prepare_cached(&format!("SELECT {COLUMNS} FROM files WHERE id = $1 AND owner = $2")).await?;
    c.query_opt(&stmt, &[&id, &owner]).await?.as_ref().map(row_to_file).transpose()
}

pub async fn list(
    c: &impl GenericClient,
    owner: &str,
    purpose: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<FileRecord>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM files WHERE owner = $1 AND ($2::text IS NULL OR purpose = $2) \
             AND ($3::text IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        ))
        .await?;
    let rows = c.query(&stmt, &[&owner, &purpose, &after, &i64::from(limit)]).await?;
    rows.iter().map(row_to_file).collect()
}

pub async fn delete(c: &impl GenericClient, owner: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
    let stmt = c.prepare_cached(&format!("DELETE FROM files WHERE id = $1 AND owner = $2 RETURNING {COLUMNS}")).await?;
    c.query_opt(&stmt, &[&id, &owner]).await?.as_ref().map(row_to_file).transpose()
}

pub async fn expired(c: &impl GenericClient, now_secs: i64, limit: u32) -> Result<Vec<FileRecord>, StoreError> {
    let stmt = c
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM files WHERE expires_at IS NOT NULL AND expires_at <= $1 ORDER BY expires_at LIMIT $2"
        ))
        .await?;
    c.query(&stmt, &[&now_secs, &i64::from(limit)]).await?.iter().map(row_to_file).collect()
}
