//! Issuing API keys (shared by the admin API and the `imagegate keys` CLI), and the short-lived
//! cache of key records the request path reads them through.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::api::auth::hash_key;
use crate::domain::{ids, now_secs};
use crate::store::{KeyRecord, NewKey, Store, StoreError};

/// Creates a key; returns its record and the secret, which is never stored and shown once.
pub async fn issue(store: &dyn Store, name: &str) -> Result<(KeyRecord, String), StoreError> {
    let secret = ids::api_key();
    let record = store
        .create_key(NewKey {
            id: ids::key_id(),
            name: name.to_string(),
            key_hash: hash_key(&secret),
            prefix: secret[..10].to_string(),
            created_at: now_secs(),
            webhook_secret: crate::webhooks::sign::new_secret(),
        })
        .await?;
    Ok((record, secret))
}

/// How long a key record read for authentication is reused. Changes made through this
/// process's admin API take effect at once (the entry is forgotten); changes made elsewhere (the
/// CLI, another replica) within this time.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// Past this many entries, expired ones are dropped before adding another.
const KEY_CACHE_PRUNE_AT: usize = 10_000;

/// Key records recently read, by key hash (authentication) and by id (workers), so the hot
/// path does not read the same row for every request.
#[derive(Default)]
pub struct KeyCache {
    by_hash: Entries,
    by_id: Entries,
}

type Entries = Mutex<HashMap<String, (KeyRecord, Instant)>>;

/// The record under `k` in `map` while fresh, else what `load` reads (remembered when found).
async fn read_through(
    map: &Entries,
    k: &str,
    load: impl std::future::Future<Output = Result<Option<KeyRecord>, StoreError>>,
) -> Result<Option<KeyRecord>, StoreError> {
    let fresh =
        map.lock().ok().and_then(|m| m.get(k).filter(|(_, at)| at.elapsed() < KEY_CACHE_TTL).map(|(r, _)| r.clone()));
    if fresh.is_some() {
        return Ok(fresh);
    }
    let found = load.await?;
    if let (Some(r), Ok(mut m)) = (&found, map.lock()) {
        if m.len() >= KEY_CACHE_PRUNE_AT {
            m.retain(|_, (_, at)| at.elapsed() < KEY_CACHE_TTL);
        }
        m.insert(k.to_string(), (r.clone(), Instant::now()));
    }
    Ok(found)
}

impl KeyCache {
    /// The key whose secret hashes to `key_hash` (revoked ones included: the caller decides).
    pub async fn by_hash(&self, store: &dyn Store, key_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        read_through(&self.by_hash, key_hash, store.key_by_hash(key_hash)).await
    }

    /// The key `id`.
    pub async fn by_id(&self, store: &dyn Store, id: &str) -> Result<Option<KeyRecord>, StoreError> {
        read_through(&self.by_id, id, store.get_key(id)).await
    }

    /// Forgets key `id` (it was just changed or revoked here).
    pub fn forget(&self, id: &str) {
        if let Ok(mut m) = self.by_hash.lock() {
            m.retain(|_, (r, _)| r.id != id);
        }
        if let Ok(mut m) = self.by_id.lock() {
            m.remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::durability::Durability;

    #[tokio::test]
    async fn cached_keys_are_reused_until_forgotten_or_stale() {
        let store = crate::store::open("sqlite::memory:", Durability::Process).await.unwrap();
        let (record, secret) = issue(store.as_ref(), "k").await.unwrap();
        let cache = KeyCache::default();
        let hash = hash_key(&secret);
        assert_eq!(cache.by_hash(store.as_ref(), &hash).await.unwrap().map(|r| r.revoked_at), Some(None));
        assert!(cache.by_hash(store.as_ref(), "no-such-hash").await.unwrap().is_none());
        store.revoke_key(&record.id, 7).await.unwrap();
        // Revoked behind the cache's back (as by the CLI): seen once the entry is stale.
        assert_eq!(cache.by_hash(store.as_ref(), &hash).await.unwrap().map(|r| r.revoked_at), Some(None));
        cache.forget(&record.id);
        assert_eq!(cache.by_hash(store.as_ref(), &hash).await.unwrap().map(|r| r.revoked_at), Some(Some(7)));
        assert_eq!(cache.by_id(store.as_ref(), &record.id).await.unwrap().map(|r| r.id), Some(record.id.clone()));
    }
}
