//! Body extraction with our error format: content type checked, size bounded (413 before the
//! whole body is read), JSON syntax errors reported with their position.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{StatusCode, header};
use serde_json::Value;

use super::error::ApiError;

/// A JSON body parsed to a `Value` (field checks happen in `domain::request`).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let RawJson(bytes) = RawJson::from_request(req, state).await?;
        let value: Value = serde_json::from_slice(&bytes).map_err(json_error)?;
        Ok(JsonBody(value))
    }
}

/// A multipart body, or our error: axum's own rejection (a missing or bad boundary, the wrong
/// content type) is plain text.
pub struct Form(pub axum::extract::Multipart);

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Multipart::from_request(req, state).await.map(Form).map_err(|e| {
            let status = e.status();
            if status == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                ApiError::new(
                    status,
                    "unsupported_media_type",
                    "Expected 'Content-Type: multipart/form-data' with a boundary.",
                )
            } else {
                ApiError::bad_request("invalid_body", format!("The multipart body cannot be read: {}.", e.body_text()))
            }
        })
    }
}

/// A JSON body's bytes, its content type checked and its size bounded, for routes that parse it
/// in place (input images as `data:` URLs are borrowed from it, not copied).
pub struct RawJson(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawJson {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !is_json(ct) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Expected 'Content-Type: application/json', got {:?}.", ct),
            ));
        }
        let _ = state;
        // Read into one buffer sized from Content-Length: collecting chunks and joining them
        // would hold a large body twice for a moment (an edit's JSON may be 140 MB).
        let cap = req.extensions().get::<BodyCap>().map_or(DEFAULT_CAP, |c| c.0);
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<usize>().ok());
        let mut buf = bytes::BytesMut::with_capacity(declared.unwrap_or(16 * 1024).min(cap));
        let mut stream = req.into_body().into_data_stream();
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            let chunk = chunk
                .map_err(|e| ApiError::bad_request("invalid_body", format!("Could not read the request body: {e}")))?;
            if buf.len() + chunk.len() > cap {
                return Err(too_large(cap));
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(RawJson(buf.freeze()))
    }
}

pub fn is_json(content_type: &str) -> bool {
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || mime.ends_with("+json")
}

pub fn json_error(e: serde_json::Error) -> ApiError {
    ApiError::bad_request("invalid_json", format!("We could not parse the JSON body of your request: {e}."))
}

/// `axum::extract::Query` whose rejection (`?w=1&w=2`, a value of the wrong type) is a 400 in
/// our error shape rather than plain text.
pub struct Query<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(rej) => Err(ApiError::bad_request(
                "invalid_query",
                format!("The query string could not be read: {}.", rej.body_text()),
            )),
        }
    }
}

/// `axum::extract::Path` with its rejection (e.g. a segment that is not UTF-8) in our error shape.
pub struct Path<T>(pub T);

impl<T: serde::de::DeserializeOwned + Send, S: Send + Sync> axum::extract::FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(rej) => {
                Err(ApiError::not_found(format!("No such resource: {}.", rej.body_text())).with_code("invalid_path"))
            }
        }
    }
}

/// The body limit of this request's route, as `declared_body_limit` chose it.
#[derive(Debug, Clone, Copy)]
pub struct BodyCap(pub usize);

/// When no limit was chosen (the layer is always there in the server).
const DEFAULT_CAP: usize = 1024 * 1024;

/// Body limits: most routes', and those of the routes that take input images.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub default: usize,
    pub inputs: usize,
}

/// The routes whose bodies carry input images (and so get `BodyLimits::inputs`).
pub fn takes_inputs(path: &str) -> bool {
    path.starts_with("/v1/images/generations")
        || path.starts_with("/v1/images/edits")
        || ((path.starts_with("/v1beta/models/") || path.starts_with("/v1/models/")) && path.contains(':'))
}

/// Refuses a body declared (`Content-Length`) larger than the limit with 413 before reading any
/// of it; chunked bodies are cut at the limit by `DefaultBodyLimit` as they are read.
pub async fn declared_body_limit(
    axum::extract::State(limits): axum::extract::State<BodyLimits>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut req = req;
    let path = req.uri().path();
    let max = if path == "/v1/files" {
        crate::api::openai::files::MAX_FILE_BYTES as usize + 1024 * 1024
    } else if takes_inputs(path) {
        limits.inputs
    } else {
        limits.default
    };
    req.extensions_mut().insert(BodyCap(max));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        let mut resp = too_large(max).into_response();
        // The unread body cannot be skipped cheaply: the connection ends with this answer.
        resp.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
        return resp;
    }
    next.run(req).await
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "request_too_large",
        format!("The request body is larger than the limit of {max} bytes."),
    )
}

/// The tokens of a comma-separated request header, over all its lines, each trimmed and
/// without its `;` parameters (`Accept`, `Accept-Encoding`, `Prefer`).
pub fn header_tokens<'h>(headers: &'h axum::http::HeaderMap, name: &str) -> impl Iterator<Item = &'h str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.split(';').next().unwrap_or("").trim())
}

#[cfg(test)]
mod tests {
    use super::header_tokens;
    use axum::http::{HeaderMap, HeaderValue};

    #[test]
    fn header_tokens_span_lines_and_drop_parameters() {
        let mut h = HeaderMap::new();
        h.append("accept", HeaderValue::from_static("image/avif, image/webp;q=0.9"));
        h.append("accept", HeaderValue::from_static(" */*;q=0.1"));
        let tokens: Vec<&str> = header_tokens(&h, "accept").collect();
        assert_eq!(tokens, ["image/avif", "image/webp", "*/*"]);
        assert_eq!(header_tokens(&h, "prefer").count(), 0);
    }
}
