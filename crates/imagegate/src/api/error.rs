//! The one error type at the HTTP edge: OpenAI's `{"error": {message, type, param, code}}`.
//! 4xx bodies carry detail; 5xx bodies stay generic and the detail goes to the log.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::domain::request::Invalid;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: String,
    pub message: String,
    pub param: Option<String>,
    pub retry_after: Option<u64>,
    pub task_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind: kind_for(status),
            code: code.to_string(),
            message: message.into(),
            param: None,
            retry_after: None,
            task_id: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "invalid_api_key", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// A 500 whose cause is logged, never shown.
    pub fn internal(cause: &dyn std::error::Error) -> ApiError {
        let mut chain = cause.to_string();
        let mut src = cause.source();
        while let Some(s) = src {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            src = s.source();
        }
        tracing::error!(error = %chain, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "The server had an error while processing your request.",
        )
    }

    pub fn with_param(mut self, param: &str) -> ApiError {
        self.param = Some(param.to_string());
        self
    }

    pub fn with_code(mut self, code: &str) -> ApiError {
        self.code = code.to_string();
        self
    }

    pub fn with_retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after = Some(secs);
        self
    }

    pub fn with_task(mut self, task_id: &str) -> ApiError {
        self.task_id = Some(task_id.to_string());
        self
    }

    /// A task's stored `error` (`{status, type, code, message}`) as the response it stands for.
    pub fn from_task_error(err: &Value) -> ApiError {
        let status =
            err["status"].as_u64().and_then(|s| StatusCode::from_u16(s as u16).ok()).unwrap_or(StatusCode::BAD_GATEWAY);
        let mut e = ApiError::new(
            status,
            err["code"].as_str().unwrap_or("upstream_error"),
            err["message"].as_str().unwrap_or("The task failed."),
        );
        if status == StatusCode::TOO_MANY_REQUESTS {
            e.retry_after = Some(err["retry_after"].as_u64().unwrap_or(30));
        }
        e
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl From<Invalid> for ApiError {
    fn from(i: Invalid) -> ApiError {
        ApiError { param: i.param, ..ApiError::bad_request(i.code, i.message) }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        if e.is_transient() {
            // A database restart or failover: nothing was written; the client may try again.
            tracing::warn!(error = %e, "the database is unreachable");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database_unavailable",
                "The gateway's database is unreachable for a moment. Nothing was done; try again shortly.",
            )
            .with_retry_after(2);
        }
        ApiError::internal(&e)
    }
}

fn kind_for(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 | 413 | 415 | 405 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        410 => "gone_error",
        429 => "rate_limit_error",
        502 => "upstream_error",
        503 => "unavailable_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        let headers = resp.headers_mut();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        if let Some(id) = &self.task_id
            && let Ok(v) = HeaderValue::from_str(id)
        {
            headers.insert("imagegate-task-id", v);
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

impl From<crate::inputs::InputError> for ApiError {
    fn from(e: crate::inputs::InputError) -> ApiError {
        use crate::inputs::InputError;
        match e {
            InputError::NotFound { param, message } => {
                ApiError::new(StatusCode::NOT_FOUND, "image_not_found", message).with_param(&param)
            }
            InputError::Invalid { param, message } => {
                ApiError::bad_request("invalid_image", message).with_param(&param)
            }
            InputError::Url { param, message } => {
                ApiError::bad_request("invalid_image_url", message).with_param(&param)
            }
            InputError::Store(e) => e.into(),
            InputError::Blob(e) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                format!("The input image could not be stored: {e}"),
            ),
        }
    }
}
