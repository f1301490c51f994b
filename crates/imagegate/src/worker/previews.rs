//! Drafts of a running task's images (Gemini 3 Pro Image's thought images): stored under a
//! name of their own (`prv_{task}_{image}_{draft}.jpeg`, served by `/images/`, removed by the
//! orphan sweep once its grace has passed) and announced to the task's subscribers (SSE
//! `task.partial_image`, OpenAI `partial_images` streams). Never a result, never charged.

use super::{Preview, WorkerPool};
use crate::domain::request::OutputFormat;
use crate::providers::Draft;

pub async fn store(pool: &WorkerPool, task_id: &str, draft: Draft, number: u32) {
    let deps = &pool.deps;
    let ext = OutputFormat::from_mime(&draft.mime).map_or("jpeg", OutputFormat::ext);
    let key = format!("prv_{task_id}_{}_{number}.{ext}", draft.index);
    if let Err(e) = deps.blobs.put(&key, draft.bytes.clone(), &draft.mime).await {
        tracing::warn!(task_id, error = %e, "a draft could not be stored; it is not shown");
        return;
    }
    let (url, _) = deps.urls.url_for(&key).await;
    tracing::debug!(task_id, index = draft.index, number, "draft stored");
    pool.signals.add_preview(
        task_id,
        Preview { index: draft.index, number, url, content_type: draft.mime, bytes: draft.bytes },
    );
}
