//! Shapes shared by every route: the error body, list envelopes, health.

use utoipa::{IntoResponses, ToSchema};

/// OpenAI's error shape, used on every route but Gemini's.
#[derive(ToSchema)]
#[schema(example = json!({"error": {"message": "Invalid size '7x7'.", "type": "invalid_request_error", "param": "size", "code": "invalid_size"}}))]
pub struct Error {
    pub error: ErrorDetail,
}

#[derive(ToSchema)]
pub struct ErrorDetail {
    /// What went wrong, for a person.
    pub message: String,
    /// `invalid_request_error`, `authentication_error`, `permission_error`, `not_found_error`,
    /// `conflict_error`, `rate_limit_error`, `upstream_error`, `timeout_error`, `server_error`, …
    pub r#type: String,
    /// The request field at fault (`size`, `image[3]`, …), when there is one.
    pub param: Option<String>,
    /// A stable machine-readable code (`invalid_size`, `rate_limit_exceeded`, …).
    pub code: Option<String>,
}

/// Errors any authenticated route may answer.
#[derive(IntoResponses)]
pub enum KeyErrors {
    /// The request is malformed (the body names the field in `param`).
    #[response(status = 400)]
    BadRequest(Error),
    /// No key, an unknown key or a revoked one.
    #[response(status = 401)]
    Unauthorized(Error),
    /// Nothing of this key's with that id.
    #[response(status = 404)]
    NotFound(Error),
    /// Over one of the key's limits; `Retry-After` says when to come back.
    #[response(status = 429)]
    TooMany(Error),
}

/// Errors of the admin routes.
#[derive(IntoResponses)]
pub enum AdminErrors {
    /// The request is malformed (the body names the field in `param`).
    #[response(status = 400)]
    BadRequest(Error),
    /// No admin token or a wrong one, or the admin API is off (no token configured).
    #[response(status = 403)]
    Forbidden(Error),
    /// No key or channel with that id.
    #[response(status = 404)]
    NotFound(Error),
}

/// `{"object": "…", "id", "deleted": true}`.
#[derive(ToSchema)]
pub struct Deleted {
    pub id: String,
    pub object: String,
    pub deleted: bool,
}

/// `GET /healthz`.
#[derive(ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// The answering process's id (tells replicas apart).
    pub pid: Option<u32>,
}

/// `GET /readyz`.
#[derive(ToSchema)]
pub struct Readiness {
    /// `ready`, `not_ready` or `shutting_down`.
    pub status: String,
    /// `ok` or `unreachable`.
    pub store: Option<String>,
    /// `ok` or `unreachable`.
    pub blobs: Option<String>,
    /// Which providers serve the models (`gemini`, `simulated`, …).
    pub provider: Option<serde_json::Value>,
}

/// One server-sent event (`text/event-stream`).
#[derive(ToSchema)]
pub struct ServerSentEvent {
    /// `task.completed`, `image_generation.partial_image`, …
    pub event: Option<String>,
    pub id: Option<String>,
    /// JSON: the task, or the streamed chunk.
    pub data: String,
    pub retry: Option<u64>,
}
