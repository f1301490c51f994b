//! Retention: deletes expired originals and their variants, expired input images and files, in
//! bounded batches. Each image is
//! marked swept only after its blobs are gone, so a crash mid-batch just repeats deletes
//! (idempotent) on the next pass. The image row stays: the task keeps its record, and the URL
//! answers 410.

use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::blobs::BlobStore;
use crate::domain::{now_millis, now_secs};
use crate::store::Store;

const BATCH: u32 = 500;

/// One pass: up to `BATCH` expired images. Returns how many were swept.
pub async fn sweep_once(store: &dyn Store, blobs: &dyn BlobStore) -> usize {
    let expired = match store.expired_images(now_secs(), BATCH).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "retention sweep: listing expired images failed");
            return 0;
        }
    };
    let mut swept = 0;
    for (img, variants) in expired {
        let mut ok = true;
        for key in std::iter::once(&img.blob_key).chain(variants.iter()) {
            if let Err(e) = blobs.delete(key).await {
                tracing::warn!(image_id = img.id, key, error = %e, "retention sweep: delete failed; will retry");
                ok = false;
            }
        }
        if ok && store.mark_swept(&img.id, now_millis()).await.is_ok() {
            swept += 1;
        }
    }
    if swept > 0 {
        tracing::info!(swept, "retention sweep deleted expired images");
    }
    swept + sweep_inputs(store, blobs).await + sweep_files(store, blobs).await
}

/// Files past their expiry (batch output files, uploads given `expires_after`): the blob, then
/// the record.
async fn sweep_files(store: &dyn Store, blobs: &dyn BlobStore) -> usize {
    let expired = match store.expired_files(now_secs(), BATCH).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "retention sweep: listing expired files failed");
            return 0;
        }
    };
    let mut swept = 0;
    for file in expired {
        if let Err(e) = blobs.delete(&file.blob_key).await
            && !e.is_not_found()
        {
            tracing::warn!(file_id = file.id, error = %e, "retention sweep: delete failed; will retry");
            continue;
        }
        if store.delete_file(&file.owner, &file.id).await.is_ok() {
            swept += 1;
        }
    }
    if swept > 0 {
        tracing::info!(swept, "retention sweep deleted expired files");
    }
    swept
}

/// Expired input images: each blob is deleted once no input still within its retention shares
/// it (inputs are stored once per key and content).
async fn sweep_inputs(store: &dyn Store, blobs: &dyn BlobStore) -> usize {
    let expired = match store.expired_inputs(now_secs(), BATCH).await {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "retention sweep: listing expired inputs failed");
            return 0;
        }
    };
    let mut swept = 0;
    for (input, shared) in expired {
        if !shared && let Err(e) = blobs.delete(&input.blob_key).await {
            tracing::warn!(input_id = input.id, error = %e, "retention sweep: delete failed; will retry");
            continue;
        }
        if store.mark_input_swept(&input.id, now_millis()).await.is_ok() {
            swept += 1;
        }
    }
    swept
}

/// Sweeps every `interval` (sooner while there is a backlog) until `stop`.
pub fn start(store: Arc<dyn Store>, blobs: Arc<dyn BlobStore>, interval: Duration, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let swept = sweep_once(store.as_ref(), blobs.as_ref()).await;
            let wait = if swept as u32 == BATCH { Duration::from_millis(10) } else { interval };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.cancelled() => return,
            }
        }
    });
}
