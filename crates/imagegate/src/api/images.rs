//! `GET /images/{id}.{ext}`: stored images with strong ETags, long immutable caching,
//! conditional GET (304) and HEAD.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::error::ApiError;
use crate::app::App;
use crate::domain::{ids, now_secs};

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new().route("/images/{file}", axum::routing::get(get_image))
}

pub async fn get_image(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("No such image.");
    let (id, ext) = file.rsplit_once('.').ok_or_else(not_found)?;
    if !ids::looks_like(id, "img_") {
        return Err(not_found());
    }
    let img = app.store.get_image(id).await?.ok_or_else(not_found)?;
    if !img.blob_key.ends_with(&format!(".{ext}")) {
        return Err(not_found());
    }
    let now = now_secs();
    if img.expires_at <= now {
        return Err(ApiError::new(
            StatusCode::GONE,
            "image_expired",
            "This image has passed its retention period and was deleted.",
        ));
    }
    let last_modified = UNIX_EPOCH + Duration::from_millis(img.created_at_ms.max(0) as u64);
    let mut out = HeaderMap::new();
    let put = |h: &mut HeaderMap, name: header::HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    put(&mut out, header::ETAG, img.etag.clone());
    put(&mut out, header::LAST_MODIFIED, httpdate::fmt_http_date(last_modified));
    put(&mut out, header::CACHE_CONTROL, format!("public, max-age={}, immutable", img.expires_at - now));
    if not_modified(&headers, &img.etag, img.created_at_ms / 1000) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    put(&mut out, header::CONTENT_TYPE, img.content_type.clone());
    put(&mut out, header::CONTENT_LENGTH, img.bytes.to_string());
    out.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    if method == Method::HEAD {
        return Ok((StatusCode::OK, out).into_response());
    }
    let bytes = app.blobs.get(&img.blob_key).await.map_err(|e| {
        if e.is_not_found() {
            ApiError::new(StatusCode::GONE, "image_expired", "This image is no longer stored.")
        } else {
            ApiError::internal(&e)
        }
    })?;
    Ok((StatusCode::OK, out, Body::from(bytes)).into_response())
}

/// `If-None-Match` wins over `If-Modified-Since` (RFC 9110 §13.2.2).
fn not_modified(headers: &HeaderMap, etag: &str, modified_secs: i64) -> bool {
    if let Some(inm) = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        return inm.split(',').map(|t| t.trim().trim_start_matches("W/")).any(|t| t == "*" || t == etag);
    }
    if let Some(ims) = headers
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v).ok())
    {
        let since = ims.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        return modified_secs <= since;
    }
    false
}
