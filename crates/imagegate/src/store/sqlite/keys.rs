//! Key rows.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::domain::export::ExportDestination;
use crate::domain::policy::KeyPolicy;
use crate::store::{KeyRecord, NewKey, StoreError, UsageRow};

const KEY_COLUMNS: &str = "id, name, prefix, created_at, revoked_at, policy, spent_usd, reserved_usd, export";

fn row_to_key(r: &Row) -> Result<KeyRecord, StoreError> {
    let policy: String = r.get("policy")?;
    let export: Option<String> = r.get("export")?;
    let export = export
        .map(|e| serde_json::from_str(&e))
        .transpose()
        .map_err(|source| StoreError::Corrupt { what: "key export destination", source })?;
    Ok(KeyRecord {
        id: r.get("id")?,
        name: r.get("name")?,
        prefix: r.get("prefix")?,
        created_at: r.get("created_at")?,
        revoked_at: r.get("revoked_at")?,
        policy: serde_json::from_str(&policy).map_err(|source| StoreError::Corrupt { what: "key policy", source })?,
        spent_usd: r.get("spent_usd")?,
        reserved_usd: r.get("reserved_usd")?,
        export,
    })
}

/// One key by a condition on a single bound value.
fn one(conn: &Connection, sql: &str, value: &str) -> Result<Option<KeyRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query([value])?;
    match rows.next()? {
        Some(r) => Ok(Some(row_to_key(r)?)),
        None => Ok(None),
    }
}

pub fn create(conn: &Connection, key: NewKey) -> Result<KeyRecord, StoreError> {
    conn.prepare_cached(
        "INSERT INTO keys (id, name, key_hash, prefix, created_at, webhook_secret) VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![key.id, key.name, key.key_hash, key.prefix, key.created_at, key.webhook_secret])?;
    Ok(KeyRecord {
        id: key.id,
        name: key.name,
        prefix: key.prefix,
        created_at: key.created_at,
        revoked_at: None,
        policy: KeyPolicy::default(),
        spent_usd: 0.0,
        reserved_usd: 0.0,
        export: None,
    })
}

pub fn list(conn: &Connection) -> Result<Vec<KeyRecord>, StoreError> {
    let mut stmt = conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys ORDER BY id DESC"))?;
    let mut rows = stmt.query([])?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(row_to_key(r)?);
    }
    Ok(out)
}

pub fn revoke(conn: &Connection, id: &str, now: i64) -> Result<bool, StoreError> {
    let n = conn
        .prepare_cached("UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")?
        .execute(params![now, id])?;
    Ok(n > 0)
}

pub fn by_hash(conn: &Connection, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
    one(conn, &format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_hash = ?"), key_hash)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<KeyRecord>, StoreError> {
    one(conn, &format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = ?"), id)
}

pub fn set_policy(conn: &Connection, id: &str, policy: &KeyPolicy) -> Result<Option<KeyRecord>, StoreError> {
    let text = serde_json::to_string(policy).map_err(|source| StoreError::Corrupt { what: "key policy", source })?;
    conn.prepare_cached("UPDATE keys SET policy = ? WHERE id = ?")?.execute(params![text, id])?;
    get(conn, id)
}

pub fn set_export(
    conn: &Connection,
    id: &str,
    export: Option<&ExportDestination>,
) -> Result<Option<KeyRecord>, StoreError> {
    let text = export
        .map(serde_json::to_string)
        .transpose()
        .map_err(|source| StoreError::Corrupt { what: "key export destination", source })?;
    conn.prepare_cached("UPDATE keys SET export = ? WHERE id = ?")?.execute(params![text, id])?;
    get(conn, id)
}

pub fn usage(conn: &Connection, owner: Option<&str>, since_day: &str) -> Result<Vec<UsageRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT owner, day, model, images, cost_usd FROM usage_daily
         WHERE (?1 IS NULL OR owner = ?1) AND day >= ?2 ORDER BY day, owner, model",
    )?;
    let rows = stmt.query_map(params![owner, since_day], |r| {
        Ok(UsageRow {
            owner: r.get("owner")?,
            day: r.get("day")?,
            model: r.get("model")?,
            images: r.get("images")?,
            cost_usd: r.get("cost_usd")?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn webhook_secret(conn: &Connection, owner: &str) -> Result<Option<String>, StoreError> {
    let secret: Option<Option<String>> = conn
        .prepare_cached("SELECT webhook_secret FROM keys WHERE id = ?")?
        .query_row([owner], |r| r.get(0))
        .optional()?;
    Ok(secret.flatten())
}

pub fn set_webhook_secret(conn: &Connection, owner: &str, secret: &str) -> Result<bool, StoreError> {
    let n = conn.prepare_cached("UPDATE keys SET webhook_secret = ? WHERE id = ?")?.execute(params![secret, owner])?;
    Ok(n > 0)
}
