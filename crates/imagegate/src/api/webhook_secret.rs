//! `GET /v1/webhooks/secret`, `POST /v1/webhooks/secret/rotate`: the key's Standard Webhooks
//! signing secret.

use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;

use super::auth::Caller;
use super::error::ApiError;
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::webhooks::sign;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(get_secret))
        .routes(utoipa_axum::routes!(rotate_secret))
}

#[utoipa::path(
    get,
    path = "/v1/webhooks/secret",
    tag = "Webhooks",
    summary = "The key's webhook signing secret",
    responses(
        (status = 200, description = "The secret", body = doc::tasks::WebhookSecret),
        doc::common::KeyErrors,
    )
)]
async fn get_secret(State(app): State<Arc<App>>, Caller(key): Caller) -> Result<axum::Json<Value>, ApiError> {
    let secret = match app.store.webhook_secret(&key.id).await? {
        Some(s) => s,
        None => {
            // Keys made before webhooks existed get their secret on first use.
            let s = sign::new_secret();
            app.store.set_webhook_secret(&key.id, &s).await?;
            s
        }
    };
    Ok(axum::Json(json!({"object": "webhook.secret", "secret": secret})))
}

/// Later deliveries (including retries of earlier events) are signed with the new secret.
#[utoipa::path(
    post,
    path = "/v1/webhooks/secret/rotate",
    tag = "Webhooks",
    summary = "Rotate the webhook signing secret",
    responses(
        (status = 200, description = "The new secret", body = doc::tasks::WebhookSecret),
        doc::common::KeyErrors,
    )
)]
async fn rotate_secret(State(app): State<Arc<App>>, Caller(key): Caller) -> Result<axum::Json<Value>, ApiError> {
    let s = sign::new_secret();
    app.store.set_webhook_secret(&key.id, &s).await?;
    Ok(axum::Json(json!({"object": "webhook.secret", "secret": s})))
}
