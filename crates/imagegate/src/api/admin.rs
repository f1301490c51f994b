//! `/admin/v1/keys`: create, list and revoke API keys (admin token required).

use crate::api::extract::Path;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::Arc;

use super::auth::Admin;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::domain::policy::{self, KeyPolicy};
use crate::domain::{ids, now_secs};
use crate::store::KeyRecord;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(create_key, list_keys))
        .routes(utoipa_axum::routes!(revoke_key, update_key, get_key))
}

pub(super) fn key_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No key found with id '{id}'.")).with_param("id")
}

/// A key by id (revoked or not), or 404.
pub(super) async fn find_key(app: &App, id: &str) -> Result<KeyRecord, ApiError> {
    if !ids::looks_like(id, "key_") {
        return Err(key_not_found(id));
    }
    app.store.get_key(id).await?.ok_or_else(|| key_not_found(id))
}

fn key_json(k: &KeyRecord) -> Value {
    let p = &k.policy;
    json!({
        "id": k.id,
        "object": "api_key",
        "name": k.name,
        "prefix": k.prefix,
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
        "retention": p.retention,
        "rpm": p.rpm,
        "max_concurrency": p.max_concurrency,
        "daily_images": p.daily_images,
        "budget_usd": p.budget_usd,
        "models": p.models,
        "spent_usd": crate::domain::pricing::round6(k.spent_usd),
        "reserved_usd": crate::domain::pricing::round6(k.reserved_usd),
        "export": k.export.as_ref().map(|d| super::export::export_json(&k.id, d)),
    })
}

/// Applies policy fields from a body (POST or PATCH) onto `policy`; 400 names the field.
fn apply_policy(policy: &mut KeyPolicy, body: &serde_json::Map<String, Value>) -> Result<(), ApiError> {
    let fields: serde_json::Map<String, Value> =
        body.iter().filter(|(k, _)| k.as_str() != "name").map(|(k, v)| (k.clone(), v.clone())).collect();
    policy.apply(&fields).map_err(|(field, message)| {
        let code = if policy::FIELDS.contains(&field.as_str()) { "invalid_value" } else { "unknown_parameter" };
        ApiError::bad_request(code, message).with_param(&field)
    })
}

#[utoipa::path(
    post,
    path = "/admin/v1/keys",
    tag = "Admin",
    summary = "Create a key",
    description = "The secret is in the answer's `key`, once; only its hash is stored.",
    request_body = doc::admin::KeyPolicy,
    responses(
        (status = 201, description = "The key, with its secret", body = doc::admin::Key, links(("GetKey" = (operation_id = "get_key", parameters(("id" = "$response.body#/id")))), ("UpdateKey" = (operation_id = "update_key", parameters(("id" = "$response.body#/id")))), ("RevokeKey" = (operation_id = "revoke_key", parameters(("id" = "$response.body#/id")))), ("GetExport" = (operation_id = "get_export", parameters(("id" = "$response.body#/id")))), ("SetExport" = (operation_id = "set_export", parameters(("id" = "$response.body#/id")))), ("DeleteExport" = (operation_id = "delete_export", parameters(("id" = "$response.body#/id")))))),
        doc::common::AdminErrors,
    )
)]
async fn create_key(
    State(app): State<Arc<App>>,
    _admin: Admin,
    JsonBody(body): JsonBody,
) -> Result<Response, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid_json", "The request body must be a JSON object."))?;
    let mut policy = KeyPolicy::default();
    apply_policy(&mut policy, obj)?;
    let name = match obj.get("name") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) if s.chars().count() <= 200 => s.as_str(),
        Some(_) => {
            return Err(ApiError::bad_request("invalid_value", "'name' must be a string of at most 200 characters.")
                .with_param("name"));
        }
    };
    let (record, secret) = crate::keys::issue(app.store.as_ref(), name).await?;
    let record = if policy == KeyPolicy::default() {
        record
    } else {
        app.store.set_key_policy(&record.id, &policy).await?.unwrap_or(record)
    };
    let mut body = key_json(&record);
    body["key"] = json!(secret);
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

#[utoipa::path(
    get,
    path = "/admin/v1/keys",
    tag = "Admin",
    summary = "List keys",
    responses(
        (status = 200, description = "Every key", body = doc::admin::KeyList),
        doc::common::AdminErrors,
    )
)]
async fn list_keys(State(app): State<Arc<App>>, _admin: Admin) -> Result<axum::Json<Value>, ApiError> {
    let keys = app.store.list_keys().await?;
    Ok(axum::Json(json!({"object": "list", "data": keys.iter().map(key_json).collect::<Vec<_>>()})))
}

#[utoipa::path(
    delete,
    path = "/admin/v1/keys/{id}",
    tag = "Admin",
    summary = "Revoke a key",
    params(("id" = String, Path, description = "`key_…`")),
    responses(
        (status = 200, description = "Revoked", body = doc::common::Deleted),
        doc::common::AdminErrors,
    )
)]
async fn revoke_key(
    State(app): State<Arc<App>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    if !ids::looks_like(&id, "key_") || !app.store.revoke_key(&id, now_secs()).await? {
        return Err(key_not_found(&id));
    }
    app.keys.forget(&id);
    Ok(axum::Json(json!({"id": id, "object": "api_key", "deleted": true})))
}

#[utoipa::path(
    get,
    path = "/admin/v1/keys/{id}",
    tag = "Admin",
    summary = "Get a key",
    params(("id" = String, Path, description = "`key_…`")),
    responses(
        (status = 200, description = "The key", body = doc::admin::Key),
        doc::common::AdminErrors,
    )
)]
async fn get_key(
    State(app): State<Arc<App>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(key_json(&find_key(&app, &id).await?)))
}

/// Sets a key's policy fields; `null` clears one back to the default.
#[utoipa::path(
    patch,
    path = "/admin/v1/keys/{id}",
    tag = "Admin",
    summary = "Change a key's policy",
    description = "`null` clears a field.",
    params(("id" = String, Path, description = "`key_…`")),
    request_body = doc::admin::KeyPolicy,
    responses(
        (status = 200, description = "The key", body = doc::admin::Key),
        doc::common::AdminErrors,
    )
)]
async fn update_key(
    State(app): State<Arc<App>>,
    _admin: Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<axum::Json<Value>, ApiError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid_json", "The request body must be a JSON object."))?;
    if obj.contains_key("name") {
        return Err(ApiError::bad_request("invalid_value", "A key's name cannot be changed.").with_param("name"));
    }
    let key = find_key(&app, &id).await?;
    let mut policy = key.policy.clone();
    apply_policy(&mut policy, obj)?;
    let updated = app.store.set_key_policy(&id, &policy).await?.ok_or_else(|| key_not_found(&id))?;
    app.keys.forget(&id);
    Ok(axum::Json(key_json(&updated)))
}
