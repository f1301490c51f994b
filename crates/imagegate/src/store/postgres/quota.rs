//! Shared quotas: request rates (one GCRA instant per bucket) and upstream channels' call
//! slots, for every replica, in UNLOGGED tables (no WAL, no flush wait; emptied by a crash of
//! the server, which only forgets recent calls).

use deadpool_postgres::GenericClient;

use crate::store::StoreError;

/// One request from a shared rate (see `domain::rate`): the TAT moves on in one statement, or
/// stays when the request is over the rate.
pub async fn take_rate(
    c: &impl GenericClient,
    bucket: &str,
    per_minute: u32,
    now_ms: i64,
) -> Result<Option<std::time::Duration>, StoreError> {
    let g = crate::domain::rate::Gcra::per_minute(per_minute);
    let now_us = now_ms * 1000;
    let take = c
        .prepare_cached(
            "INSERT INTO rate_limits (bucket, tat_us) VALUES ($1, $2::bigint + $3::bigint)
             ON CONFLICT (bucket) DO UPDATE SET tat_us = GREATEST(rate_limits.tat_us, $2::bigint) + $3::bigint
             WHERE GREATEST(rate_limits.tat_us, $2::bigint) - $2::bigint <= $4::bigint
             RETURNING tat_us",
        )
        .await?;
    if c.query_opt(&take, &[&bucket, &now_us, &g.interval_us, &g.tolerance_us]).await?.is_some() {
        return Ok(None);
    }
    let read = c.prepare_cached("SELECT tat_us FROM rate_limits WHERE bucket = $1").await?;
    let tat: Option<i64> = c.query_opt(&read, &[&bucket]).await?.map(|r| r.try_get(0)).transpose()?;
    let wait_us = g.take(tat, now_us).err().unwrap_or(g.interval_us).max(0);
    Ok(Some(std::time::Duration::from_micros(wait_us as u64)))
}

/// One of `max` slots of `scope` (see `Store::take_slot`): the lowest free one, in one
/// statement. Two replicas racing for one slot: the loser's upsert finds it live and returns
/// nothing, and it tries again.
pub async fn take_slot(
    c: &impl GenericClient,
    scope: &str,
    max: u32,
    holder: &str,
    until_ms: i64,
    now_ms: i64,
) -> Result<Option<u32>, StoreError> {
    let stmt = c
        .prepare_cached(
            "INSERT INTO channel_slots (channel, slot, holder, expires_at)
             SELECT $1, s, $2, $3 FROM generate_series(0, $4::bigint - 1) s
             WHERE NOT EXISTS (SELECT 1 FROM channel_slots c WHERE c.channel = $1 AND c.slot = s AND c.expires_at >= $5)
             ORDER BY s LIMIT 1
             ON CONFLICT (channel, slot) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE channel_slots.expires_at < $5
             RETURNING slot",
        )
        .await?;
    for _ in 0..3 {
        let row = c.query_opt(&stmt, &[&scope, &holder, &until_ms, &i64::from(max), &now_ms]).await?;
        if let Some(r) = row {
            let slot: i64 = r.try_get(0)?;
            return Ok(u32::try_from(slot).ok());
        }
        // Nothing taken: every slot is live, or another replica took the free one first.
        let free =
            c.prepare_cached("SELECT COUNT(*) FROM channel_slots WHERE channel = $1 AND expires_at >= $2").await?;
        let live: i64 = c.query_one(&free, &[&scope, &now_ms]).await?.try_get(0)?;
        if live >= i64::from(max) {
            return Ok(None);
        }
    }
    Ok(None)
}

pub async fn renew_slot(
    c: &impl GenericClient,
    scope: &str,
    slot: u32,
    holder: &str,
    until_ms: i64,
) -> Result<bool, StoreError> {
    let stmt = c
        .prepare_cached("UPDATE channel_slots SET expires_at = $1 WHERE channel = $2 AND slot = $3 AND holder = $4")
        .await?;
    Ok(c.execute(&stmt, &[&until_ms, &scope, &i64::from(slot), &holder]).await? > 0)
}

pub async fn release_slot(c: &impl GenericClient, scope: &str, slot: u32, holder: &str) -> Result<(), StoreError> {
    let stmt = c.prepare_cached("DELETE FROM channel_slots WHERE channel = $1 AND slot = $2 AND holder = $3").await?;
    c.execute(&stmt, &[&scope, &i64::from(slot), &holder]).await?;
    Ok(())
}
