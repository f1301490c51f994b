//! Embedded, ordered migrations with a version table, each applied in its own transaction.

use rusqlite::{Connection, params};

use crate::store::StoreError;

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../../migrations/sqlite/0002_async.sql")),
    (3, include_str!("../../../migrations/sqlite/0003_limits.sql")),
    (4, include_str!("../../../migrations/sqlite/0004_delivery.sql")),
    (5, include_str!("../../../migrations/sqlite/0005_export.sql")),
    (6, include_str!("../../../migrations/sqlite/0006_queue_order.sql")),
    (7, include_str!("../../../migrations/sqlite/0007_partial_indexes.sql")),
    (8, include_str!("../../../migrations/sqlite/0008_image_indexes.sql")),
    (9, include_str!("../../../migrations/sqlite/0009_inputs.sql")),
    (10, include_str!("../../../migrations/sqlite/0010_files.sql")),
    (11, include_str!("../../../migrations/sqlite/0011_batches.sql")),
    (12, include_str!("../../../migrations/sqlite/0012_request_ids.sql")),
];

pub fn run(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )?;
    let applied: Vec<i64> = {
        let mut stmt = conn.prepare("SELECT version FROM schema_migrations")?;
        stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if let Some(found) = applied.iter().copied().max().filter(|v| *v > known) {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    for (version, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql).map_err(|source| StoreError::Migration { version: *version, source: source.into() })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
            params![version, crate::domain::now_secs()],
        )?;
        tx.commit()?;
        tracing::info!(version, "applied database migration");
    }
    Ok(())
}
