//! Errors in Gemini's shape, `{"error": {"code": 400, "message": "…", "status": "INVALID_ARGUMENT"}}`,
//! and the caller authenticated as Gemini clients authenticate.

use axum::extract::FromRequestParts;
use axum::http::{HeaderValue, StatusCode, request::Parts};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

use crate::api::error::ApiError;
use crate::app::App;
use crate::store::KeyRecord;

/// An [`ApiError`] rendered in Gemini's shape.
#[derive(Debug)]
pub struct GeminiError(pub ApiError);

impl<E: Into<ApiError>> From<E> for GeminiError {
    fn from(e: E) -> GeminiError {
        GeminiError(e.into())
    }
}

/// Google's status name for an HTTP status.
pub fn status_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 415 | 422 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 | 410 => "NOT_FOUND",
        405 => "UNIMPLEMENTED",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

impl IntoResponse for GeminiError {
    fn into_response(self) -> Response {
        let e = self.0;
        // The OpenAI-shaped answer carries the headers (Retry-After, the task id); keep them.
        let mut message = e.message.clone();
        if let Some(p) = &e.param {
            message = format!("{message} (at {p})");
        }
        let status = e.status;
        let body = json!({"error": {"code": status.as_u16(), "message": message, "status": status_name(status)}});
        let mut resp = e.into_response();
        let headers = resp.headers().clone();
        resp = (status, axum::Json(body)).into_response();
        for name in ["retry-after", "imagegate-task-id", "x-request-id"] {
            if let Some(v) = headers.get(name) {
                resp.headers_mut().insert(name, v.clone());
            }
        }
        resp
    }
}

impl GeminiError {
    pub fn invalid(message: impl Into<String>) -> GeminiError {
        GeminiError(ApiError::bad_request("invalid_argument", message))
    }

    pub fn not_found(message: impl Into<String>) -> GeminiError {
        GeminiError(ApiError::new(StatusCode::NOT_FOUND, "not_found", message))
    }
}

/// The authenticated key of a Gemini-surface request (`x-goog-api-key`, `?key=` or Bearer).
pub struct GeminiCaller(pub KeyRecord);

impl FromRequestParts<Arc<App>> for GeminiCaller {
    type Rejection = GeminiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, GeminiError> {
        let key = crate::api::auth::gemini_key(parts);
        crate::api::auth::authenticate(app, key.as_deref()).await.map(GeminiCaller).map_err(|mut e| {
            if e.message.starts_with("You didn't provide") {
                e.message =
                    "Method doesn't allow unregistered callers: send an imagegate key as 'x-goog-api-key' or '?key='."
                        .into();
            }
            GeminiError(e)
        })
    }
}

pub fn header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}
