//! `POST /v1/images/edits` (sync; `Prefer: respond-async`) and `/v1/images/edits/async`: an
//! edit is a generation whose input images come with it, as OpenAI's edits take them —
//! multipart `image` / `image[]` files and an optional `mask`, or JSON `images: [{image_url} |
//! {image_id}]` and `mask: {…}`. Uploaded files are stored one at a time as they arrive (one
//! image held at most), before the task is written; the answer is a generation's.

use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};
use std::sync::Arc;

use super::body;
use super::images::{Pending, Source, Submission, TASK_FIELDS, answer, submit, wants_async};
use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::extract::Form;
use crate::api::extract::{RawJson, is_json};
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::domain::request;
use crate::domain::task::TaskMode;
use crate::domain::{ids, now_millis, now_secs};
use crate::store::{InputRecord, KeyRecord};

/// Fields only edits take, on top of the image fields.
const EDIT_FIELDS: &[&str] = &["input_fidelity"];

/// A text field of a multipart body at most (a prompt is at most 32,000 characters), and all
/// its text fields together (the rest of the body limit is for images, stored as they come).
const MAX_TEXT_FIELD: usize = 256 * 1024;
const MAX_TEXT_TOTAL: usize = 1024 * 1024;

/// Multipart fields taken as numbers or booleans (multipart carries text only).
const NUMBER_FIELDS: &[&str] = &["n", "output_compression", "partial_images"];

#[utoipa::path(
    post,
    path = "/v1/images/edits",
    tag = "Images",
    summary = "Edit or compose input images",
    description = "OpenAI's edits: multipart `image`/`image[]` files and `mask`, or JSON `images`. Inputs are stored before the task is written.",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h gets the first request's task back instead of a new one"),
        ("Prefer" = Option<String>, Header, description = "`respond-async`: answer 202 with the task at once"),
    ),
    request_body(content((doc::images::EditForm = "multipart/form-data"), (doc::images::EditJson = "application/json"))),
    responses(
        (status = 200, description = "The images", body = doc::images::ImagesResponse, headers(("imagegate-task-id" = String, description = "The id of the task that holds this request"))),
        (status = 202, description = "With `Prefer: respond-async`: the queued task", body = doc::tasks::Task, headers(("imagegate-task-id" = String, description = "The id of the task that holds this request"))),
        doc::common::KeyErrors,
    )
)]
pub async fn edit_image(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let mode = if wants_async(&headers) { TaskMode::Async } else { TaskMode::Sync };
    edit(app, key, headers, mode, req).await
}

#[utoipa::path(
    post,
    path = "/v1/images/edits/async",
    tag = "Images",
    summary = "Submit an edit, get the task",
    params(
        ("Idempotency-Key" = Option<String>, Header, description = "The same key within 24 h gets the first request's task back instead of a new one"),
    ),
    request_body(content((doc::images::EditForm = "multipart/form-data"), (doc::images::EditJson = "application/json"))),
    responses(
        (status = 202, description = "The queued task", body = doc::tasks::Task, headers(("imagegate-task-id" = String, description = "The id of the task that holds this request")), links(("GetTask" = (operation_id = "get_task", parameters(("id" = "$response.body#/id")))), ("CancelTask" = (operation_id = "cancel_task", parameters(("id" = "$response.body#/id")))), ("TaskEvents" = (operation_id = "task_events", parameters(("id" = "$response.body#/id")))), ("WebhookDeliveries" = (operation_id = "list_webhook_deliveries", parameters(("id" = "$response.body#/id")))))),
        doc::common::KeyErrors,
    )
)]
pub async fn edit_image_async(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    edit(app, key, headers, TaskMode::Async, req).await
}

async fn edit(
    app: Arc<App>,
    key: KeyRecord,
    headers: HeaderMap,
    mode: TaskMode,
    req: Request,
) -> Result<Response, ApiError> {
    let extra: Vec<&str> =
        EDIT_FIELDS.iter().chain(if mode == TaskMode::Async { TASK_FIELDS } else { &[] }).copied().collect();
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if is_json(&ct) {
        let RawJson(bytes) = RawJson::from_request(req, &()).await?;
        let submission = json_edit(&bytes, &extra)?;
        let submitted = Box::pin(submit(&app, &key, mode, submission, &headers)).await?;
        // Megabytes of data: URLs, stored now: not held through the wait.
        drop(bytes);
        return answer(&app, key, headers, mode, submitted).await;
    }
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Expected 'Content-Type: multipart/form-data' or 'application/json', got {ct:?}."),
        ));
    }
    let Form(multipart) = Form::from_request(req, &()).await?;
    let submission = multipart_edit(&app, &key, multipart, &extra).await?;
    let submitted = Box::pin(submit(&app, &key, mode, submission, &headers)).await?;
    answer(&app, key, headers, mode, submitted).await
}

/// The JSON form: `images` and `mask` as references, read in place.
fn json_edit<'b>(bytes: &'b [u8], extra: &[&str]) -> Result<Submission<'b>, ApiError> {
    let body::Split { fields, inputs } = body::split(bytes, &["images", "mask"])?;
    let req = request::validate(&fields, extra)?;
    let images = match inputs.get("images") {
        Some(raw) => body::image_list(raw, "images")?,
        None => Vec::new(),
    };
    if images.is_empty() {
        return Err(missing_image("images"));
    }
    request::check_input_count(req.family(), &req.model, images.len(), "images")?;
    let mask = match inputs.get("mask") {
        Some(raw) => Some(("mask".to_string(), body::image_ref(raw, "mask")?)),
        None => None,
    };
    for (param, text) in images.iter().chain(&mask) {
        request::check_reference(text, param)?;
    }
    let images = images.into_iter().map(|(p, t)| (p, Source::Named(t))).collect();
    let mask = mask.map(|(p, t)| (p, Source::Named(t)));
    Ok(Submission { req, fields, inputs: Pending::References { images, mask } })
}

/// An edits line of a batch: its JSON body as the async route takes it.
pub(crate) fn edit_line(body: &[u8]) -> Result<Submission<'_>, ApiError> {
    let extra: Vec<&str> = EDIT_FIELDS.iter().chain(TASK_FIELDS).copied().collect();
    json_edit(body, &extra)
}

fn missing_image(param: &str) -> ApiError {
    ApiError::bad_request("missing_required_parameter", "An edit needs at least one input image.").with_param(param)
}

/// The multipart form: each file stored as it arrives (so at most one is held), the text
/// fields gathered into a body to validate once the files are in.
async fn multipart_edit(
    app: &App,
    key: &KeyRecord,
    mut multipart: Multipart,
    extra: &[&str],
) -> Result<Submission<'static>, ApiError> {
    let task_id = ids::task_id();
    let limits = app.rt.inputs;
    let mut inputs = crate::inputs::Inputs {
        store: &app.store,
        blobs: &app.blobs,
        fetcher: &app.fetcher,
        resolver: app.rt.resolver.0.as_ref(),
        limits,
        expires_at: now_secs() + app.rt.retention_for(&key.policy).as_secs() as i64,
        total: 0,
    };
    let most = request::max_reference_images(crate::domain::models::Family::OpenAi)
        .max(request::max_reference_images(crate::domain::models::Family::Pro));
    let mut fields = Map::new();
    let mut images: Vec<InputRecord> = Vec::new();
    let mut mask: Option<InputRecord> = None;
    let mut text_bytes = 0usize;
    while let Some(mut field) = multipart.next_field().await.map_err(multipart_error)? {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "image" | "image[]" => {
                let param = format!("image[{}]", images.len());
                if images.len() >= most {
                    return Err(ApiError::bad_request(
                        "too_many_images",
                        format!("An edit takes at most {most} input images."),
                    )
                    .with_param(&param));
                }
                let bytes = read_file(&mut field, limits.max_image_bytes, &param).await?;
                let position = images.len() as u32;
                images.push(inputs.store_bytes(&key.id, &task_id, position, bytes, &param, now_millis()).await?);
            }
            "mask" => {
                if mask.is_some() {
                    return Err(
                        ApiError::bad_request("invalid_value", "Only one mask may be given.").with_param("mask")
                    );
                }
                let bytes = read_file(&mut field, limits.max_image_bytes, "mask").await?;
                mask = Some(inputs.store_bytes(&key.id, &task_id, 0, bytes, "mask", now_millis()).await?);
            }
            "" => return Err(ApiError::bad_request("invalid_body", "A multipart field has no name.")),
            _ => {
                let text = read_text(&mut field, &name).await?;
                text_bytes += name.len() + text.len();
                if text_bytes > MAX_TEXT_TOTAL {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request_too_large",
                        format!("The form's text fields add up to more than {MAX_TEXT_TOTAL} bytes."),
                    ));
                }
                add_text_field(&mut fields, &name, text)?;
            }
        }
    }
    let fields = Value::Object(fields);
    let req = request::validate(&fields, extra)?;
    if images.is_empty() {
        return Err(missing_image("image"));
    }
    request::check_input_count(req.family(), &req.model, images.len(), "image")?;
    if let Some(m) = &mut mask {
        crate::inputs::check_mask(m, images.first(), "mask")?;
        m.position = images.len() as u32;
    }
    Ok(Submission { req, fields, inputs: Pending::Stored { task_id, images, mask } })
}

/// A file field's bytes, refused as soon as they pass `max`.
async fn read_file(
    field: &mut axum::extract::multipart::Field<'_>,
    max: usize,
    param: &str,
) -> Result<Bytes, ApiError> {
    let mut buf = BytesMut::new();
    while let Some(chunk) = field.chunk().await.map_err(multipart_error)? {
        if buf.len() + chunk.len() > max {
            return Err(ApiError::bad_request(
                "invalid_image",
                format!("The image is larger than an input image may be ({max} bytes)."),
            )
            .with_param(param));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

async fn read_text(field: &mut axum::extract::multipart::Field<'_>, name: &str) -> Result<String, ApiError> {
    let bytes = read_file(field, MAX_TEXT_FIELD, name).await.map_err(|_| {
        ApiError::bad_request("string_above_max_length", format!("The field '{name}' is too long.")).with_param(name)
    })?;
    String::from_utf8(bytes.to_vec()).map_err(|_| {
        ApiError::bad_request("invalid_value", format!("The field '{name}' is not UTF-8 text.")).with_param(name)
    })
}

/// A text field as the JSON body would have it: numbers for numeric fields, `true`/`false` for
/// `stream`, repeated `name[]` fields gathered into an array.
fn add_text_field(fields: &mut Map<String, Value>, name: &str, text: String) -> Result<(), ApiError> {
    if let Some(list) = name.strip_suffix("[]") {
        let entry = fields.entry(list.to_string()).or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(items) = entry {
            items.push(Value::String(text));
        }
        return Ok(());
    }
    let value = if NUMBER_FIELDS.contains(&name) {
        match text.trim().parse::<u64>() {
            Ok(n) => Value::from(n),
            Err(_) => {
                return Err(ApiError::bad_request(
                    "invalid_type",
                    format!("Invalid type for '{name}': expected an integer, got {text:?}."),
                )
                .with_param(name));
            }
        }
    } else if name == "stream" {
        Value::Bool(text.trim() == "true")
    } else {
        Value::String(text)
    };
    if fields.insert(name.to_string(), value).is_some() {
        return Err(
            ApiError::bad_request("invalid_value", format!("The field '{name}' is given twice.")).with_param(name)
        );
    }
    Ok(())
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    let status = e.status();
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(status, "request_too_large", "The request body is larger than the limit.");
    }
    ApiError::bad_request("invalid_body", format!("The multipart body cannot be read: {}.", e.body_text()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_fields_take_their_json_types() {
        let mut f = Map::new();
        add_text_field(&mut f, "n", "2".into()).unwrap();
        add_text_field(&mut f, "prompt", "a cat".into()).unwrap();
        add_text_field(&mut f, "webhook_events[]", "task.completed".into()).unwrap();
        add_text_field(&mut f, "webhook_events[]", "task.failed".into()).unwrap();
        assert_eq!(
            Value::Object(f.clone()),
            serde_json::json!({"n": 2, "prompt": "a cat", "webhook_events": ["task.completed", "task.failed"]})
        );
        assert_eq!(add_text_field(&mut f, "n", "two".into()).unwrap_err().param.as_deref(), Some("n"));
        assert_eq!(add_text_field(&mut f, "prompt", "again".into()).unwrap_err().param.as_deref(), Some("prompt"));
    }
}
