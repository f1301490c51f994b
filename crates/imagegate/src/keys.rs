//! Issuing API keys: shared by the admin API and the `imagegate keys` CLI.

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
