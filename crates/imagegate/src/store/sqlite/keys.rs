//! Key rows.

use sqlx::{Row, SqlitePool, sqlite::SqliteRow};

use crate::store::{KeyRecord, NewKey, StoreError};

fn row_to_key(r: &SqliteRow) -> Result<KeyRecord, sqlx::Error> {
    Ok(KeyRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
    })
}

pub async fn create(pool: &SqlitePool, key: NewKey) -> Result<KeyRecord, StoreError> {
    sqlx::query("INSERT INTO keys (id, name, key_hash, prefix, created_at, webhook_secret) VALUES (?, ?, ?, ?, ?, ?)")
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(&key.prefix)
        .bind(key.created_at)
        .bind(&key.webhook_secret)
        .execute(pool)
        .await?;
    Ok(KeyRecord { id: key.id, name: key.name, prefix: key.prefix, created_at: key.created_at, revoked_at: None })
}

pub async fn list(pool: &SqlitePool) -> Result<Vec<KeyRecord>, StoreError> {
    let rows = sqlx::query("SELECT id, name, prefix, created_at, revoked_at FROM keys ORDER BY id DESC")
        .fetch_all(pool)
        .await?;
    Ok(rows.iter().map(row_to_key).collect::<Result<_, _>>()?)
}

pub async fn revoke(pool: &SqlitePool, id: &str, now: i64) -> Result<bool, StoreError> {
    let found = sqlx::query("UPDATE keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?")
        .bind(now)
        .bind(id)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(found > 0)
}

pub async fn by_hash(pool: &SqlitePool, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
    let row = sqlx::query("SELECT id, name, prefix, created_at, revoked_at FROM keys WHERE key_hash = ?")
        .bind(key_hash)
        .fetch_optional(pool)
        .await?;
    Ok(row.as_ref().map(row_to_key).transpose()?)
}

pub async fn webhook_secret(pool: &SqlitePool, owner: &str) -> Result<Option<String>, StoreError> {
    let secret: Option<Option<String>> =
        sqlx::query_scalar("SELECT webhook_secret FROM keys WHERE id = ?").bind(owner).fetch_optional(pool).await?;
    Ok(secret.flatten())
}

pub async fn set_webhook_secret(pool: &SqlitePool, owner: &str, secret: &str) -> Result<bool, StoreError> {
    let n = sqlx::query("UPDATE keys SET webhook_secret = ? WHERE id = ?")
        .bind(secret)
        .bind(owner)
        .execute(pool)
        .await?
        .rows_affected();
    Ok(n > 0)
}
