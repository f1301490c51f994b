//! `POST /v1/images/generations` (sync; durable) and `/v1/images/generations/async`.
//!
//! Both write a task before any upstream call. The sync route then waits for the task's end;
//! if the client goes away, the wait is dropped but the task runs to the end and its images are
//! kept (`GET /v1/tasks/{id}`, or a retry with the same Idempotency-Key).

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::extract::RawJson;
use std::borrow::Cow;

use super::body;
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::domain::request::{self, ImageRequest, ResponseFormat};
use crate::domain::task::{TaskMode, TaskStatus};
use crate::domain::{ids, now_millis};
use crate::domain::{models, now_secs, utc_day};
use crate::store::{
    BatchLink, Created, InputRecord, KeyRecord, LANE_BATCH, LANE_REALTIME, LANE_UPSTREAM, LimitHit, Limits, NewTask,
    Reservation, TaskRecord, WebhookTarget,
};
use crate::task_view::task_object;
use crate::webhooks;
use crate::worker::{Finished, Subscription};

/// Fields the async routes take on top of the image fields.
pub(super) const TASK_FIELDS: &[&str] = &["webhook_url", "webhook_events"];
/// The async generation route's deadline routing (`crate::domain::flex`).
const FLEX_FIELDS: &[&str] = &["webhook_url", "webhook_events", "service_tier", "deadline"];

const MAX_IDEMPOTENCY_KEY: usize = 255;

#[utoipa::path(
    post,
    path = "/v1/images/generations",
    tag = "Images",
    summary = "Generate images",
    description = "OpenAI's images API. Durable: the request is a task that finishes, is stored and can be fetched by its id (`imagegate-task-id`) even if the client goes away. `stream: true` answers with server-sent events.",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h gets the first request's task back instead of a new one"),
        ("Prefer" = Option<String>, Header, description = "`respond-async`: answer 202 with the task at once"),
    ),
    request_body = doc::images::GenerationRequest,
    responses(
        (status = 200, description = "The images (URLs unless `b64_json` was asked); with `stream: true`, `text/event-stream`", content((doc::images::ImagesResponse = "application/json"), (doc::common::ServerSentEvent = "text/event-stream")), headers(("imagegate-task-id" = String, description = "The id of the task that holds this request"))),
        (status = 202, description = "With `Prefer: respond-async`: the queued task", body = doc::tasks::Task, headers(("imagegate-task-id" = String, description = "The id of the task that holds this request")), links(("GetTask" = (operation_id = "get_task", parameters(("id" = "$response.body#/id")))), ("CancelTask" = (operation_id = "cancel_task", parameters(("id" = "$response.body#/id")))), ("TaskEvents" = (operation_id = "task_events", parameters(("id" = "$response.body#/id")))), ("WebhookDeliveries" = (operation_id = "list_webhook_deliveries", parameters(("id" = "$response.body#/id")))))),
        doc::common::KeyErrors,
    )
)]
pub async fn create_image(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    headers: HeaderMap,
    RawJson(bytes): RawJson,
) -> Result<Response, ApiError> {
    let wants_async = wants_async(&headers);
    let mode = if wants_async { TaskMode::Async } else { TaskMode::Sync };
    // `Prefer: respond-async` makes this the async route, webhook fields included.
    let submission = generation(&bytes, if wants_async { FLEX_FIELDS } else { &[] })?;
    let submitted = Box::pin(submit(&app, &key, mode, submission, &headers)).await?;
    // The body (it may carry megabytes of data: URLs, now stored) is not kept for the wait.
    drop(bytes);
    answer(&app, key, headers, mode, submitted).await
}

#[utoipa::path(
    post,
    path = "/v1/images/generations/async",
    tag = "Images",
    summary = "Submit a generation, get the task",
    description = "Answers 202 with the task at once; poll it, stream its events or receive a webhook.",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h gets the first request's task back instead of a new one"),
    ),
    request_body = doc::images::GenerationRequest,
    responses(
        (status = 202, description = "The queued task", body = doc::tasks::Task, headers(("imagegate-task-id" = String, description = "The id of the task that holds this request")), links(("GetTask" = (operation_id = "get_task", parameters(("id" = "$response.body#/id")))), ("CancelTask" = (operation_id = "cancel_task", parameters(("id" = "$response.body#/id")))), ("TaskEvents" = (operation_id = "task_events", parameters(("id" = "$response.body#/id")))), ("WebhookDeliveries" = (operation_id = "list_webhook_deliveries", parameters(("id" = "$response.body#/id")))))),
        doc::common::KeyErrors,
    )
)]
pub async fn create_image_async(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    headers: HeaderMap,
    RawJson(bytes): RawJson,
) -> Result<Response, ApiError> {
    let submission = generation(&bytes, FLEX_FIELDS)?;
    let submitted = Box::pin(submit(&app, &key, TaskMode::Async, submission, &headers)).await?;
    drop(bytes);
    answer(&app, key, headers, TaskMode::Async, submitted).await
}

pub(super) fn wants_async(headers: &HeaderMap) -> bool {
    crate::api::extract::header_tokens(headers, "prefer").any(|p| p.eq_ignore_ascii_case("respond-async"))
}

/// A generations body: its fields validated, its `reference_images` left in the body's bytes.
fn generation<'b>(bytes: &'b [u8], extra: &[&str]) -> Result<Submission<'b>, ApiError> {
    let body::Split { fields, inputs } = body::split(bytes, &["reference_images"])?;
    if !extra.contains(&"service_tier") && fields.get("service_tier").is_some_and(|t| t != "default" && t != "auto") {
        return Err(ApiError::bad_request(
            "invalid_value",
            "\"service_tier\": \"flex\" is for async requests: POST /v1/images/generations/async, or send Prefer: respond-async.",
        )
        .with_param("service_tier"));
    }
    let mut req = request::validate(&fields, extra)?;
    if extra.contains(&"service_tier") {
        req.deadline_at = crate::domain::flex::parse(&fields, now_secs())?;
        req.service_tier = req.deadline_at.map(|_| "flex".to_string());
    }
    let references = match inputs.get("reference_images") {
        Some(raw) => body::string_list(raw, "reference_images")?,
        None => Vec::new(),
    };
    request::check_input_count(req.family(), &req.model, references.len(), "reference_images")?;
    for (param, text) in &references {
        request::check_reference(text, param)?;
    }
    let images = references.into_iter().map(|(p, t)| (p, Source::Named(t))).collect();
    Ok(Submission { req, fields, inputs: Pending::References { images, mask: None } })
}

/// Answers a submitted task: 202 with the task for async, else the task's end.
pub(super) async fn answer(
    app: &Arc<App>,
    key: KeyRecord,
    headers: HeaderMap,
    mode: TaskMode,
    submitted: (Submitted<'_>, ImageRequest),
) -> Result<Response, ApiError> {
    // The submit and response steps are boxed, and the body, headers and key record dropped
    // before the wait: a sync request may wait minutes, and thousands may wait at once.
    if mode == TaskMode::Async {
        return accepted(app, &submitted.0).await;
    }
    let (submitted, req) = submitted;
    let owner = key.id.clone();
    drop((headers, key));
    if req.stream {
        return super::stream::respond(app.clone(), owner, submitted, req).await;
    }
    let ended = wait_for_end(app, &owner, submitted, &req).await?;
    Box::pin(respond_with_task(app, &ended, &req)).await
}

/// What a route hands to `submit`: the validated request (its inputs not yet set), the body's
/// plain fields (webhook fields, the Idempotency-Key hash), and the inputs.
pub(crate) struct Submission<'b> {
    pub req: ImageRequest,
    pub fields: Value,
    pub inputs: Pending<'b>,
}

/// A request's input images before the task is written.
pub(crate) enum Pending<'b> {
    /// Named by reference (image ids, `https` and `data:` URLs) or sent inline (base64), each
    /// with its `param`, borrowed from the body; stored once the request has passed its limits.
    References { images: Vec<(String, Source<'b>)>, mask: Option<(String, Source<'b>)> },
    /// Uploaded (multipart) and stored already, with the task id they were stored for.
    Stored { task_id: String, images: Vec<InputRecord>, mask: Option<InputRecord> },
}

/// One input before it is stored.
pub(crate) enum Source<'b> {
    /// An image id of the key, an `https` URL or a `data:` URL.
    Named(Cow<'b, str>),
    /// Base64 bytes (Gemini's `inlineData`).
    Inline(Cow<'b, str>),
}

impl Source<'_> {
    fn text(&self) -> &str {
        match self {
            Source::Named(t) | Source::Inline(t) => t,
        }
    }
}

impl Pending<'_> {
    /// What the inputs add to the Idempotency-Key hash: the references as sent, the uploads'
    /// contents.
    fn digest(&self) -> String {
        let mut h = Sha256::new();
        match self {
            Pending::References { images, mask } => {
                for (_, source) in images.iter().chain(mask) {
                    h.update(Sha256::digest(source.text().as_bytes()));
                }
                if mask.is_some() {
                    h.update(b"mask");
                }
            }
            Pending::Stored { images, mask, .. } => {
                for i in images.iter().chain(mask) {
                    h.update(i.sha256.as_bytes());
                }
                if mask.is_some() {
                    h.update(b"mask");
                }
            }
        }
        ids::hex(&h.finalize())
    }
}

async fn accepted(app: &App, submitted: &Submitted<'_>) -> Result<Response, ApiError> {
    let task = &submitted.task;
    let position = match (task.status, submitted.queue_position) {
        (TaskStatus::Queued, Some(p)) => Some(p),
        (TaskStatus::Queued, None) => Some(app.store.queue_position(task).await?),
        _ => None,
    };
    let mut v = task_object(task, position);
    if crate::task_view::has_inputs(&v) {
        let inputs = match &submitted.inputs {
            Some(i) => i.clone(),
            None => app.store.task_inputs(&task.owner, &task.id).await?,
        };
        crate::task_view::with_inputs(&mut v, &inputs);
    }
    Ok(with_task_header((StatusCode::ACCEPTED, axum::Json(v)).into_response(), &task.id))
}

/// `webhook_url` (checked against SSRF now and again at delivery) and `webhook_events`.
async fn webhook_target(app: &App, body: &Value) -> Result<Option<WebhookTarget>, ApiError> {
    let url = match body.get("webhook_url") {
        None | Some(Value::Null) => {
            if body.get("webhook_events").is_some_and(|e| !e.is_null()) {
                return Err(ApiError::bad_request("invalid_value", "'webhook_events' needs a 'webhook_url'.")
                    .with_param("webhook_events"));
            }
            return Ok(None);
        }
        Some(Value::String(u)) if u.len() <= 2048 => u,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_value",
                "'webhook_url' must be a URL string of at most 2048 characters.",
            )
            .with_param("webhook_url"));
        }
    };
    let events: Vec<String> = match body.get("webhook_events") {
        None | Some(Value::Null) => webhooks::DEFAULT_EVENTS.iter().map(|e| e.to_string()).collect(),
        Some(Value::Array(items)) if !items.is_empty() => {
            let mut events = Vec::new();
            for item in items {
                match item.as_str() {
                    Some(e) if webhooks::EVENTS.contains(&e) => {
                        if !events.iter().any(|x| x == e) {
                            events.push(e.to_string());
                        }
                    }
                    _ => {
                        return Err(ApiError::bad_request(
                            "invalid_value",
                            format!("'webhook_events' items must be among {}.", webhooks::EVENTS.join(", ")),
                        )
                        .with_param("webhook_events"));
                    }
                }
            }
            events
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_value",
                "'webhook_events' must be a non-empty array of event names.",
            )
            .with_param("webhook_events"));
        }
    };
    let checked = crate::egress::guard::check_target(app.rt.resolver.0.as_ref(), url, app.rt.webhook_allow_private)
        .await
        .map_err(|e| {
            ApiError::bad_request("invalid_webhook_url", format!("webhook_url {e}.")).with_param("webhook_url")
        })?;
    Ok(Some(WebhookTarget { url: checked.to_string(), events }))
}

pub fn with_task_header(mut resp: Response, task_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(task_id) {
        resp.headers_mut().insert("imagegate-task-id", v);
    }
    resp
}

/// A submitted task, and for a sync task started at once in this process, the subscription to
/// its end (taken before it started, so the end cannot be missed and need not be read back).
pub(crate) struct Submitted<'a> {
    pub(crate) task: TaskRecord,
    watch: Option<Subscription<'a>>,
    /// Queued tasks ahead of a task just queued, as counted when it was written.
    queue_position: Option<i64>,
    /// The inputs of a task just written.
    inputs: Option<Vec<InputRecord>>,
}

/// Stores the inputs named by reference (after the request passed its limits, before the task
/// is written); returns the task's id, its inputs in order (the mask last), and the request as
/// the task keeps it (what was sent or fetched replaced by the id of the input it became).
async fn store_inputs(
    app: &App,
    key: &KeyRecord,
    req: &ImageRequest,
    pending: Pending<'_>,
) -> Result<(String, Vec<InputRecord>, ImageRequest), ApiError> {
    let mut kept = req.clone();
    let (task_id, images, mask) = match pending {
        Pending::Stored { task_id, images, mask } => {
            kept.reference_images = images.iter().map(|i| i.id.clone()).collect();
            (task_id, images, mask)
        }
        Pending::References { images: refs, mask: mask_ref } => {
            let task_id = ids::task_id();
            let mut inputs = crate::inputs::Inputs {
                store: &app.store,
                blobs: &app.blobs,
                fetcher: &app.fetcher,
                resolver: app.rt.resolver.0.as_ref(),
                limits: app.rt.inputs,
                expires_at: now_secs() + app.rt.retention_for(&key.policy).as_secs() as i64,
                total: 0,
            };
            let mut images = Vec::with_capacity(refs.len());
            kept.reference_images.clear();
            for (position, (param, source)) in refs.iter().enumerate() {
                let rec = store_source(&mut inputs, key, &task_id, position as u32, source, param).await?;
                kept.reference_images.push(match source {
                    Source::Named(t) if t.starts_with("img_") => t.to_string(),
                    _ => rec.id.clone(),
                });
                images.push(rec);
            }
            let mask = match mask_ref {
                Some((param, source)) => {
                    let position = images.len() as u32;
                    let rec = store_source(&mut inputs, key, &task_id, position, &source, &param).await?;
                    crate::inputs::check_mask(&rec, images.first(), &param)?;
                    Some(rec)
                }
                None => None,
            };
            (task_id, images, mask)
        }
    };
    kept.mask = mask.as_ref().map(|m| m.id.clone());
    let mut all = images;
    all.extend(mask);
    Ok((task_id, all, kept))
}

async fn store_source(
    inputs: &mut crate::inputs::Inputs<'_>,
    key: &KeyRecord,
    task_id: &str,
    position: u32,
    source: &Source<'_>,
    param: &str,
) -> Result<InputRecord, ApiError> {
    Ok(match source {
        Source::Named(t) => inputs.store_reference(&key.id, task_id, position, t, param, now_millis()).await?,
        Source::Inline(b64) => inputs.store_base64(&key.id, task_id, position, b64, param, now_millis()).await?,
    })
}

/// Writes the task (or finds the one this Idempotency-Key already made) and wakes a worker.
pub(crate) async fn submit<'a>(
    app: &'a App,
    key: &KeyRecord,
    mode: TaskMode,
    submission: Submission<'_>,
    headers: &HeaderMap,
) -> Result<(Submitted<'a>, ImageRequest), ApiError> {
    let Submission { req, fields: body, inputs: pending } = submission;
    let submitted = submit_request(app, key, mode, &req, &body, pending, headers, None, false).await?;
    Ok((submitted, req))
}

/// Writes the task of a batch's line (mode `batch`), through the same checks, inputs and
/// idempotency as every other submit, so a line's images get their URLs, retention, export
/// and webhooks like any task's. `idempotency` names the line: a driver that runs the line
/// again (after a restart) gets the task it made the first time. Batch lines take no
/// rate-limit token and do not count against the key's concurrency (they wait in their own,
/// lower lane); daily images and budget apply. `upstream`: the line waits for an upstream
/// batch job (and reserves the batch price) instead of a worker.
pub(crate) async fn submit_line(
    app: &App,
    key: &KeyRecord,
    link: BatchLink,
    idempotency: &str,
    submission: Submission<'_>,
    upstream: bool,
) -> Result<TaskRecord, ApiError> {
    let mut headers = HeaderMap::new();
    headers.insert("idempotency-key", HeaderValue::from_str(idempotency).map_err(|e| ApiError::internal(&e))?);
    let Submission { req, fields, inputs } = submission;
    let submitted =
        submit_request(app, key, TaskMode::Batch, &req, &fields, inputs, &headers, Some(link), upstream).await?;
    Ok(submitted.task)
}

/// A generations line's submission: its body as the async route takes it.
pub(crate) fn generation_line(body: &[u8]) -> Result<Submission<'_>, ApiError> {
    generation(body, TASK_FIELDS)
}

#[allow(clippy::too_many_arguments)]
async fn submit_request<'a>(
    app: &'a App,
    key: &KeyRecord,
    mode: TaskMode,
    req: &ImageRequest,
    body: &Value,
    pending: Pending<'_>,
    headers: &HeaderMap,
    batch: Option<BatchLink>,
    upstream: bool,
) -> Result<Submitted<'a>, ApiError> {
    let owner = key.id.as_str();
    let idempotency = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let key = v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_idempotency_key",
                    format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} visible ASCII characters."),
                )
            })?;
            // serde_json's maps are ordered by key, so this is a canonical form of the body;
            // the inputs add their own digest.
            let mut hash = Sha256::new();
            hash.update(body.to_string().as_bytes());
            hash.update(pending.digest().as_bytes());
            let hash = hash.finalize();
            Some((key.to_string(), ids::hex(&hash)))
        }
    };
    // A retry of a request already made (same key, same body) gets its task before any limit
    // is checked: the client was told to retry after a dropped connection, and a retry must
    // neither be refused nor spend a rate-limit token.
    if let Some((k, hash)) = &idempotency
        && let Some((task, stored_hash)) = app.store.find_idempotent(owner, k, now_millis()).await?
    {
        if &stored_hash != hash {
            return Err(idempotency_conflict());
        }
        return Ok(Submitted { task, watch: None, queue_position: None, inputs: None });
    }
    let policy = app.rt.policy_for(&key.policy);
    if !policy.allows_model(&req.model) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "model_not_allowed",
            format!("This API key may not use the model '{}'.", req.model),
        )
        .with_param("model"));
    }
    if let Some(rpm) = policy.rpm.filter(|r| *r > 0 && mode != TaskMode::Batch)
        && let Some(wait) = app.store.take_rate(&format!("key:{owner}"), rpm, now_millis()).await?
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            format!("Rate limit reached: this key may make {rpm} requests per minute."),
        )
        .with_retry_after(wait.as_secs().max(1)));
    }
    let family = models::resolve(&req.upstream_model).map(|m| m.family).unwrap_or(models::Family::Pro);
    let reservation = Reservation {
        images: req.n,
        cost_usd: crate::domain::pricing::round6(
            app.rt.prices.cost(family, req.resolution(), req.n)
                * if upstream { app.rt.prices.batch_factor } else { 1.0 },
        ),
        day: utc_day(now_secs()),
    };
    let limits = Limits {
        max_concurrency: policy.max_concurrency.filter(|_| mode != TaskMode::Batch),
        daily_images: policy.daily_images,
        budget_usd: policy.budget_usd,
    };
    let webhook = webhook_target(app, body).await?;
    let (task_id, inputs, stored_req) = store_inputs(app, key, req, pending).await?;
    // A flex request waits for an upstream batch job when its model's provider has one.
    let flex =
        batch.is_none() && req.deadline_at.is_some() && crate::batches::upstream::can_batch(app, &req.upstream_model);
    let new = NewTask {
        id: task_id,
        owner: owner.to_string(),
        mode,
        model: req.model.clone(),
        request: serde_json::to_value(&stored_req).map_err(|e| ApiError::internal(&e))?,
        idempotency,
        webhook,
        reservation,
        limits,
        created_at_ms: now_millis(),
        claimed: None,
        inputs: inputs.clone(),
        deadline_at: req.deadline_at.filter(|_| flex),
        request_id: headers.get("x-request-id").and_then(|v| v.to_str().ok()).map(str::to_string),
        lane: match (&batch, upstream) {
            (None, _) if flex => LANE_UPSTREAM,
            (None, _) => LANE_REALTIME,
            (Some(_), false) => LANE_BATCH,
            (Some(_), true) => LANE_UPSTREAM,
        },
        batch,
    };
    // A sync request that finds a free worker slot starts at once: written already claimed,
    // run by this process without a round trip through the queue.
    let slot = if mode == TaskMode::Sync { app.workers.try_slot() } else { None };
    let new = match &slot {
        Some(s) => NewTask { claimed: Some((s.claim().to_string(), s.lease_until_ms())), ..new },
        None => new,
    };
    match app.store.create_task(new).await? {
        Created::New { task, queue_position } => {
            let watch = match slot {
                Some(slot) => {
                    let watch = app.workers.signals.subscribe(&task.id);
                    app.workers.launch(task.clone(), slot);
                    Some(watch)
                }
                None => {
                    app.workers.notify();
                    None
                }
            };
            Ok(Submitted { task, watch, queue_position, inputs: Some(inputs) })
        }
        Created::Existing(task) => Ok(Submitted { task, watch: None, queue_position: None, inputs: None }),
        Created::Conflict => Err(idempotency_conflict()),
        Created::OverLimit(hit) => Err(over_limit(hit)),
    }
}

fn idempotency_conflict() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "idempotency_key_reused",
        "This Idempotency-Key was already used with a different request body.",
    )
}

/// A 429 that says which limit and when to come back.
fn over_limit(hit: LimitHit) -> ApiError {
    let (code, message, retry_after) = match hit {
        LimitHit::Concurrency { limit } => (
            "concurrency_limit_exceeded",
            format!("This key already has {limit} tasks queued or running, its limit; wait for one to finish."),
            5,
        ),
        LimitHit::DailyImages { limit, used } => (
            "daily_image_limit_exceeded",
            format!("This key has used {used} of its {limit} images for today (UTC)."),
            (86_400 - now_secs().rem_euclid(86_400)) as u64,
        ),
        LimitHit::Budget { limit, used } => (
            "insufficient_quota",
            format!("This request would take the key past its budget of ${limit:.2} (${used:.2} spent or reserved)."),
            3600,
        ),
    };
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message).with_retry_after(retry_after)
}

/// Waits until the task ends, or until its deadline (plus slack for queueing) passes.
pub(crate) async fn wait_for_end(
    app: &App,
    owner: &str,
    submitted: Submitted<'_>,
    req: &ImageRequest,
) -> Result<Finished, ApiError> {
    let Submitted { task, watch, .. } = submitted;
    if task.status.is_terminal() {
        return Ok(task.into());
    }
    let task_id = task.id.clone();
    let limit = app.rt.deadline(req.resolution()) + Duration::from_secs(60);
    let give_up = tokio::time::Instant::now() + limit;
    // Subscribed before the task started: nothing to read until a change arrives. Otherwise
    // subscribe, then read (a change in between is not missed).
    let (mut changes, mut known) = match watch {
        Some(w) => (w, Some(task)),
        None => (app.workers.signals.subscribe(&task_id), None),
    };
    loop {
        if let Some(ended) = changes.ended() {
            return Ok(ended);
        }
        let current = match known.take() {
            Some(t) => t,
            None => app
                .store
                .get_task(owner, &task_id)
                .await?
                .ok_or_else(|| ApiError::not_found("The task disappeared."))?,
        };
        if current.status.is_terminal() {
            return Ok(current.into());
        }
        // The wake-up covers this process; the periodic re-read covers another replica's worker.
        let poll = tokio::time::sleep(Duration::from_secs(2));
        tokio::select! {
            r = changes.changed() => {
                if r.is_err() {
                    changes = app.workers.signals.subscribe(&task_id);
                }
            }
            _ = poll => {}
            _ = tokio::time::sleep_until(give_up) => {
                return Err(ApiError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "still_running",
                    format!(
                        "The image is still being generated. It will be kept: fetch it with GET /v1/tasks/{task_id}."
                    ),
                )
                .with_task(&task_id));
            }
        }
    }
}

/// The sync response for an ended task: its result (with images inlined for `b64_json`), or its error.
async fn respond_with_task(app: &App, ended: &Finished, req: &ImageRequest) -> Result<Response, ApiError> {
    let task = &ended.task;
    match task.status {
        TaskStatus::Completed => {
            let mut result = task.result.clone().unwrap_or_else(|| json!({"data": []}));
            if req.response_format == ResponseFormat::B64Json {
                let body = inline_images(app, &mut result, &ended.images).await.map_err(|e| e.with_task(&task.id))?;
                let resp = ([(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
                return Ok(with_task_header(resp, &task.id));
            }
            app.urls.refresh(&mut result).await;
            Ok(with_task_header(axum::Json(result).into_response(), &task.id))
        }
        TaskStatus::Failed => {
            Err(ApiError::from_task_error(task.error.as_ref().unwrap_or(&Value::Null)).with_task(&task.id))
        }
        TaskStatus::Cancelled => {
            Err(ApiError::new(StatusCode::CONFLICT, "task_cancelled", "The task was cancelled.").with_task(&task.id))
        }
        TaskStatus::Queued | TaskStatus::Running => {
            Err(ApiError::new(StatusCode::GATEWAY_TIMEOUT, "still_running", "The image is still being generated.")
                .with_task(&task.id))
        }
    }
}

/// The response body with each image inlined as `b64_json` instead of its `url`, as OpenAI's
/// `response_format: b64_json` answers. The bytes come from `at_hand` (the worker's, when the
/// task ended in this process) or else from storage. Megabytes of base64 are encoded off the
/// async threads straight into the body, between the pieces of the serialized result (a
/// placeholder per image), instead of going through a JSON value and its serializer.
pub(crate) async fn inline_images(
    app: &App,
    result: &mut Value,
    at_hand: &[(String, Bytes)],
) -> Result<Vec<u8>, ApiError> {
    // Unpredictable, so no text in the result (a revised prompt) can pose as a placeholder.
    let nonce: u64 = rand::random();
    let mut images = Vec::new();
    if let Some(items) = result.get_mut("data").and_then(|d| d.as_array_mut()) {
        for item in items {
            let Some(id) = item.get("id").and_then(|v| v.as_str()).map(str::to_string) else {
                continue;
            };
            let bytes = image_bytes(app, &id, at_hand).await?;
            if let Some(obj) = item.as_object_mut() {
                obj.remove("url");
                obj.insert("b64_json".into(), json!(placeholder(nonce, images.len())));
            }
            images.push(bytes);
        }
    }
    let skeleton = serde_json::to_vec(result).map_err(|e| ApiError::internal(&e))?;
    tokio::task::spawn_blocking(move || splice_base64(&skeleton, nonce, &images))
        .await
        .map_err(|e| ApiError::internal(&e))
}

/// An ended task's image's bytes: the worker's, when it ended in this process, or else from
/// storage (410 once they are gone).
pub(crate) async fn image_bytes(app: &App, id: &str, at_hand: &[(String, Bytes)]) -> Result<Bytes, ApiError> {
    if let Some((_, b)) = at_hand.iter().find(|(i, _)| i == id) {
        return Ok(b.clone());
    }
    let gone = || ApiError::new(StatusCode::GONE, "image_expired", "The image is no longer stored.");
    let rec = app.store.get_image(id).await?.ok_or_else(gone)?;
    app.blobs.get(&rec.blob_key).await.map_err(|e| if e.is_not_found() { gone() } else { ApiError::internal(&e) })
}

pub(crate) fn placeholder(nonce: u64, i: usize) -> String {
    format!("\u{1}imagegate-b64-{nonce:016x}-{i}\u{1}")
}

/// Replaces each image's placeholder string (as serialized) with the image's base64 text. Base64
/// needs no JSON escaping.
pub(crate) fn splice_base64(skeleton: &[u8], nonce: u64, images: &[bytes::Bytes]) -> Vec<u8> {
    let total: usize = images.iter().map(|b| base64_simd::STANDARD.encoded_length(b.len())).sum();
    let mut out = Vec::with_capacity(skeleton.len() + total);
    let mut rest = skeleton;
    for (i, bytes) in images.iter().enumerate() {
        let token = serde_json::to_string(&placeholder(nonce, i)).unwrap_or_default();
        let token = &token.as_bytes()[1..token.len() - 1];
        match rest.windows(token.len()).position(|w| w == token) {
            Some(at) => {
                out.extend_from_slice(&rest[..at]);
                let start = out.len();
                out.resize(start + base64_simd::STANDARD.encoded_length(bytes.len()), 0);
                let n = base64_simd::STANDARD.encode(bytes, base64_simd::Out::from_slice(&mut out[start..])).len();
                out.truncate(start + n);
                rest = &rest[at + token.len()..];
            }
            None => break,
        }
    }
    out.extend_from_slice(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    #[test]
    fn base64_is_spliced_where_each_placeholder_was() {
        let nonce = 0xfeed;
        let result = json!({"created": 1, "data": [
            {"b64_json": placeholder(nonce, 0), "revised_prompt": "a \"quoted\" \u{1} prompt"},
            {"b64_json": placeholder(nonce, 1)},
        ]});
        let images = [bytes::Bytes::from_static(b"\x89PNG first"), bytes::Bytes::from_static(b"second image")];
        let body = splice_base64(&serde_json::to_vec(&result).unwrap(), nonce, &images);
        let parsed: Value = serde_json::from_slice(&body).expect("valid JSON");
        let b64 = |i: usize| base64::engine::general_purpose::STANDARD.encode(&images[i]);
        assert_eq!(parsed["data"][0]["b64_json"], json!(b64(0)));
        assert_eq!(parsed["data"][1]["b64_json"], json!(b64(1)));
        assert_eq!(parsed["data"][0]["revised_prompt"], "a \"quoted\" \u{1} prompt");
        assert_eq!(parsed["created"], 1);
    }
}
