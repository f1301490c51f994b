//! Files of the Files API.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::store::{FileRecord, StoreError};

const COLUMNS: &str = "id, owner, purpose, filename, bytes, blob_key, created_at, expires_at";

fn row_to_file(r: &Row) -> rusqlite::Result<FileRecord> {
    Ok(FileRecord {
        id: r.get("id")?,
        owner: r.get("owner")?,
        purpose: r.get("purpose")?,
        filename: r.get("filename")?,
        bytes: r.get("bytes")?,
        blob_key: r.get("blob_key")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
    })
}

pub fn insert(conn: &Connection, f: &FileRecord) -> Result<(), StoreError> {
    conn.prepare_cached(&format!("INSERT INTO files ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"))?
        .execute(params![f.id, f.owner, f.purpose, f.filename, f.bytes, f.blob_key, f.created_at, f.expires_at])?;
    Ok(())
}

pub fn get(conn: &Connection, owner: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!("SELECT {COLUMNS} FROM files WHERE id = ? AND owner = ?"))?
        .query_row(params![id, owner], row_to_file)
        .optional()?)
}

pub fn list(
    conn: &Connection,
    owner: &str,
    purpose: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<FileRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM files WHERE owner = ?1 AND (?2 IS NULL OR purpose = ?2) \
             AND (?3 IS NULL OR id < ?3) ORDER BY id DESC LIMIT ?4"
        ))?
        .query_map(params![owner, purpose, after, limit], row_to_file)?
        .collect::<Result<_, _>>()?)
}

pub fn delete(conn: &Connection, owner: &str, id: &str) -> Result<Option<FileRecord>, StoreError> {
    let found = get(conn, owner, id)?;
    if found.is_some() {
        conn.prepare_cached("DELETE FROM files WHERE id = ? AND owner = ?")?.execute(params![id, owner])?;
    }
    Ok(found)
}

pub fn expired(conn: &Connection, now_secs: i64, limit: u32) -> Result<Vec<FileRecord>, StoreError> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM files WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at LIMIT ?"
        ))?
        .query_map(params![now_secs, limit], row_to_file)?
        .collect::<Result<_, _>>()?)
}
