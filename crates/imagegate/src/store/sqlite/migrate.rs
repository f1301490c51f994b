//! Embedded, ordered migrations with a version table. Hand-written because sqlx's `migrate!`
//! needs its proc-macro stack at build time; this is 30 lines and works the same on PostgreSQL.

use sqlx::SqlitePool;

use crate::store::StoreError;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../../migrations/sqlite/0002_async.sql")),
    (3, include_str!("../../../migrations/sqlite/0003_limits.sql")),
    (4, include_str!("../../../migrations/sqlite/0004_delivery.sql")),
    (5, include_str!("../../../migrations/sqlite/0005_export.sql")),
];

pub async fn run(pool: &SqlitePool) -> Result<(), StoreError> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(pool)
    .await?;
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations").fetch_all(pool).await?;
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .map_err(|source| StoreError::Migration { version: *version, source })?;
        sqlx::query("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)")
            .bind(version)
            .bind(crate::domain::now_secs())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}
