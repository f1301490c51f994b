//! Embedded, ordered migrations with a version table, each applied in its own transaction,
//! all under an advisory lock: replicas starting together migrate once (the others wait, then
//! find nothing to do). A schema newer than this build knows is refused.

use deadpool_postgres::Object;

use super::db::Db;
use crate::store::StoreError;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../../migrations/postgres/0002_rates.sql")),
    (3, include_str!("../../../migrations/postgres/0003_inputs.sql")),
    (4, include_str!("../../../migrations/postgres/0004_files.sql")),
    (5, include_str!("../../../migrations/postgres/0005_batches.sql")),
    (6, include_str!("../../../migrations/postgres/0006_request_ids.sql")),
];

/// The lock's key: one per schema, so that databases or schemas sharing a server migrate
/// independently.
const LOCK: &str = "hashtext('imagegate.migrate.' || COALESCE(current_schema(), ''))";

pub async fn run(db: &Db) -> Result<(), StoreError> {
    let mut conn = db.conn().await?;
    // Waiting for another replica's migration, and a migration itself, may take longer than
    // the statement timeout requests run under.
    conn.batch_execute("SET statement_timeout = 0; SET client_min_messages = warning").await?;
    conn.execute(&format!("SELECT pg_advisory_lock({LOCK})"), &[]).await?;
    let done = apply(&mut conn).await;
    // Released with the session anyway should this fail (a broken connection is not reused).
    let _ = conn.execute(&format!("SELECT pg_advisory_unlock({LOCK})"), &[]).await;
    let _ = conn.batch_execute("RESET statement_timeout; RESET client_min_messages").await;
    done
}

/// The latest version this build knows.
pub fn known() -> i64 {
    MIGRATIONS.last().map(|m| m.0).unwrap_or(0)
}

async fn apply(conn: &mut Object) -> Result<(), StoreError> {
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .await?;
    let applied: Vec<i64> =
        conn.query("SELECT version FROM schema_migrations", &[]).await?.iter().map(|r| r.get(0)).collect();
    if let Some(found) = applied.iter().copied().max().filter(|v| *v > known()) {
        return Err(StoreError::SchemaTooNew { found, known: known() });
    }
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = conn.transaction().await?;
        tx.batch_execute(sql)
            .await
            .map_err(|source| StoreError::Migration { version: *version, source: source.into() })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[version, &crate::domain::now_secs()],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}
