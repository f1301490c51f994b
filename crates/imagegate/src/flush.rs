//! The flush loop of the embedded deployment (SQLite and a local folder): on `process`
//! durability (see `domain::durability`), recent images and the database's log reach the disk
//! together, images first. The one place that joins the two seams, wired by `app`: the store
//! and the blob store each only offer their half (`Store::checkpoint`, `BlobStore::flush`).

use std::sync::Arc;
use std::time::Duration;

use crate::blobs::BlobStore;
use crate::store::Store;

/// How often recent images and commits are flushed to disk in `process` mode (and the WAL is
/// checkpointed in both modes).
pub const FLUSH_EVERY: Duration = Duration::from_millis(500);

/// Starts the flush loop on its own thread (flushing blocks on the disk). It holds the store
/// weakly and ends once the store is dropped.
pub fn start(store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>) {
    let weak_store = Arc::downgrade(&store);
    drop(store);
    let spawned = std::thread::Builder::new().name("imagegate-flush".into()).spawn(move || {
        loop {
            std::thread::sleep(FLUSH_EVERY);
            let Some(store) = weak_store.upgrade() else { return };
            flush(store.as_ref(), blobs.as_ref());
        }
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "no flush thread: recent work reaches the disk only at the OS's own pace");
    }
}

/// Images first, then the database, so that the checkpoint does not put rows on the disk
/// ahead of their images. (Best effort, not a guarantee: the OS may write the log back early;
/// `power` durability is the guarantee.)
pub fn flush(store: &dyn Store, blobs: &dyn BlobStore) {
    // Images stored while a flush ran may already have committed rows: flush again (bounded)
    // until a round finds nothing new, then checkpoint right away.
    for _ in 0..3 {
        match blobs.flush() {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                // Checkpointing now could put rows on disk ahead of their images: next round.
                tracing::warn!(error = %e, "flushing images to disk failed; will retry");
                return;
            }
        }
    }
    if let Err(e) = store.checkpoint() {
        tracing::debug!(error = %e, "checkpoint skipped");
    }
}
