//! `/healthz` (process up) and `/readyz` (store and blob store reachable).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

use crate::api::openapi::schemas as doc;
use crate::app::App;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(healthz)).routes(utoipa_axum::routes!(readyz))
}

/// The process id lets a supervisor (and the process tests) tell which process answers a port.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "Operations",
    summary = "Liveness",
    responses((status = 200, description = "Alive", body = doc::common::Health))
)]
async fn healthz() -> Response {
    axum::Json(json!({"status": "ok", "pid": std::process::id()})).into_response()
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "Operations",
    summary = "Readiness",
    description = "The store and the image storage are reachable.",
    responses(
        (status = 200, description = "Ready", body = doc::common::Readiness),
        (status = 503, description = "Not ready, or shutting down", body = doc::common::Readiness),
    )
)]
async fn readyz(State(app): State<Arc<App>>) -> Response {
    if app.shutting_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({"status": "shutting_down"}))).into_response();
    }
    let store = app.store.ping().await;
    let blobs = app.blobs.head("readyz-probe").await;
    let blobs_ok = match &blobs {
        Ok(_) => true,
        Err(e) => e.is_not_found(),
    };
    let body = json!({
        "status": if store.is_ok() && blobs_ok { "ready" } else { "not_ready" },
        "store": if store.is_ok() { "ok" } else { "unreachable" },
        "blobs": if blobs_ok { "ok" } else { "unreachable" },
        "provider": app.providers.summary(),
    });
    let status = if store.is_ok() && blobs_ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}
