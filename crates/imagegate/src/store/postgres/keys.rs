//! Key rows.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use crate::domain::export::ExportDestination;
use crate::domain::policy::KeyPolicy;
use crate::store::{KeyRecord, NewKey, StoreError, UsageRow};

const KEY_COLUMNS: &str = "id, name, prefix, created_at, revoked_at, policy, spent_usd, reserved_usd, export";

fn row_to_key(r: &Row) -> Result<KeyRecord, StoreError> {
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

/// One key by a condition on a single bound value.
async fn one(c: &impl GenericClient, sql: &str, value: &str) -> Result<Option<KeyRecord>, StoreError> {
    let stmt = c.prepare_cached(sql).await?;
    c.query_opt(&stmt, &[&value]).await?.map(|r| row_to_key(&r)).transpose()
}

pub async fn create(c: &impl GenericClient, key: NewKey) -> Result<KeyRecord, StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO keys (id, name, key_hash, prefix, created_at, webhook_secret) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    c.execute(&stmt, &[&key.id, &key.name, &key.key_hash, &key.prefix, &key.created_at, &key.webhook_secret]).await?;
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

pub async fn list(c: &impl GenericClient) -> Result<Vec<KeyRecord>, StoreError> {
    let stmt = c.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM keys ORDER BY id DESC")).await?;
    c.query(&stmt, &[]).await?.iter().map(row_to_key).collect()
}

pub async fn revoke(c: &impl GenericClient, id: &str, now: i64) -> Result<bool, StoreError> {
    let stmt = c.prepare_cached("UPDATE keys SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2").await?;
    Ok(c.execute(&stmt, &[&now, &id]).await? > 0)
}

pub async fn by_hash(c: &impl GenericClient, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
    one(c, &format!("SELECT {KEY_COLUMNS} FROM keys WHERE key_hash = $1"), key_hash).await
}

pub async fn get(c: &impl GenericClient, id: &str) -> Result<Option<KeyRecord>, StoreError> {
    one(c, &format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = $1"), id).await
}

pub async fn set_policy(c: &impl GenericClient, id: &str, policy: &KeyPolicy) -> Result<Option<KeyRecord>, StoreError> {
    let text = serde_json::to_string(policy).map_err(|source| StoreError::Corrupt { what: "key policy", source })?;
    let stmt = c.prepare_cached(&format!("UPDATE keys SET policy = $1 WHERE id = $2 RETURNING {KEY_COLUMNS}")).await?;
    c.query_opt(&stmt, &[&text, &id]).await?.map(|r| row_to_key(&r)).transpose()
}

pub async fn set_export(
    c: &impl GenericClient,
    id: &str,
    export: Option<&ExportDestination>,
) -> Result<Option<KeyRecord>, StoreError> {
    let text = export
        .map(serde_json::to_string)
        .transpose()
        .map_err(|source| StoreError::Corrupt { what: "key export destination", source })?;
    let stmt = c.prepare_cached(&format!("UPDATE keys SET export = $1 WHERE id = $2 RETURNING {KEY_COLUMNS}")).await?;
    c.query_opt(&stmt, &[&text, &id]).await?.map(|r| row_to_key(&r)).transpose()
}

pub async fn usage(c: &impl GenericClient, owner: Option<&str>, since_day: &str) -> Result<Vec<UsageRow>, StoreError> {
    let stmt = c
        .prepare_cached(
            "SELECT owner, day, model, images, cost_usd FROM usage_daily
             WHERE ($1::text IS NULL OR owner = $1) AND day >= $2 ORDER BY day, owner, model",
        )
        .await?;
    c.query(&stmt, &[&owner, &since_day])
        .await?
        .iter()
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

pub async fn webhook_secret(c: &impl GenericClient, owner: &str) -> Result<Option<String>, StoreError> {
    let stmt = c.prepare_cached("SELECT webhook_secret FROM keys WHERE id = $1").await?;
    Ok(c.query_opt(&stmt, &[&owner]).await?.map(|r| r.try_get::<_, Option<String>>(0)).transpose()?.flatten())
}

pub async fn set_webhook_secret(c: &impl GenericClient, owner: &str, secret: &str) -> Result<bool, StoreError> {
    let stmt = c.prepare_cached("UPDATE keys SET webhook_secret = $1 WHERE id = $2").await?;
    Ok(c.execute(&stmt, &[&secret, &owner]).await? > 0)
}
