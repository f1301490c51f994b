//! The Files API as OpenAI's (`client.files.create(file=…, purpose="batch")`, `retrieve`,
//! `list`, `content`, `delete`), for batch input files. An upload is streamed to the blob store
//! as it arrives (never held whole), capped at `MAX_FILE_BYTES`; files are the key's own.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::extract::{Form, Path, Query};
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::domain::{ids, now_secs};
use crate::store::FileRecord;

/// The largest file taken (OpenAI's limit for batch input files).
pub const MAX_FILE_BYTES: u64 = 200 * 1024 * 1024;

/// `expires_after[seconds]` bounds (OpenAI's: an hour to 30 days).
const MIN_EXPIRY: i64 = 3600;
const MAX_EXPIRY: i64 = 30 * 86_400;

/// Purposes taken: imagegate keeps files for batches.
const PURPOSES: &[&str] = &["batch"];

pub fn file_object(f: &FileRecord) -> Value {
    json!({
        "id": f.id,
        "object": "file",
        "bytes": f.bytes,
        "created_at": f.created_at,
        "expires_at": f.expires_at,
        "filename": f.filename,
        "purpose": f.purpose,
        "status": "processed",
        "status_details": null,
    })
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No such File object: {id}")).with_param("id")
}

/// `POST /v1/files`: multipart `purpose` and `file`.
#[utoipa::path(
    post,
    path = "/v1/files",
    tag = "Batches",
    summary = "Upload a file",
    description = "A JSONL file of batch requests (`purpose: batch`), up to 200 MB, streamed to storage.",
    request_body(content((doc::batches::FileUpload = "multipart/form-data"))),
    responses(
        (status = 200, description = "The file", body = doc::batches::File, links(("GetFile" = (operation_id = "get_file", parameters(("id" = "$response.body#/id")))), ("FileContent" = (operation_id = "file_content", parameters(("id" = "$response.body#/id")))), ("DeleteFile" = (operation_id = "delete_file", parameters(("id" = "$response.body#/id")))))),
        doc::common::KeyErrors,
    )
)]
pub async fn create_file(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Form(mut form): Form,
) -> Result<Response, ApiError> {
    let bad = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request_too_large", "The file is larger than the limit.")
        } else {
            ApiError::bad_request("invalid_body", format!("The multipart body cannot be read: {}.", e.body_text()))
        }
    };
    let id = ids::file_id();
    let blob_key = format!("files_{}", id.trim_start_matches("file-"));
    let mut purpose: Option<String> = None;
    let mut expires_after: Option<i64> = None;
    let mut stored: Option<(String, u64)> = None;
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name().unwrap_or("") {
            "purpose" => purpose = Some(field.text().await.map_err(bad)?.trim().to_string()),
            // OpenAI's `expires_after={"anchor": "created_at", "seconds": N}`, as the SDK sends it.
            "expires_after[anchor]" => {
                let anchor = field.text().await.map_err(bad)?;
                if anchor.trim() != "created_at" {
                    let e = ApiError::bad_request("invalid_value", "expires_after[anchor] must be 'created_at'.")
                        .with_param("expires_after");
                    return Err(discard(&app, &blob_key, stored.is_some(), e).await);
                }
            }
            "expires_after[seconds]" => {
                let text = field.text().await.map_err(bad)?;
                match text.trim().parse::<i64>() {
                    Ok(n) if (MIN_EXPIRY..=MAX_EXPIRY).contains(&n) => expires_after = Some(n),
                    _ => {
                        let e = ApiError::bad_request(
                            "invalid_value",
                            format!("expires_after[seconds] must be between {MIN_EXPIRY} and {MAX_EXPIRY}."),
                        )
                        .with_param("expires_after");
                        return Err(discard(&app, &blob_key, stored.is_some(), e).await);
                    }
                }
            }
            "file" => {
                if stored.is_some() {
                    return Err(ApiError::bad_request("invalid_value", "Only one file may be uploaded at a time.")
                        .with_param("file"));
                }
                let filename = field.file_name().unwrap_or("upload.jsonl").chars().take(255).collect::<String>();
                let too_large = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let flag = too_large.clone();
                // The field as a stream of chunks, cut off with an error past the cap.
                let chunks = futures_util::stream::unfold((field, 0u64), move |(mut field, seen)| {
                    let flag = flag.clone();
                    async move {
                        match field.chunk().await {
                            Ok(Some(c)) if seen + c.len() as u64 > MAX_FILE_BYTES => {
                                flag.store(true, std::sync::atomic::Ordering::SeqCst);
                                Some((Err(std::io::Error::other("the file is too large")), (field, u64::MAX / 2)))
                            }
                            Ok(Some(c)) => {
                                let n = seen + c.len() as u64;
                                Some((Ok::<Bytes, std::io::Error>(c), (field, n)))
                            }
                            Ok(None) => None,
                            Err(e) => Some((Err(std::io::Error::other(e.to_string())), (field, seen))),
                        }
                    }
                });
                let n = app.blobs.put_stream(&blob_key, Box::pin(chunks), "application/jsonl").await.map_err(|e| {
                    if too_large.load(std::sync::atomic::Ordering::SeqCst) {
                        ApiError::new(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            "file_too_large",
                            format!("The file is larger than {MAX_FILE_BYTES} bytes, the most a file may be."),
                        )
                        .with_param("file")
                    } else {
                        ApiError::bad_request("invalid_body", format!("The upload could not be read or stored: {e}"))
                            .with_param("file")
                    }
                })?;
                stored = Some((filename, n));
            }
            other => {
                let message = format!("Unrecognized request argument supplied: {other}");
                return Err(discard(
                    &app,
                    &blob_key,
                    stored.is_some(),
                    ApiError::bad_request("unknown_parameter", message).with_param(other),
                )
                .await);
            }
        }
    }
    let Some((filename, bytes)) = stored else {
        return Err(ApiError::bad_request("missing_required_parameter", "Missing required parameter: 'file'.")
            .with_param("file"));
    };
    let purpose = match purpose {
        Some(p) if PURPOSES.contains(&p.as_str()) => p,
        Some(p) => {
            let e = ApiError::bad_request(
                "invalid_value",
                format!("Invalid purpose '{p}': imagegate keeps files for batches (purpose 'batch')."),
            )
            .with_param("purpose");
            return Err(discard(&app, &blob_key, true, e).await);
        }
        None => {
            let e = ApiError::bad_request("missing_required_parameter", "Missing required parameter: 'purpose'.")
                .with_param("purpose");
            return Err(discard(&app, &blob_key, true, e).await);
        }
    };
    if bytes == 0 {
        return Err(discard(
            &app,
            &blob_key,
            true,
            ApiError::bad_request("invalid_value", "The file is empty.").with_param("file"),
        )
        .await);
    }
    let record = FileRecord {
        id,
        owner: key.id.clone(),
        purpose,
        filename,
        bytes: bytes as i64,
        blob_key: blob_key.clone(),
        created_at: now_secs(),
        expires_at: expires_after.map(|n| now_secs() + n),
    };
    if let Err(e) = app.store.create_file(&record).await {
        return Err(discard(&app, &blob_key, true, e.into()).await);
    }
    Ok(axum::Json(file_object(&record)).into_response())
}

/// Deletes a stored upload that will not be recorded, and passes the error on.
async fn discard(app: &App, blob_key: &str, stored: bool, e: ApiError) -> ApiError {
    if stored && let Err(d) = app.blobs.delete(blob_key).await {
        tracing::warn!(blob_key, error = %d, "an upload that was refused could not be deleted");
    }
    e
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    purpose: Option<String>,
    limit: Option<u32>,
    after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/files",
    tag = "Batches",
    summary = "List files",
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100 (default 20)"),
        ("after" = Option<String>, Query, description = "A file id: the page after it"),
        ("purpose" = Option<String>, Query, description = "Only files of this purpose"),
    ),
    responses(
        (status = 200, description = "The key's files, newest first", body = doc::batches::FileList),
        doc::common::KeyErrors,
    )
)]
pub async fn list_files(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let mut files = app.store.list_files(&key.id, q.purpose.as_deref(), q.after.as_deref(), limit + 1).await?;
    let has_more = files.len() > limit as usize;
    files.truncate(limit as usize);
    let data: Vec<Value> = files.iter().map(file_object).collect();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": files.first().map(|f| &f.id),
        "last_id": files.last().map(|f| &f.id),
    })))
}

async fn load(app: &App, owner: &str, id: &str) -> Result<FileRecord, ApiError> {
    if !ids::looks_like(id, "file-") {
        return Err(not_found(id));
    }
    app.store.get_file(owner, id).await?.ok_or_else(|| not_found(id))
}

#[utoipa::path(
    get,
    path = "/v1/files/{id}",
    tag = "Batches",
    summary = "Get a file",
    params(("id" = String, Path, description = "`file-…`")),
    responses(
        (status = 200, description = "The file", body = doc::batches::File),
        doc::common::KeyErrors,
    )
)]
pub async fn get_file(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(file_object(&load(&app, &key.id, &id).await?)))
}

/// The file's bytes, streamed from storage.
#[utoipa::path(
    get,
    path = "/v1/files/{id}/content",
    tag = "Batches",
    summary = "A file's content",
    params(("id" = String, Path, description = "`file-…`")),
    responses(
        (status = 200, description = "The file's bytes (JSONL)", content_type = "application/octet-stream", body = Vec<u8>),
        doc::common::KeyErrors,
    )
)]
pub async fn file_content(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let file = load(&app, &key.id, &id).await?;
    let stream = app.blobs.stream(&file.blob_key, None).await.map_err(|e| {
        if e.is_not_found() {
            ApiError::new(StatusCode::GONE, "file_gone", "The file's content is no longer stored.")
        } else {
            ApiError::internal(&e)
        }
    })?;
    let mut resp = axum::body::Body::from_stream(stream).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = header::HeaderValue::from_str(&file.bytes.to_string()) {
        resp.headers_mut().insert(header::CONTENT_LENGTH, v);
    }
    Ok(resp)
}

#[utoipa::path(
    delete,
    path = "/v1/files/{id}",
    tag = "Batches",
    summary = "Delete a file",
    params(("id" = String, Path, description = "`file-…`")),
    responses(
        (status = 200, description = "Deleted", body = doc::common::Deleted),
        doc::common::KeyErrors,
    )
)]
pub async fn delete_file(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    if !ids::looks_like(&id, "file-") {
        return Err(not_found(&id));
    }
    let file = app.store.delete_file(&key.id, &id).await?.ok_or_else(|| not_found(&id))?;
    if let Err(e) = app.blobs.delete(&file.blob_key).await {
        tracing::warn!(file_id = file.id, error = %e, "a deleted file's content could not be removed");
    }
    Ok(axum::Json(json!({"id": file.id, "object": "file", "deleted": true})))
}
