//! Deadline routing (`"service_tier": "flex"`): flex tasks whose model's provider has a batch
//! API wait in lane 2 with no batch; they are pooled into upstream jobs (at once when
//! `batch.flex_max_lines` wait for one model, else once the oldest has waited
//! `batch.flex_max_wait`), and a task whose job has not ended in time to still meet its
//! deadline with a realtime call (`batch.flex_realtime_margin` before it) is taken from its
//! job and queued for a worker: it is served in realtime, at the realtime price. The task's
//! result says which path served it (`served_by`).

use super::BatchError;
use crate::app::App;
use crate::domain::batch::JobStep;
use crate::domain::{models, now_millis, now_secs};
use crate::store::UpstreamJob;

/// Runs between the job loop's looks: pools waiting flex tasks into jobs, and sends those
/// that can no longer wait to the realtime queue.
pub(super) async fn tick(app: &App) -> Result<(), BatchError> {
    let cfg = &app.rt.batch;
    let margin = cfg.flex_realtime_margin.as_secs() as i64;
    let moved = app.store.flex_fallback(now_secs(), margin, 1000).await?;
    if !moved.is_empty() {
        tracing::info!(tasks = moved.len(), "flex tasks near their deadline sent to realtime");
        app.workers.notify();
    }
    for (model, count, oldest_ms) in app.store.flex_waiting().await? {
        let waited = now_millis() - oldest_ms;
        if count < i64::from(cfg.flex_max_lines) && waited < cfg.flex_max_wait.as_millis() as i64 {
            continue;
        }
        let Some(upstream_model) = models::resolve(&model).map(|m| m.upstream) else { continue };
        let Some(channel) = super::upstream::channel_for(app, upstream_model) else { continue };
        let job = UpstreamJob {
            id: format!("ujob_{}", ulid::Ulid::new()),
            batch_id: None,
            owner: String::new(),
            channel: channel.spec.name.clone(),
            model: upstream_model.to_string(),
            step: JobStep::Preparing,
            input_file: None,
            upstream_name: None,
            error: None,
            lines: 0,
            created_at_ms: now_millis(),
        };
        let held_until = now_millis() + super::upstream::HOLD.as_millis() as i64;
        let limit = cfg.flex_max_lines.min(cfg.max_job_lines);
        let taken = app.store.create_job(&job, &model, limit, held_until).await?;
        if !taken.is_empty() {
            tracing::info!(
                job_id = job.id,
                tasks = taken.len(),
                model = upstream_model,
                "flex tasks pooled into an upstream job"
            );
        }
    }
    Ok(())
}
