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
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if mime != "application/json" && !mime.ends_with("+json") {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Expected 'Content-Type: application/json', got {:?}.", ct),
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request_too_large",
                    "The request body is larger than the limit.",
                )
            } else {
                ApiError::bad_request("invalid_body", format!("Could not read the request body: {rej}"))
            }
        })?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::bad_request("invalid_json", format!("We could not parse the JSON body of your request: {e}."))
        })?;
        Ok(JsonBody(value))
    }
}
