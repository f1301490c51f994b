//! `GET /images/{id}.{ext}`: stored images with strong ETags, long immutable caching,
//! conditional GET (304), HEAD, byte ranges (206/416), and on-the-fly conversion
//! (`?format=webp|jpeg|png|auto&w=&h=&quality=`, made once and stored as a variant; `auto`
//! negotiates WebP from `Accept`).

use crate::api::extract::{Path, Query};
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::error::ApiError;
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::delivery::variants::{Variant, VariantError};
use crate::domain::request::OutputFormat;
use crate::domain::{ids, now_secs, variant};

pub fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(get_image))
}

#[derive(Debug, Deserialize)]
pub struct ImageQuery {
    format: Option<String>,
    w: Option<String>,
    h: Option<String>,
    quality: Option<String>,
}

fn gone() -> ApiError {
    ApiError::new(StatusCode::GONE, "image_expired", "This image has passed its retention period and was deleted.")
}

/// A draft shown while its task ran (`prv_task_…_{image}_{draft}.{ext}`): small, whole, not
/// converted, cached briefly (the orphan sweep removes drafts after its grace).
async fn preview(app: &App, file: &str, ext: &str) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("No such image.");
    let mime = OutputFormat::parse(ext).ok_or_else(not_found)?.mime();
    if file.len() > 120 || !file.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.') {
        return Err(not_found());
    }
    let bytes =
        app.blobs.get(file).await.map_err(|e| if e.is_not_found() { not_found() } else { ApiError::internal(&e) })?;
    let mut out = HeaderMap::new();
    put(&mut out, header::CONTENT_TYPE, mime.to_string());
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    out.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    Ok((StatusCode::OK, out, bytes).into_response())
}

#[utoipa::path(
    get,
    path = "/images/{file}",
    tag = "Images",
    summary = "A stored image",
    description = "No key needed: the id is unguessable. Strong ETag, `Cache-Control: immutable`, 304, `Range` (206/416); converted and resized on request (made once, stored); 410 after retention.",
    params(
        ("file" = String, Path, description = "`img_….jpeg` (the id and an extension)"),
        ("format" = Option<String>, Query, description = "`webp`, `jpeg`, `png` or `auto` (WebP when `Accept` allows)"),
        ("w" = Option<u32>, Query, description = "Fit within this width"),
        ("h" = Option<u32>, Query, description = "Fit within this height"),
        ("quality" = Option<u32>, Query, description = "JPEG/WebP quality, 1 to 100"),
    ),
    responses(
        (status = 200, description = "The image", content(("image/jpeg"), ("image/png"), ("image/webp"))),
        (status = 206, description = "A range of it"),
        (status = 304, description = "Not modified"),
        (status = 400, description = "A bad conversion parameter", body = doc::common::Error),
        (status = 404, description = "No such image", body = doc::common::Error),
        (status = 410, description = "Deleted after its retention", body = doc::common::Error),
        (status = 416, description = "Range not satisfiable", body = doc::common::Error),
    )
)]
pub async fn get_image(
    State(app): State<Arc<App>>,
    method: Method,
    headers: HeaderMap,
    Path(file): Path<String>,
    Query(q): Query<ImageQuery>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::not_found("No such image.");
    let (id, ext) = file.rsplit_once('.').ok_or_else(not_found)?;
    if id.starts_with("prv_task_") {
        return preview(&app, &file, ext).await;
    }
    if !ids::looks_like(id, "img_") {
        return Err(not_found());
    }
    let img = app.store.get_image(id).await?.ok_or_else(not_found)?;
    if !img.blob_key.ends_with(&format!(".{ext}")) {
        return Err(not_found());
    }
    let now = now_secs();
    if img.expires_at <= now {
        return Err(gone());
    }
    let original_format = OutputFormat::from_mime(&img.content_type).unwrap_or(OutputFormat::Jpeg);
    // `format=auto`: WebP for clients that say they take it, the original otherwise (Vary: Accept).
    let negotiated = q.format.as_deref() == Some("auto");
    let format = if negotiated {
        let accepts_webp = crate::api::extract::header_tokens(&headers, "accept").any(|t| t == "image/webp");
        accepts_webp.then_some("webp")
    } else {
        q.format.as_deref()
    };
    let spec = variant::parse(
        format,
        q.w.as_deref(),
        q.h.as_deref(),
        q.quality.as_deref(),
        original_format,
        &app.rt.variant_rules,
    )
    .map_err(|(param, message)| ApiError::bad_request("invalid_value", message).with_param(param))?;

    let (etag, content_type) = match &spec {
        None => (img.etag.clone(), img.content_type.clone()),
        Some(s) => {
            let key = s.key(&img.id, img.width, img.height);
            let tag = format!("{}-{}", img.etag.trim_end_matches('"'), &key[img.id.len() + 1..]);
            (format!("{tag}\""), s.format.mime().to_string())
        }
    };
    let last_modified = UNIX_EPOCH + Duration::from_millis(img.created_at_ms.max(0) as u64);
    let mut out = HeaderMap::new();
    put(&mut out, header::ETAG, etag.clone());
    put(&mut out, header::LAST_MODIFIED, httpdate::fmt_http_date(last_modified));
    put(&mut out, header::CACHE_CONTROL, format!("public, max-age={}, immutable", img.expires_at - now));
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if negotiated {
        out.insert(header::VARY, HeaderValue::from_static("Accept"));
    }
    if not_modified(&headers, &etag, img.created_at_ms / 1000) {
        return Ok((StatusCode::NOT_MODIFIED, out).into_response());
    }
    put(&mut out, header::CONTENT_TYPE, content_type);
    out.insert("x-content-type-options", HeaderValue::from_static("nosniff"));

    // What to send: a stored object (the original or a stored variant), streamed and read only
    // as far as the range asks; or a variant just converted, in hand.
    let content = match &spec {
        None => Variant::Stored { blob_key: img.blob_key.clone(), len: img.bytes.max(0) as u64 },
        Some(s) => {
            let cx = app.converter();
            let (variant, source) = app.variants.get(&cx, &img, s).await.map_err(variant_error)?;
            out.insert("x-imagegate-variant", HeaderValue::from_static(source.as_str()));
            variant
        }
    };
    let total = match &content {
        Variant::Bytes(b) => b.len() as u64,
        Variant::Stored { len, .. } => *len,
    };
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(range) if if_range_ok(&headers, &etag) => match parse_range(range, total) {
            Some(r) => Some(r),
            None => {
                put(&mut out, header::CONTENT_RANGE, format!("bytes */{total}"));
                let mut resp = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!("The range '{range}' is outside the image's {total} bytes."),
                )
                .into_response();
                resp.headers_mut().extend(out);
                return Ok(resp);
            }
        },
        _ => None,
    };
    let status = match range {
        Some((start, end)) => {
            put(&mut out, header::CONTENT_RANGE, format!("bytes {start}-{end}/{total}"));
            put(&mut out, header::CONTENT_LENGTH, (end - start + 1).to_string());
            StatusCode::PARTIAL_CONTENT
        }
        None => {
            put(&mut out, header::CONTENT_LENGTH, total.to_string());
            StatusCode::OK
        }
    };
    if method == Method::HEAD {
        return Ok((status, out).into_response());
    }
    let body = match content {
        Variant::Bytes(b) => Body::from(match range {
            Some((start, end)) => b.slice(start as usize..=end as usize),
            None => b,
        }),
        Variant::Stored { blob_key, .. } => {
            let stream = app
                .blobs
                .stream(&blob_key, range.map(|(start, end)| start..end + 1))
                .await
                .map_err(|e| if e.is_not_found() { gone() } else { ApiError::internal(&e) })?;
            Body::from_stream(stream)
        }
    };
    Ok((status, out, body).into_response())
}

fn put(h: &mut HeaderMap, name: header::HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        h.insert(name, v);
    }
}

fn variant_error(e: VariantError) -> ApiError {
    match e {
        VariantError::Gone => gone(),
        VariantError::Busy => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "conversions_busy",
            "Every image conversion slot is busy; try again in a moment.",
        )
        .with_retry_after(1),
        VariantError::TooMany(n) => ApiError::bad_request(
            "variant_limit_reached",
            format!("This image already has {n} converted variants, its limit; ask for one of those."),
        ),
        VariantError::Failed(m) => {
            tracing::error!(error = m, "variant conversion failed");
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "conversion_failed", "The image could not be converted.")
        }
    }
}

/// One byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) within `total`, inclusive; `None` when
/// unsatisfiable. Several ranges are answered with the first (a valid reading of RFC 9110).
fn parse_range(header: &str, total: u64) -> Option<(u64, u64)> {
    let spec = header.trim().strip_prefix("bytes=")?.split(',').next()?.trim();
    let (a, b) = spec.split_once('-')?;
    if total == 0 {
        return None;
    }
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            if n == 0 {
                return None;
            }
            (total.saturating_sub(n), total - 1)
        }
        (s, "") => (s.parse().ok()?, total - 1),
        (s, e) => (s.parse().ok()?, e.parse::<u64>().ok()?.min(total - 1)),
    };
    (start <= end && start < total).then_some((start, end))
}

/// `If-Range` with a different ETag means "send it all".
fn if_range_ok(headers: &HeaderMap, etag: &str) -> bool {
    headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok()).is_none_or(|v| v.trim() == etag)
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

#[cfg(test)]
mod tests {
    use super::parse_range;

    #[test]
    fn ranges_parse_per_rfc_9110() {
        assert_eq!(parse_range("bytes=0-99", 1000), Some((0, 99)));
        assert_eq!(parse_range("bytes=900-", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=-100", 1000), Some((900, 999)));
        assert_eq!(parse_range("bytes=990-2000", 1000), Some((990, 999)));
        assert_eq!(parse_range("bytes=1000-", 1000), None);
        assert_eq!(parse_range("bytes=5-1", 1000), None);
        assert_eq!(parse_range("bytes=-0", 1000), None);
        assert_eq!(parse_range("items=0-1", 1000), None);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Some((0, 1)));
    }
}
