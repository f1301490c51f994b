//! SEAM HTTP: thin axum handlers. Each module exports `routes()`; this file merges them, so the
//! router reads like the API's table of contents, and adds the cross-cutting layers.

pub mod admin;
pub mod auth;
pub mod channels;
pub mod error;
pub mod export;
pub mod extract;
pub mod gemini;
pub mod health;
pub mod images;
pub mod metrics;
pub mod openai;
pub mod openapi;
pub mod tasks;
pub mod ui;
pub mod usage;
pub mod watch;
pub mod webhook_secret;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::IntoResponse;
use std::sync::Arc;
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::app::App;
use error::ApiError;

#[derive(Clone, Copy)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _req: &Request<B>) -> Option<RequestId> {
        crate::domain::ids::request_id().parse().ok().map(RequestId::new)
    }
}

pub fn router(app: Arc<App>) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let max_body = app.rt.max_body_bytes;
    let limits = extract::BodyLimits { default: max_body, inputs: app.rt.inputs.max_body_bytes };
    let (routes, spec) = api_routes(limits.inputs).split_for_parts();
    let spec = openapi::complete(spec).to_json().map(bytes::Bytes::from).unwrap_or_default();
    routes
        .merge(openapi::docs::routes(spec))
        .merge(ui::routes())
        .route_layer(axum::middleware::from_fn(metrics::track))
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(limits, extract::declared_body_limit))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "The server had an error while processing your request.",
            )
            .into_response()
        }))
        // One span per request with its id and path, never its query (`?key=` carries an API
        // key on the Gemini surface) or headers: every log line of the request names its id.
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<axum::body::Body>| {
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", request_id = %id, method = %req.method(), path = %req.uri().path())
        }))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeId))
        .layer(axum::middleware::map_request(drop_unfit_request_id))
        .with_state(app)
}

/// A client's `x-request-id` is kept (logged, stored with its task) only when it is short and
/// plain; otherwise it is dropped here and the next layer gives the request one of ours.
async fn drop_unfit_request_id(mut req: Request<axum::body::Body>) -> Request<axum::body::Body> {
    let unfit = req.headers().get_all("x-request-id").iter().count() > 1
        || req.headers().get("x-request-id").is_some_and(|v| !crate::domain::ids::is_fit_request_id(v.as_bytes()));
    if unfit {
        req.headers_mut().remove("x-request-id");
    }
    req
}

/// Every route of the API, each registered with its documentation.
fn api_routes(input_body_limit: usize) -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    utoipa_axum::router::OpenApiRouter::new()
        .merge(openai::routes(input_body_limit))
        .merge(gemini::routes())
        .merge(tasks::routes())
        .merge(usage::routes())
        .merge(webhook_secret::routes())
        .merge(images::routes())
        .merge(admin::routes())
        .merge(export::routes())
        .merge(channels::routes())
        .merge(health::routes())
        .merge(metrics::routes())
}

/// The OpenAPI document of the API (also served at `/openapi.json`).
pub fn spec() -> utoipa::openapi::OpenApi {
    openapi::complete(api_routes(0).into_openapi())
}

async fn unknown_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("Unknown route {}.", uri.path())).with_code("unknown_route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "This route does not accept that method.")
}
