//! The orphan sweep: deletes stored objects that no image row wants. They come from work that
//! stored images and then never recorded them: a task cancelled or timed out after some of its
//! `n` images were stored, a run whose lease was taken over, a commit that failed, a crash
//! between the write and the commit, a conversion of an image swept meanwhile, a temporary file
//! left by a crash mid-write.
//!
//! An object is an orphan when it is older than the grace period (longer than any task can run,
//! so an image stored for a task still running is never taken) and either belongs to no image
//! recorded and unswept, is an input image no unswept input names (stored for a submit that was
//! then refused), or is a temporary or probe object. Objects whose names the gateway did
//! not make are never touched (a bucket prefix may be shared).

use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

use crate::blobs::BlobStore;
use crate::domain::now_secs;
use crate::store::Store;

/// Objects examined per pass before the sweep rests until the next one.
const PER_PASS: usize = 20_000;

/// What a stored object's name says about it.
#[derive(Debug, PartialEq, Eq)]
enum Kind<'a> {
    /// An image or one of its variants, with the image's id.
    Image(&'a str),
    /// A task's input image (`inp_{key}_{sha256}.{ext}`), wanted while an unswept input names it.
    Input,
    /// A temporary or probe object: never wanted once old.
    Scratch,
    /// Not a name the gateway makes.
    Foreign,
}

fn kind(key: &str) -> Kind<'_> {
    // `img_` + a ULID and 16 random characters, then `.ext`, `_WxH_qN.ext` (a variant) or
    // `.tmpN` (a write cut off by a crash).
    const ID_LEN: usize = 4 + 26 + 16;
    if let Some(id) = key.get(..ID_LEN).filter(|id| id.starts_with("img_"))
        && let Some(rest) = key.get(ID_LEN..)
    {
        if rest.contains(".tmp") {
            return Kind::Scratch;
        }
        if rest.starts_with('.') || rest.starts_with('_') {
            return Kind::Image(id);
        }
    }
    if key.starts_with("inp_key_") {
        return if key.contains(".tmp") { Kind::Scratch } else { Kind::Input };
    }
    // Drafts shown while a task ran: kept for the grace, then removed.
    if key.starts_with("probe_") || key.starts_with("prv_task_") { Kind::Scratch } else { Kind::Foreign }
}

/// Sweeps one page from `cursor`: deletes its orphans older than `grace`. Returns how many were
/// deleted, how many objects were looked at, and the next page's cursor.
pub async fn sweep_page(
    store: &dyn Store,
    blobs: &dyn BlobStore,
    cursor: Option<String>,
    grace: Duration,
) -> (usize, usize, Option<String>) {
    let (page, next) = match blobs.list_page(cursor.clone()).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "orphan sweep: listing stored objects failed");
            return (0, 0, None);
        }
    };
    let cutoff = now_secs() - grace.as_secs() as i64;
    let old: Vec<&(String, i64)> = page.iter().filter(|(_, modified)| *modified < cutoff).collect();
    let ids: Vec<String> = old
        .iter()
        .filter_map(|(k, _)| match kind(k) {
            Kind::Image(id) => Some(id.to_string()),
            _ => None,
        })
        .collect();
    let inputs: Vec<String> = old.iter().filter(|(k, _)| kind(k) == Kind::Input).map(|(k, _)| k.clone()).collect();
    let (live, live_inputs) = match (store.live_images(&ids).await, store.live_input_blobs(&inputs).await) {
        (Ok(l), Ok(i)) => (l, i),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "orphan sweep: reading image records failed");
            return (0, page.len(), next);
        }
    };
    let mut deleted = 0;
    for (key, _) in old {
        let orphan = match kind(key) {
            Kind::Image(id) => !live.contains(id),
            Kind::Input => !live_inputs.contains(key.as_str()),
            Kind::Scratch => true,
            Kind::Foreign => false,
        };
        if orphan {
            match blobs.delete(key).await {
                Ok(()) => deleted += 1,
                Err(e) => tracing::warn!(key, error = %e, "orphan sweep: delete failed; will retry"),
            }
        }
    }
    (deleted, page.len(), next)
}

/// Sweeps continuously: a bounded number of objects every `interval`, a full pass after
/// another, until `stop`.
pub fn start(
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    interval: Duration,
    grace: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut cursor = None;
        loop {
            // Waits first: a pass at start-up would list the store while the server warms up.
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = stop.cancelled() => return,
            }
            let (mut deleted, mut seen) = (0, 0);
            loop {
                let (d, n, next) = sweep_page(store.as_ref(), blobs.as_ref(), cursor.take(), grace).await;
                deleted += d;
                seen += n;
                cursor = next;
                if cursor.is_none() || seen >= PER_PASS {
                    break;
                }
            }
            if deleted > 0 {
                tracing::info!(deleted, "orphan sweep deleted objects no image record wants");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_names_say_what_they_are() {
        let owned = crate::domain::ids::image_id();
        let id = owned.as_str();
        assert_eq!(kind(&format!("{id}.jpeg")), Kind::Image(id));
        assert_eq!(kind(&format!("{id}_256x256_q80.webp")), Kind::Image(id));
        assert_eq!(kind(&format!("{id}.tmp12345")), Kind::Scratch);
        assert_eq!(kind("probe_1234.bin"), Kind::Scratch);
        assert_eq!(kind("prv_task_01ABC_0_1.jpeg"), Kind::Scratch);
        assert_eq!(kind("someone-elses/file.txt"), Kind::Foreign);
        assert_eq!(kind("img_short.png"), Kind::Foreign);
        assert_eq!(kind("inp_key_01ABC_0123abcd.png"), Kind::Input);
        assert_eq!(kind("inp_key_01ABC_0123abcd.png.tmp7"), Kind::Scratch);
    }
}
