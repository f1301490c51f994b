//! Key rows.

use sqlx::{Row, SqlitePool, sqlite::SqliteRow};

use crate::domain::export::ExportDestination;
use crate::domain::policy::KeyPolicy;
use crate::store::{KeyRecord, NewKey, StoreError, UsageRow};

const KEY_COLUMNS: &str = "id, name, prefix, created_at, revoked_at, policy, spent_usd, reserved_usd, export";

fn row_to_key(r: &SqliteRow) -> Result<KeyRecord, StoreError> {
    let policy: String = r.try_get("policy")?;
    let export: Option<String> = r.try_get("export")?;
    let export = export
        .map(|e| serde_json::from_str(&e))
        .transpose()
        .map_err(|source| StoreError::Corrupt { what: "key export destination", source })?;
    Ok(KeyRecord {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        prefix: r.try_get("prefix")?,
        created_at: r.try_get("created_at")?,
        revoked_at: r.try_get("revoked_at")?,
        policy: serde_json::from_str(&policy).map_err(|source| StoreError::Corrupt { what: "key policy", source })?,
        spent_usd: r.try_get("spent_usd")?,
        reserved_usd: r.try_get("reserved_usd")?,
        export,
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

pub async fn list(pool: &SqlitePool) -> Result<Vec<KeyRecord>, StoreError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM keys ORDER BY id DESC")))
        .fetch_all(pool)
        .await?;
    rows.iter().map(row_to_key).collect()
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
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_hash = ?")))
        .bind(key_hash)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(row_to_key).transpose()
}

pub async fn get(pool: &SqlitePool, id: &str) -> Result<Option<KeyRecord>, StoreError> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = ?")))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(row_to_key).transpose()
}

pub async fn set_policy(pool: &SqlitePool, id: &str, policy: &KeyPolicy) -> Result<Option<KeyRecord>, StoreError> {
    let text = serde_json::to_string(policy).map_err(|source| StoreError::Corrupt { what: "key policy", source })?;
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE keys SET policy = ? WHERE id = ? RETURNING {KEY_COLUMNS}")))
            .bind(text)
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.as_ref().map(row_to_key).transpose()
}

pub async fn set_export(
    pool: &SqlitePool,
    id: &str,
    export: Option<&ExportDestination>,
) -> Result<Option<KeyRecord>, StoreError> {
    let text = export
        .map(serde_json::to_string)
        .transpose()
        .map_err(|source| StoreError::Corrupt { what: "key export destination", source })?;
    let row =
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE keys SET export = ? WHERE id = ? RETURNING {KEY_COLUMNS}")))
            .bind(text)
            .bind(id)
            .fetch_optional(pool)
            .await?;
    row.as_ref().map(row_to_key).transpose()
}

pub async fn usage(pool: &SqlitePool, owner: Option<&str>, since_day: &str) -> Result<Vec<UsageRow>, StoreError> {
    let rows = sqlx::query(
        "SELECT owner, day, model, images, cost_usd FROM usage_daily
         WHERE (? IS NULL OR owner = ?) AND day >= ? ORDER BY day, owner, model",
    )
    .bind(owner)
    .bind(owner)
    .bind(since_day)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(UsageRow {
                owner: r.try_get("owner")?,
                day: r.try_get("day")?,
                model: r.try_get("model")?,
                images: r.try_get("images")?,
                cost_usd: r.try_get("cost_usd")?,
            })
        })
        .collect()
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
