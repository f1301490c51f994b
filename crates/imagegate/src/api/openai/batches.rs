//! OpenAI's Batch API over imagegate's batches (`crate::batches`): `client.batches.create`,
//! `retrieve`, `list`, `cancel`. Each line of the input file becomes a task; the batch object
//! adds `cost_usd`. `metadata.webhook_url` subscribes the batch to its own events.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::sync::Arc;

use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, Path, Query};
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::batches::view::batch_object;
use crate::domain::batch::{BatchStatus, COMPLETION_WINDOW, COMPLETION_WINDOW_SECS};
use crate::domain::{ids, now_secs};
use crate::store::BatchRecord;

/// Endpoints a batch's lines may call.
const ENDPOINTS: &[&str] = &[crate::domain::batch_input::GENERATIONS, crate::domain::batch_input::EDITS];
/// OpenAI's metadata limits.
const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 512;

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No such batch: {id}")).with_param("batch_id")
}

fn invalid(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalid_value", message).with_param(param)
}

fn required_str<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    match body.get(field) {
        Some(Value::String(s)) => Ok(s),
        None | Some(Value::Null) => {
            Err(ApiError::bad_request("missing_required_parameter", format!("Missing required parameter: '{field}'."))
                .with_param(field))
        }
        Some(_) => Err(invalid(field, format!("'{field}' must be a string."))),
    }
}

/// `POST /v1/batches`.
#[utoipa::path(
    post,
    path = "/v1/batches",
    tag = "Batches",
    summary = "Create a batch",
    description = "OpenAI's Batch API: each line of the input file becomes a task; half price where the provider has a batch API.",
    request_body = doc::batches::BatchCreate,
    responses(
        (status = 200, description = "The batch", body = doc::batches::Batch, links(("GetBatch" = (operation_id = "get_batch", parameters(("id" = "$response.body#/id")))), ("CancelBatch" = (operation_id = "cancel_batch", parameters(("id" = "$response.body#/id")))))),
        doc::common::KeyErrors,
    )
)]
pub async fn create_batch(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    JsonBody(body): JsonBody,
) -> Result<axum::Json<Value>, ApiError> {
    let body = body.as_object().ok_or_else(|| invalid("body", "The request body must be a JSON object."))?;
    for field in body.keys() {
        if !["input_file_id", "endpoint", "completion_window", "metadata"].contains(&field.as_str()) {
            return Err(ApiError::bad_request(
                "unknown_parameter",
                format!("Unrecognized request argument supplied: {field}"),
            )
            .with_param(field));
        }
    }
    let input_file_id = required_str(body, "input_file_id")?;
    let endpoint = required_str(body, "endpoint")?;
    if !ENDPOINTS.contains(&endpoint) {
        return Err(invalid(
            "endpoint",
            format!("Unsupported endpoint '{endpoint}': batches run {}.", ENDPOINTS.join(", ")),
        ));
    }
    let window = required_str(body, "completion_window")?;
    if window != COMPLETION_WINDOW {
        return Err(invalid("completion_window", format!("completion_window must be \"{COMPLETION_WINDOW}\".")));
    }
    let metadata = match body.get("metadata") {
        None | Some(Value::Null) => None,
        Some(m) => Some(check_metadata(m)?),
    };
    let webhook_url = match metadata.as_ref().and_then(|m| m.get("webhook_url")).and_then(Value::as_str) {
        Some(url) => Some(
            crate::egress::guard::check_target(app.rt.resolver.0.as_ref(), url, app.rt.webhook_allow_private)
                .await
                .map_err(|e| {
                    ApiError::bad_request("invalid_webhook_url", format!("metadata.webhook_url {e}."))
                        .with_param("metadata.webhook_url")
                })?
                .to_string(),
        ),
        None => None,
    };
    let file =
        if ids::looks_like(input_file_id, "file-") { app.store.get_file(&key.id, input_file_id).await? } else { None };
    let Some(file) = file else {
        return Err(ApiError::not_found(format!("No such File object: {input_file_id}")).with_param("input_file_id"));
    };
    if file.purpose != "batch" {
        return Err(invalid(
            "input_file_id",
            format!("The file {input_file_id} has purpose '{}'; a batch's input needs purpose 'batch'.", file.purpose),
        ));
    }
    let now = now_secs();
    let batch = BatchRecord {
        id: format!("batch_{}", ulid::Ulid::new()),
        owner: key.id.clone(),
        endpoint: endpoint.to_string(),
        input_file_id: input_file_id.to_string(),
        completion_window: window.to_string(),
        status: BatchStatus::Validating,
        metadata,
        errors: None,
        webhook_url,
        total: 0,
        completed: 0,
        failed: 0,
        cost_usd: 0.0,
        output_file_id: None,
        error_file_id: None,
        created_at: now,
        in_progress_at: None,
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
        expires_at: now + COMPLETION_WINDOW_SECS,
    };
    app.store.create_batch(&batch).await?;
    app.batch_wake.notify_one();
    Ok(axum::Json(batch_object(&batch, None)))
}

/// OpenAI's rules: up to 16 pairs, string keys up to 64 characters, string values up to 512.
fn check_metadata(m: &Value) -> Result<Value, ApiError> {
    let obj = m.as_object().ok_or_else(|| invalid("metadata", "metadata must be an object of strings."))?;
    if obj.len() > MAX_METADATA_PAIRS {
        return Err(invalid("metadata", format!("metadata may have at most {MAX_METADATA_PAIRS} keys.")));
    }
    for (k, v) in obj {
        let ok = k.chars().count() <= MAX_METADATA_KEY
            && v.as_str().is_some_and(|s| s.chars().count() <= MAX_METADATA_VALUE);
        if !ok {
            return Err(invalid(
                "metadata",
                format!(
                    "metadata keys are strings of at most {MAX_METADATA_KEY} characters, values strings of at most {MAX_METADATA_VALUE}."
                ),
            ));
        }
    }
    Ok(m.clone())
}

/// The owner's batch with its live counts while it runs.
async fn render(app: &App, b: &BatchRecord) -> Result<Value, ApiError> {
    if b.status.is_terminal() {
        return Ok(batch_object(b, None));
    }
    let live = app.store.batch_progress(&b.id).await?;
    Ok(batch_object(b, Some(&live)))
}

async fn load(app: &App, owner: &str, id: &str) -> Result<BatchRecord, ApiError> {
    if !ids::looks_like(id, "batch_") {
        return Err(not_found(id));
    }
    app.store.get_batch(owner, id).await?.ok_or_else(|| not_found(id))
}

/// `GET /v1/batches/{id}`.
#[utoipa::path(
    get,
    path = "/v1/batches/{id}",
    tag = "Batches",
    summary = "Get a batch",
    params(("id" = String, Path, description = "`batch_…`")),
    responses(
        (status = 200, description = "The batch, with live request counts", body = doc::batches::Batch),
        doc::common::KeyErrors,
    )
)]
pub async fn get_batch(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let b = load(&app, &key.id, &id).await?;
    Ok(axum::Json(render(&app, &b).await?))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<u32>,
    after: Option<String>,
}

/// `GET /v1/batches?limit=&after=`, newest first.
#[utoipa::path(
    get,
    path = "/v1/batches",
    tag = "Batches",
    summary = "List batches",
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100 (default 20)"),
        ("after" = Option<String>, Query, description = "A batch id: the page after it"),
    ),
    responses(
        (status = 200, description = "The key's batches, newest first", body = doc::batches::BatchList),
        doc::common::KeyErrors,
    )
)]
pub async fn list_batches(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let mut batches = app.store.list_batches(&key.id, q.after.as_deref(), limit + 1).await?;
    let has_more = batches.len() > limit as usize;
    batches.truncate(limit as usize);
    let mut data = Vec::with_capacity(batches.len());
    for b in &batches {
        data.push(render(&app, b).await?);
    }
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": batches.first().map(|b| &b.id),
        "last_id": batches.last().map(|b| &b.id),
    })))
}

/// `POST /v1/batches/{id}/cancel`: the batch becomes `cancelling`; its lines not yet ended are
/// cancelled, then it is `cancelled` with the files of what was done.
#[utoipa::path(
    post,
    path = "/v1/batches/{id}/cancel",
    tag = "Batches",
    summary = "Cancel a batch",
    params(("id" = String, Path, description = "`batch_…`")),
    responses(
        (status = 200, description = "The batch, `cancelling`", body = doc::batches::Batch),
        doc::common::KeyErrors,
    )
)]
pub async fn cancel_batch(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    load(&app, &key.id, &id).await?;
    let b = app.store.cancel_batch(&key.id, &id, now_secs()).await?.ok_or_else(|| not_found(&id))?;
    if b.status.is_terminal() && b.status != BatchStatus::Cancelled {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "batch_not_cancellable",
            format!("The batch has already ended ({}); it cannot be cancelled.", b.status),
        ));
    }
    app.batch_wake.notify_one();
    Ok(axum::Json(render(&app, &b).await?))
}
