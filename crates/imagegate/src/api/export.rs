//! `/admin/v1/keys/{id}/export`: the customer's own bucket every image of a key is also copied
//! to (admin token required). `PUT` checks the destination (writes, reads back and deletes a
//! probe object) before accepting it, seals a literal secret, and never shows it again.

use crate::api::extract::Path;
use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

use super::admin::{find_key, key_not_found};
use super::auth::Admin;
use super::error::ApiError;
use super::extract::JsonBody;
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::blobs::{BlobError, BlobStore};
use crate::delivery::export::open_destination;
use crate::domain::export::{ENV_PREFIX, ExportDestination, parse_request};

const PROBE_TIMEOUT: Duration = Duration::from_secs(20);

pub fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(set_export, get_export, delete_export))
}

pub fn export_json(key_id: &str, dest: &ExportDestination) -> Value {
    let mut v = dest.public_json();
    v["object"] = json!("export_destination");
    v["key_id"] = json!(key_id);
    v
}

#[utoipa::path(
    put,
    path = "/admin/v1/keys/{id}/export",
    tag = "Admin",
    summary = "Set a key's export bucket",
    description = "Every image the key makes is also copied to this S3-compatible bucket. A probe object is written, read and deleted first.",
    params(("id" = String, Path, description = "`key_…`")),
    request_body = doc::admin::ExportRequest,
    responses(
        (status = 200, description = "The destination", body = doc::admin::ExportDestination),
        doc::common::AdminErrors,
    )
)]
async fn set_export(
    State(app): State<Arc<App>>,
    _admin: Admin,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<axum::Json<Value>, ApiError> {
    let key = find_key(&app, &id).await?;
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid_json", "The request body must be a JSON object."))?;
    let request = parse_request(obj).map_err(|(param, message)| {
        let code = if message.starts_with("Unrecognized") { "unknown_parameter" } else { "invalid_value" };
        ApiError::bad_request(code, message).with_param(&param)
    })?;
    let mut dest = request.destination;
    if request.verify {
        verify(&dest, &key.id).await?;
    }
    if !dest.secret_access_key.starts_with(ENV_PREFIX) {
        let sealer = app.sealer.as_ref().ok_or_else(|| {
            ApiError::bad_request(
                "secret_key_not_configured",
                "Storing a literal secret needs the server's IMAGEGATE_SECRET_KEY; or pass \"env::NAME\" to read it from the server's environment.",
            )
            .with_param("secret_access_key")
        })?;
        dest.secret_access_key = sealer.seal(&dest.secret_access_key, &key.id).map_err(|e| ApiError::internal(&e))?;
    }
    let updated = app.store.set_key_export(&key.id, Some(&dest)).await?.ok_or_else(|| key_not_found(&id))?;
    app.keys.forget(&key.id);
    tracing::info!(key_id = updated.id, bucket = dest.bucket, prefix = dest.prefix, "export destination set");
    Ok(axum::Json(export_json(&updated.id, &dest)))
}

/// Writes, reads back and deletes a probe object with the given (unsealed) credentials.
async fn verify(dest: &ExportDestination, key_id: &str) -> Result<(), ApiError> {
    let unreachable = |message: String| ApiError::bad_request("export_destination_unreachable", message);
    let target = open_destination(dest, None, key_id).map_err(|m| {
        let param = if m.starts_with("access_key_id") { "access_key_id" } else { "secret_access_key" };
        ApiError::bad_request("invalid_value", m).with_param(param)
    })?;
    let bucket = &dest.bucket;
    match tokio::time::timeout(PROBE_TIMEOUT, target.probe()).await {
        Err(_) => Err(unreachable(format!(
            "The destination did not answer within {}s (endpoint {}).",
            PROBE_TIMEOUT.as_secs(),
            dest.endpoint.as_deref().unwrap_or("AWS S3")
        ))),
        Ok(Ok(())) => Ok(()),
        Ok(Err(BlobError::Denied(_))) => {
            Err(unreachable(format!("The destination refused the credentials for bucket '{bucket}'."))
                .with_param("access_key_id"))
        }
        Ok(Err(BlobError::MissingBucket(_))) => {
            Err(unreachable(format!("Bucket '{bucket}' does not exist at the destination.")).with_param("bucket"))
        }
        Ok(Err(e)) => {
            let mut detail = e.to_string();
            crate::domain::truncate_text(&mut detail, 300);
            Err(unreachable(format!("A probe object could not be written to bucket '{bucket}': {detail}")))
        }
    }
}

#[utoipa::path(
    get,
    path = "/admin/v1/keys/{id}/export",
    tag = "Admin",
    summary = "A key's export bucket",
    params(("id" = String, Path, description = "`key_…`")),
    responses(
        (status = 200, description = "The destination (the secret as `<sealed>` or its `env::` name)", body = doc::admin::ExportDestination),
        doc::common::AdminErrors,
    )
)]
async fn get_export(
    State(app): State<Arc<App>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let key = find_key(&app, &id).await?;
    let dest = key.export.as_ref().ok_or_else(|| {
        ApiError::not_found(format!("Key '{id}' has no export destination.")).with_code("export_not_found")
    })?;
    Ok(axum::Json(export_json(&key.id, dest)))
}

/// Later images are no longer copied; copies already owed fail with a clear error.
#[utoipa::path(
    delete,
    path = "/admin/v1/keys/{id}/export",
    tag = "Admin",
    summary = "Stop exporting",
    params(("id" = String, Path, description = "`key_…`")),
    responses(
        (status = 200, description = "Removed", body = doc::common::Deleted),
        doc::common::AdminErrors,
    )
)]
async fn delete_export(
    State(app): State<Arc<App>>,
    _admin: Admin,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let key = find_key(&app, &id).await?;
    if key.export.is_none() {
        return Err(ApiError::not_found(format!("Key '{id}' has no export destination.")).with_code("export_not_found"));
    }
    app.store.set_key_export(&key.id, None).await?;
    app.keys.forget(&key.id);
    Ok(axum::Json(json!({"object": "export_destination", "key_id": key.id, "deleted": true})))
}
