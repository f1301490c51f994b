//! `GET /admin/v1/channels`: each upstream channel's state, load and recent errors.

use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;

use super::auth::Admin;
use crate::app::App;

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new().route("/admin/v1/channels", axum::routing::get(list_channels))
}

async fn list_channels(State(app): State<Arc<App>>, _admin: Admin) -> axum::Json<Value> {
    let data: Vec<Value> = app
        .providers
        .routers()
        .flat_map(|r| r.channels.iter())
        .map(|ch| {
            let (calls, errors) = ch.counts();
            json!({
                "object": "channel",
                "name": ch.spec.name,
                "provider": ch.provider.name(),
                "state": ch.state().as_str(),
                "disabled_reason": ch.disabled_reason(),
                "in_flight": ch.in_flight(),
                "max_concurrency": (ch.spec.max_concurrency > 0).then_some(ch.spec.max_concurrency),
                "rpm": (ch.spec.rpm > 0).then_some(ch.spec.rpm),
                "weight": ch.spec.weight,
                "calls": calls,
                "errors": errors,
                "recent_error_rate": ch.recent_error_rate(),
            })
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data}))
}
