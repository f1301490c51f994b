//! `/healthz` (process up) and `/readyz` (store and blob store reachable).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

use crate::app::App;

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new().route("/healthz", axum::routing::get(healthz)).route("/readyz", axum::routing::get(readyz))
}

/// The process id lets a supervisor (and the process tests) tell which process answers a port.
async fn healthz() -> Response {
    axum::Json(json!({"status": "ok", "pid": std::process::id()})).into_response()
}

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
