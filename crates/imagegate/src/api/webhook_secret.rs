//! `GET /v1/webhooks/secret`, `POST /v1/webhooks/secret/rotate`: the key's Standard Webhooks
//! signing secret.

use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;

use super::auth::Caller;
use super::error::ApiError;
use crate::app::App;
use crate::webhooks::sign;

pub fn routes() -> axum::Router<Arc<App>> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/webhooks/secret", get(get_secret))
        .route("/v1/webhooks/secret/rotate", post(rotate_secret))
}

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
async fn rotate_secret(State(app): State<Arc<App>>, Caller(key): Caller) -> Result<axum::Json<Value>, ApiError> {
    let s = sign::new_secret();
    app.store.set_webhook_secret(&key.id, &s).await?;
    Ok(axum::Json(json!({"object": "webhook.secret", "secret": s})))
}
