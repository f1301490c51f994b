//! `/admin/v1/keys`: create, list and revoke API keys (admin token required).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

use super::auth::Admin;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::app::App;
use crate::domain::{ids, now_secs};
use crate::store::KeyRecord;

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/admin/v1/keys", axum::routing::post(create_key).get(list_keys))
        .route("/admin/v1/keys/{id}", axum::routing::delete(revoke_key))
}

fn key_json(k: &KeyRecord) -> Value {
    json!({
        "id": k.id,
        "object": "api_key",
        "name": k.name,
        "prefix": k.prefix,
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
    })
}

async fn create_key(
    State(app): State<Arc<App>>,
    _admin: Admin,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid_json", "The request body must be a JSON object."))?;
    if let Some(k) = obj.keys().find(|k| k.as_str() != "name") {
        return Err(ApiError::bad_request("unknown_parameter", format!("Unrecognized argument: {k}")).with_param(k));
    }
    let name = match obj.get("name") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) if s.chars().count() <= 200 => s.as_str(),
        Some(_) => {
            return Err(ApiError::bad_request("invalid_value", "'name' must be a string of at most 200 characters.")
                .with_param("name"));
        }
    };
    let (record, secret) = crate::keys::issue(app.store.as_ref(), name).await?;
    let mut body = key_json(&record);
    body["key"] = json!(secret);
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

async fn list_keys(State(app): State<Arc<App>>, _admin: Admin) -> Result<axum::Json<Value>, ApiError> {
    let keys = app.store.list_keys().await?;
    Ok(axum::Json(json!({"object": "list", "data": keys.iter().map(key_json).collect::<Vec<_>>()})))
}

async fn revoke_key(
    State(app): State<Arc<App>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    if !ids::looks_like(&id, "key_") || !app.store.revoke_key(&id, now_secs()).await? {
        return Err(ApiError::not_found(format!("No key found with id '{id}'.")).with_param("id"));
    }
    Ok(axum::Json(json!({"id": id, "object": "api_key", "deleted": true})))
}
