//! Executes one claimed task: n provider calls in parallel, transcoding, storage, then one
//! transaction that ends the task. A heartbeat renews the lease until then.

use bytes::Bytes;
use futures_util::future::join_all;
use serde_json::{Value, json};

use super::{Abort, Finished, TaskControl, WorkerPool};
use crate::domain::request::{ImageRequest, OutputFormat, ResponseFormat};
use crate::domain::retry::Decision;
use crate::domain::{ids, now_millis, now_secs};
use crate::imaging;
use crate::providers::channels::NoChannel;
use crate::providers::{GeneratedImage, ProviderError, ProviderRequest};
use crate::store::{Ended, ImageRecord, Lease, StoreError, TaskRecord};

/// A task's input images, shared by its calls.
type Inputs = std::sync::Arc<crate::providers::Inputs>;
type PreviewSink = crate::providers::PreviewSink;
use crate::webhooks;
use std::time::Duration;

/// A task's failure as stored in `tasks.error` and shown to clients.
pub fn error_json(status: u16, kind: &str, code: &str, message: &str) -> Value {
    json!({"status": status, "type": kind, "code": code, "message": message})
}

/// How a provider error is reported to the client (status, type, code, message).
pub fn provider_error_json(e: &ProviderError) -> Value {
    match e {
        ProviderError::Rejected { message, reason, prompt } => {
            let mut e = error_json(400, "invalid_request_error", "content_policy_violation", message);
            // The upstream's own words, for surfaces that answer in its shape (Gemini's
            // `promptFeedback.blockReason` or a candidate's `finishReason`).
            e["reason"] = json!(reason);
            e["blocked"] = json!(if *prompt { "prompt" } else { "output" });
            e
        }
        ProviderError::Invalid { message } => error_json(
            400,
            "invalid_request_error",
            "upstream_invalid_request",
            &format!("The upstream model refused the request: {message}"),
        ),
        ProviderError::RateLimited { retry_after, .. } => {
            let mut e = error_json(
                429,
                "rate_limit_error",
                "upstream_rate_limited",
                "The upstream model is still rate limiting this gateway after retries; try again later.",
            );
            e["retry_after"] = json!(retry_after.map(|d| d.as_secs().max(1)).unwrap_or(30));
            e
        }
        ProviderError::Unavailable => error_json(
            503,
            "unavailable_error",
            "no_healthy_channel",
            "No upstream channel is available for this model right now; try again later.",
        ),
        ProviderError::Timeout(d) => error_json(
            504,
            "timeout_error",
            "upstream_timeout",
            &format!("The upstream model did not finish within {}s.", d.as_secs()),
        ),
        ProviderError::Auth { .. } => error_json(
            502,
            "upstream_error",
            "upstream_auth_failed",
            "The upstream refused the gateway's credential; the operator has been told.",
        ),
        ProviderError::Overloaded { .. } | ProviderError::Network(_) | ProviderError::Malformed { .. } => error_json(
            502,
            "upstream_error",
            "upstream_error",
            "The upstream model failed to produce an image after retries; no charge was made for it.",
        ),
    }
}

struct StoredImage {
    record: ImageRecord,
    /// The URL clients get (per the configured URL mode).
    url: String,
    /// When `url` stops working, if before the image's expiry (presigned URLs).
    url_expires_at: Option<i64>,
    /// The fallback model that made it, when not the requested one.
    model: Option<String>,
    revised_prompt: Option<String>,
    /// The upstream's token for the image (see `GeneratedImage::signature`).
    signature: Option<String>,
    input_tokens: u64,
    output_tokens: u64,
    /// The stored bytes, kept when the request wants them inline (`b64_json`).
    inline: Option<Bytes>,
}

/// Runs the task to its end; returns how it ended when this worker ended it.
pub async fn run(pool: &WorkerPool, task: TaskRecord, control: &TaskControl) -> Option<Finished> {
    let claimed_at = std::time::Instant::now();
    let deps = &pool.deps;
    let task_id = task.id.clone();
    let claim = control.claim.as_str();
    if task.cancel_requested {
        return finish_cancelled(pool, &task_id, claim).await;
    }
    if let Some(msg) = webhooks::event_for(&task) {
        match deps.store.enqueue_webhook(&task, &msg, now_millis()).await {
            Ok(()) => deps.deliverer.notify(),
            Err(e) => tracing::warn!(task_id, error = %e, "could not queue the task.started webhook"),
        }
    }
    // Each claim after a crash or a lost lease counts one (a drain gives its claim back): a task
    // that takes its process down every time is given up rather than crashing it forever.
    if task.attempts > i64::from(deps.rt.max_claims) {
        let err = error_json(
            502,
            "upstream_error",
            "attempts_exhausted",
            "The task was interrupted too many times and was given up.",
        );
        return finish_failed(pool, &task_id, claim, &err, 0).await;
    }
    let req: ImageRequest = match serde_json::from_value(task.request.clone()) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(task_id, error = %e, "stored request is unreadable");
            let err = error_json(500, "api_error", "internal_error", "The stored request could not be read.");
            return finish_failed(pool, &task_id, claim, &err, 0).await;
        }
    };

    // The stored inputs, read once per run: every try and failover sends these bytes.
    let inputs = if !req.has_inputs() {
        std::sync::Arc::new(crate::providers::Inputs::default())
    } else {
        match crate::inputs::load(&deps.store, &deps.blobs, &task.owner, &task_id, req.mask.is_some()).await {
            Ok(i) => std::sync::Arc::new(i),
            Err(e) => {
                tracing::error!(task_id, error = %e, "the task's input images could not be read");
                let err =
                    error_json(500, "api_error", "input_unavailable", "The task's input images could not be read.");
                return finish_failed(pool, &task_id, claim, &err, 0).await;
            }
        }
    };
    let retention = match deps.keys.by_id(deps.store.as_ref(), &task.owner).await {
        Ok(Some(k)) => deps.rt.retention_for(&k.policy),
        _ => deps.rt.retention,
    };
    let heartbeat = async {
        let lease = deps.rt.lease;
        loop {
            tokio::time::sleep(lease / 3).await;
            let until = now_millis() + lease.as_millis() as i64;
            match deps.store.renew_lease(&task_id, &control.claim, until).await {
                Ok(Lease::Held) => {}
                Ok(Lease::CancelRequested) => return Abort::Cancel,
                Ok(Lease::Lost) => return Abort::LeaseLost,
                Err(e) => tracing::warn!(task_id, error = %e, "lease renewal failed"),
            }
        }
    };

    // Drafts (previews) are stored and announced as they arrive, beside the generation; the
    // channel closes when the generation ends.
    let (draft_tx, mut draft_rx) = tokio::sync::mpsc::unbounded_channel::<crate::providers::Draft>();
    crate::stats::overhead("setup", claimed_at.elapsed());
    let generation = async {
        let previews = Some(draft_tx);
        generate_all(pool, &task, &req, &inputs, &previews, retention).await
    };
    let drafts = async {
        let mut numbers = std::collections::HashMap::new();
        while let Some(d) = draft_rx.recv().await {
            let number = numbers.entry(d.index).or_insert(0u32);
            super::previews::store(pool, &task_id, d, *number).await;
            *number += 1;
        }
    };
    let generation = async { tokio::join!(generation, drafts).0 };
    // Dropping the generation future aborts the upstream calls (their connections close).
    let outcome = tokio::select! {
        r = generation => Some(r),
        why = heartbeat => { control.abort(why); None }
        _ = control.token.cancelled() => None,
    };
    let Some((stored, errors, tries)) = outcome else {
        pool.signals.clear_previews(&task_id);
        match control.reason() {
            Some(Abort::Cancel) => return finish_cancelled(pool, &task_id, claim).await,
            Some(Abort::LeaseLost) => tracing::warn!(task_id, "lease lost; another claim has the task"),
            Some(Abort::Shutdown) => match deps.store.release_task(&task_id, claim, now_millis()).await {
                Ok(true) => tracing::warn!(task_id, "shutdown: task put back in the queue"),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(task_id, error = %e, "shutdown: could not release the task; its lease will expire")
                }
            },
            None => {}
        }
        return None;
    };

    if stored.is_empty() {
        let err = errors
            .first()
            .map(provider_error_json)
            .unwrap_or_else(|| error_json(502, "upstream_error", "upstream_error", "No image was produced."));
        return finish_failed(pool, &task_id, claim, &err, tries).await;
    }
    let result = result_json(&req, &stored);
    let records: Vec<ImageRecord> = stored.iter().map(|s| s.record.clone()).collect();
    let completing = std::time::Instant::now();
    let completed = persist(pool, || {
        deps.store.complete_task(&task_id, claim, &result, &records, tries, now_millis(), webhooks::event_for)
    })
    .await;
    crate::stats::overhead("complete", completing.elapsed());
    match completed {
        Ok(Some(ended)) => {
            tracing::info!(task_id, images = records.len(), failed = errors.len(), "task completed");
            let images = stored.into_iter().filter_map(|s| Some((s.record.id, s.inline?))).collect();
            Some(Finished { task: woke_for(pool, ended), images, previews: Vec::new() })
        }
        Ok(None) => {
            tracing::warn!(task_id, "task was taken over before it completed; dropping its images");
            for r in &records {
                let _ = deps.blobs.delete(&r.blob_key).await;
            }
            None
        }
        Err(e) => {
            tracing::error!(task_id, error = %e, "could not record completion; the task will run again");
            None
        }
    }
}

/// An upstream call's outcome as a metrics label (a fixed list).
fn outcome_label(r: &Result<GeneratedImage, ProviderError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(ProviderError::RateLimited { .. }) => "rate_limited",
        Err(ProviderError::Overloaded { .. }) => "overloaded",
        Err(ProviderError::Timeout(_)) => "timeout",
        Err(ProviderError::Network(_)) => "network",
        Err(ProviderError::Rejected { .. }) => "rejected",
        Err(ProviderError::Invalid { .. }) => "invalid",
        Err(ProviderError::Auth { .. }) => "auth",
        Err(ProviderError::Malformed { .. }) => "malformed",
        Err(ProviderError::Unavailable) => "unavailable",
    }
}

/// Writes a task's end, again and again while the database is unreachable (a restart, a
/// failover), for as long as the claim's lease could still be ours: the images are paid for
/// and stored, and a task whose end is lost runs again. The claim's fencing token keeps a
/// late write from overriding another claim's.
async fn persist<R, Fut>(pool: &WorkerPool, mut write: impl FnMut() -> Fut) -> Result<R, StoreError>
where
    Fut: std::future::Future<Output = Result<R, StoreError>>,
{
    let give_up = tokio::time::Instant::now() + pool.deps.rt.lease;
    let mut pause = Duration::from_millis(100);
    loop {
        match write().await {
            Err(e) if e.is_transient() && tokio::time::Instant::now() + pause < give_up => {
                tracing::warn!(error = %e, "the database is unreachable; writing the task's end again shortly");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            done => return done,
        }
    }
}

/// Wakes the outbox loops that the task's end gave work (and no others: an idle loop woken
/// for nothing still claims in a write transaction), and hands back the final record.
fn woke_for(pool: &WorkerPool, ended: Ended) -> TaskRecord {
    let took = Duration::from_millis((now_millis() - ended.task.created_at_ms).max(0) as u64);
    crate::stats::task_ended(ended.task.status.as_str(), &ended.task.model, took);
    if ended.webhook_queued {
        pool.deps.deliverer.notify();
    }
    if ended.exports_owed {
        pool.deps.exporter.notify();
    }
    ended.task
}

async fn finish_failed(pool: &WorkerPool, task_id: &str, claim: &str, err: &Value, tries: u32) -> Option<Finished> {
    let store = &pool.deps.store;
    match persist(pool, || store.fail_task(task_id, claim, err, tries, now_millis(), webhooks::event_for)).await {
        Ok(ended) => {
            tracing::info!(task_id, code = %err["code"], "task failed");
            ended.map(|e| woke_for(pool, e).into())
        }
        Err(e) => {
            tracing::error!(task_id, error = %e, "could not record failure; the task will run again");
            None
        }
    }
}

async fn finish_cancelled(pool: &WorkerPool, task_id: &str, claim: &str) -> Option<Finished> {
    let store = &pool.deps.store;
    match persist(pool, || store.finish_cancelled(task_id, claim, now_millis(), webhooks::event_for)).await {
        Ok(ended) => {
            tracing::info!(task_id, "task cancelled while running; upstream calls aborted");
            ended.map(|e| woke_for(pool, e).into())
        }
        Err(e) => {
            tracing::error!(task_id, error = %e, "could not record the cancel");
            None
        }
    }
}

/// Ends a task whose images were made elsewhere, under its holder's `claim` (an upstream
/// batch job's lines): stores what was made, charged at `price_factor` of the price, and
/// completes the task (or fails it with the first error when nothing was made). Wakes its
/// waiters here. `None` when the end could not be written (the holder runs it again).
pub(crate) async fn finish_with(
    pool: &WorkerPool,
    task: &TaskRecord,
    claim: &str,
    outcomes: Vec<Result<GeneratedImage, ProviderError>>,
    price_factor: f64,
) -> Option<Finished> {
    let deps = &pool.deps;
    let task_id = task.id.as_str();
    let req: ImageRequest = match serde_json::from_value(task.request.clone()) {
        Ok(r) => r,
        Err(_) => {
            let err = error_json(500, "api_error", "internal_error", "The stored request could not be read.");
            return finish_failed(pool, task_id, claim, &err, 1).await;
        }
    };
    let retention = match deps.keys.by_id(deps.store.as_ref(), &task.owner).await {
        Ok(Some(k)) => deps.rt.retention_for(&k.policy),
        _ => deps.rt.retention,
    };
    let mut stored = Vec::new();
    let mut errors = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(image) => match store_image(pool, task, &req, image, retention, price_factor).await {
                Ok(s) => stored.push(s),
                Err(e) => errors.push(e),
            },
            Err(e) => errors.push(e),
        }
    }
    let ended = if stored.is_empty() {
        let err = errors
            .first()
            .map(provider_error_json)
            .unwrap_or_else(|| error_json(502, "upstream_error", "upstream_error", "No image was produced."));
        finish_failed(pool, task_id, claim, &err, 1).await
    } else {
        let mut result = result_json(&req, &stored);
        result["served_by"] = json!("batch");
        let records: Vec<ImageRecord> = stored.iter().map(|s| s.record.clone()).collect();
        let store = &deps.store;
        match persist(pool, || {
            store.complete_task(task_id, claim, &result, &records, 1, now_millis(), webhooks::event_for)
        })
        .await
        {
            Ok(Some(ended)) => Some(woke_for(pool, ended).into()),
            Ok(None) => {
                for r in &records {
                    let _ = deps.blobs.delete(&r.blob_key).await;
                }
                None
            }
            Err(e) => {
                tracing::error!(task_id, error = %e, "could not record a batch line's end");
                None
            }
        }
    };
    if let Some(f) = &ended {
        pool.signals.finish(task_id, Some(f.clone()));
    }
    ended
}

/// Ends a task held under `claim` as failed, with `err` (`error_json`), or as cancelled when
/// `err` is `None`, waking its waiters.
pub(crate) async fn end_held(pool: &WorkerPool, task_id: &str, claim: &str, err: Option<&Value>) -> Option<Finished> {
    let ended = match err {
        Some(e) => finish_failed(pool, task_id, claim, e, 1).await,
        None => finish_cancelled(pool, task_id, claim).await,
    };
    if let Some(f) = &ended {
        pool.signals.finish(task_id, Some(f.clone()));
    }
    ended
}

/// Generates and stores the request's n images in parallel. Returns what was stored, what
/// failed, and how many upstream tries were made.
async fn generate_all(
    pool: &WorkerPool,
    task: &TaskRecord,
    req: &ImageRequest,
    inputs: &Inputs,
    previews: &Option<PreviewSink>,
    retention: std::time::Duration,
) -> (Vec<StoredImage>, Vec<ProviderError>, u32) {
    let results = join_all((0..req.n).map(|i| generate_one(pool, task, req, inputs, previews, i, retention))).await;
    let mut stored = Vec::new();
    let mut errors = Vec::new();
    let mut tries = 0;
    for (r, t) in results {
        tries += t;
        match r {
            Ok(s) => stored.push(s),
            Err(e) => errors.push(e),
        }
    }
    (stored, errors, tries)
}

/// One image: the request's model first, then its configured fallback models (if any), all
/// within the one per-resolution deadline.
async fn generate_one(
    pool: &WorkerPool,
    task: &TaskRecord,
    req: &ImageRequest,
    inputs: &Inputs,
    previews: &Option<PreviewSink>,
    index: u32,
    retention: std::time::Duration,
) -> (Result<StoredImage, ProviderError>, u32) {
    let deps = &pool.deps;
    let started = std::time::Instant::now();
    let deadline = deps.rt.deadline(req.resolution());
    let fallbacks = deps.rt.fallbacks.get(&req.upstream_model).cloned().unwrap_or_default();
    let mut tries = 0;
    let mut last = ProviderError::Unavailable;
    for (i, model) in std::iter::once(req.upstream_model.clone()).chain(fallbacks).enumerate() {
        let attempt = if i == 0 { req.clone() } else { req.with_fallback(&model) };
        if i > 0 {
            tracing::warn!(task_id = task.id, from = req.upstream_model, to = model, error = %last, "falling back to another model");
        }
        let (result, t) = try_model(pool, task, &attempt, inputs, previews, index, started, deadline).await;
        tries += t;
        match result {
            Ok(image) => return (store_image(pool, task, &attempt, image, retention, 1.0).await, tries),
            Err(e) if e.is_retryable() || matches!(e, ProviderError::Unavailable) => last = e,
            Err(e) => return (Err(e), tries),
        }
        if started.elapsed() >= deadline {
            break;
        }
    }
    (Err(last), tries)
}

/// One model: tries channels with failover and backoff until it succeeds, the error is final,
/// the tries run out or the per-resolution deadline would be passed.
#[allow(clippy::too_many_arguments)]
async fn try_model(
    pool: &WorkerPool,
    task: &TaskRecord,
    req: &ImageRequest,
    inputs: &Inputs,
    previews: &Option<PreviewSink>,
    index: u32,
    started: std::time::Instant,
    deadline: std::time::Duration,
) -> (Result<GeneratedImage, ProviderError>, u32) {
    let deps = &pool.deps;
    let options = std::sync::Arc::new(crate::providers::Options::of(req));
    let router = deps.providers.for_model(&req.upstream_model);
    let mut failed_channels: Vec<usize> = Vec::new();
    let mut tries = 0u32;
    loop {
        let remaining = deadline.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return (Err(ProviderError::Timeout(deadline)), tries);
        }
        let wait_until = std::time::Instant::now() + remaining;
        let lease = match tokio::time::timeout(remaining, router.acquire(&failed_channels, wait_until)).await {
            Ok(Ok(lease)) => lease,
            Ok(Err(NoChannel::Unhealthy)) => return (Err(ProviderError::Unavailable), tries),
            Ok(Err(NoChannel::RateLimited(wait))) => {
                let message = "every upstream channel for this model is rate limited".to_string();
                return (Err(ProviderError::RateLimited { retry_after: Some(wait), message }), tries);
            }
            Err(_) => return (Err(ProviderError::Timeout(deadline)), tries),
        };
        let remaining = deadline.saturating_sub(started.elapsed());
        let remaining = deps.rt.retry.try_timeout.map_or(remaining, |t| t.min(remaining));
        let preq = ProviderRequest::for_image(req, index, remaining, inputs.clone(), options.clone(), previews.clone());
        let channel = lease.channel.spec.name.clone();
        let call_started = std::time::Instant::now();
        tries += 1;
        let result = match tokio::time::timeout(remaining, lease.channel.provider.generate(&preq)).await {
            Ok(r) => r,
            Err(_) => Err(ProviderError::Timeout(remaining)),
        };
        let latency_ms = call_started.elapsed().as_millis() as u64;
        crate::stats::upstream_call(&channel, outcome_label(&result), call_started.elapsed());
        let error = match result {
            Ok(image) => {
                lease.report(Ok(()));
                // One info line per task ("task completed") is enough at the default level.
                tracing::debug!(
                    task_id = task.id,
                    channel,
                    index,
                    try_no = tries,
                    latency_ms,
                    "upstream call succeeded"
                );
                return (Ok(image), tries);
            }
            Err(e) => e,
        };
        tracing::warn!(task_id = task.id, channel, index, try_no = tries, latency_ms, error = %error, "upstream call failed");
        lease.report(Err(&error));
        if !error.is_retryable() && !matches!(error, ProviderError::Auth { .. }) {
            return (Err(error), tries);
        }
        let this_channel = router.channels.iter().position(|c| c.spec.name == channel).unwrap_or(usize::MAX);
        failed_channels.push(this_channel);
        // A refused credential or a channel-specific fault: fail over at once if another
        // channel can take the call; otherwise back off (honouring the server's hint).
        let fail_over = (error.is_channel_fault() || matches!(error, ProviderError::Auth { .. }))
            && router.has_alternative(&failed_channels);
        if fail_over && tries < deps.rt.retry.max_attempts {
            continue;
        }
        if matches!(error, ProviderError::Auth { .. }) {
            return (Err(error), tries);
        }
        match deps.rt.retry.decide(tries, true, error.retry_after(), started.elapsed(), deadline, rand::random::<f64>())
        {
            Decision::RetryAfter(d) => tokio::time::sleep(d).await,
            Decision::GiveUp => return (Err(error), tries),
        }
    }
}

/// Transcodes if asked, then writes the blob. Storage failures are reported as retryable
/// upstream-side failures would be: the image is not lost silently, the task fails loudly.
async fn store_image(
    pool: &WorkerPool,
    task: &TaskRecord,
    req: &ImageRequest,
    image: GeneratedImage,
    retention: std::time::Duration,
    price_factor: f64,
) -> Result<StoredImage, ProviderError> {
    let deps = &pool.deps;
    let storing = std::time::Instant::now();
    let (bytes, format, (width, height)) = match req.output_format {
        // Kept as sent: sniffing the format and reading the size take a header, not a decode.
        None => {
            let format = imaging::sniff(&image.bytes).unwrap_or(OutputFormat::Jpeg);
            match imaging::dimensions(&image.bytes) {
                Ok(dims) => (image.bytes.clone(), format, dims),
                Err(e) => return Err(ProviderError::Malformed { message: format!("upstream image unusable: {e}") }),
            }
        }
        Some(to) => {
            let (source, quality) = (image.bytes.clone(), req.output_compression);
            // Paid work: it waits for a slot of the bounded pool rather than being refused.
            let converted = deps
                .conversions
                .run(move || {
                    let bytes = imaging::transcode(source, to, quality)?;
                    let dims = imaging::dimensions(&bytes)?;
                    Ok::<_, imaging::ImagingError>((bytes, to, dims))
                })
                .await;
            match converted {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    return Err(ProviderError::Malformed { message: format!("upstream image unusable: {e}") });
                }
                Err(e) => {
                    return Err(ProviderError::Malformed { message: format!("image conversion stopped: {e}") });
                }
            }
        }
    };
    let id = ids::image_id();
    let blob_key = format!("{id}.{}", format.ext());
    // Stored bytes never change under an image id, so the id is a strong validator: no need to
    // hash megabytes per image (that was a tenth of the CPU of a 1024×1024 request).
    let etag = format!("\"{}\"", id.trim_start_matches("img_"));
    let size = bytes.len() as i64;
    let inline = (req.response_format == ResponseFormat::B64Json).then(|| bytes.clone());
    if let Err(e) = deps.blobs.put(&blob_key, bytes, format.mime()).await {
        tracing::error!(task_id = task.id, error = %e, "storing an image failed");
        return Err(ProviderError::Malformed { message: "the image could not be stored".into() });
    }
    let (url, url_expires_at) = deps.urls.url_for(&blob_key).await;
    let cost_usd =
        crate::domain::pricing::round6(deps.rt.prices.per_image(req.family(), req.resolution()) * price_factor);
    crate::stats::image_stored(&req.model, size as u64, (cost_usd * 1e6).round() as u64);
    crate::stats::overhead("store", storing.elapsed());
    Ok(StoredImage {
        record: ImageRecord {
            id,
            task_id: task.id.clone(),
            owner: task.owner.clone(),
            blob_key,
            content_type: format.mime().to_string(),
            bytes: size,
            width,
            height,
            etag,
            created_at_ms: now_millis(),
            expires_at: now_secs() + retention.as_secs() as i64,
            cost_usd,
        },
        model: (req.model_served()).map(str::to_string),
        url,
        url_expires_at,
        revised_prompt: image.text,
        signature: image.signature,
        input_tokens: image.input_tokens,
        output_tokens: image.output_tokens,
        inline,
    })
}

/// The sync response body, stored as the task's result: URLs, never image bytes.
fn result_json(req: &ImageRequest, stored: &[StoredImage]) -> Value {
    let data: Vec<Value> = stored
        .iter()
        .map(|s| {
            let mut item = json!({
                "url": s.url,
                "id": s.record.id,
                "expires_at": s.record.expires_at,
                "width": s.record.width,
                "height": s.record.height,
                "content_type": s.record.content_type,
            });
            if let Some(t) = &s.revised_prompt {
                item["revised_prompt"] = json!(t);
            }
            if let Some(m) = &s.model {
                item["model"] = json!(m);
            }
            if let Some(sig) = &s.signature {
                item["signature"] = json!(sig);
            }
            if let Some(t) = s.url_expires_at {
                item["url_expires_at"] = json!(t);
            }
            item
        })
        .collect();
    let input: u64 = stored.iter().map(|s| s.input_tokens).sum();
    let output: u64 = stored.iter().map(|s| s.output_tokens).sum();
    let (w, h) = req.shape().pixels();
    let cost = crate::domain::pricing::round6(stored.iter().map(|s| s.record.cost_usd).sum());
    let mut result = json!({
        "created": now_secs(),
        "data": data,
        "size": format!("{w}x{h}"),
        "output_format": stored.first().map(|s| s.record.content_type.trim_start_matches("image/")),
        "usage": {
            "input_tokens": input,
            "output_tokens": output,
            "total_tokens": input + output,
            "images": stored.len(),
            "cost_usd": cost,
        }
    });
    // A flex task says which path served it (an upstream batch job sets "batch").
    if req.service_tier.is_some() {
        result["served_by"] = json!("realtime");
    }
    result
}
