//! `GET /admin/v1/channels`: each upstream channel's state, load and recent errors;
//! `POST /admin/v1/channels/{name}/enable` puts a disabled, open or resting channel back in use.

use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;

use super::auth::Admin;
use super::error::ApiError;
use super::extract::Path;
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::providers::channels::Channel;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(list_channels))
        .routes(utoipa_axum::routes!(enable_channel))
}

fn channel_json(ch: &Channel) -> Value {
    let (calls, errors) = ch.counts();
    json!({
        "object": "channel",
        "name": ch.spec.name,
        "provider": ch.provider.name(),
        "state": ch.state().as_str(),
        "disabled_reason": ch.disabled_reason(),
        "rate_limited_for_secs": ch.resting_for().map(|d| d.as_secs_f64().ceil() as u64),
        "in_flight": ch.in_flight(),
        "max_concurrency": (ch.spec.max_concurrency > 0).then_some(ch.spec.max_concurrency),
        "rpm": (ch.spec.rpm > 0).then_some(ch.spec.rpm),
        "weight": ch.spec.weight,
        "calls": calls,
        "errors": errors,
        "recent_error_rate": ch.recent_error_rate(),
    })
}

#[utoipa::path(
    get,
    path = "/admin/v1/channels",
    tag = "Admin",
    summary = "Upstream channels' health",
    responses(
        (status = 200, description = "Each channel's state, load and recent error rate", body = doc::admin::ChannelList),
        doc::common::AdminErrors,
    )
)]
async fn list_channels(State(app): State<Arc<App>>, _admin: Admin) -> axum::Json<Value> {
    let data: Vec<Value> = app.providers.routers().flat_map(|r| r.channels.iter()).map(|c| channel_json(c)).collect();
    axum::Json(json!({"object": "list", "data": data}))
}

#[utoipa::path(
    post,
    path = "/admin/v1/channels/{name}/enable",
    tag = "Admin",
    summary = "Put a channel back in use",
    params(("name" = String, Path, description = "The channel's name")),
    responses(
        (status = 200, description = "The channel", body = doc::admin::Channel),
        doc::common::AdminErrors,
    )
)]
async fn enable_channel(
    State(app): State<Arc<App>>,
    _admin: Admin,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let ch = app.providers.routers().find_map(|r| r.channel(&name)).ok_or_else(|| {
        ApiError::not_found(format!("No channel named '{name}' (see GET /admin/v1/channels).")).with_param("name")
    })?;
    ch.enable();
    Ok(axum::Json(channel_json(ch)))
}
