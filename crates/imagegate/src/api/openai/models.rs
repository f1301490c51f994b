//! `GET /v1/models`.

use crate::api::extract::Path;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;

use crate::api::auth::Caller;
use crate::api::error::ApiError;
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::domain::models;

fn model_json(app: &App, id: &str) -> Value {
    let model = models::resolve(id);
    let upstream = model.map(|m| m.upstream).unwrap_or(id);
    let family = model.map(|m| m.family).unwrap_or(models::Family::Pro);
    json!({
        "id": id,
        "object": "model",
        "created": 0,
        "owned_by": app.providers.owner_label(upstream),
        "upstream_model": upstream,
        // What an edit's images or `reference_images` may carry for this model.
        "max_input_images": crate::domain::request::max_reference_images(family),
        "max_input_image_bytes": app.rt.inputs.max_image_bytes,
        "max_input_total_bytes": app.rt.inputs.max_total_bytes,
        "max_input_image_pixels": crate::imaging::MAX_PIXELS,
    })
}

#[utoipa::path(
    get,
    path = "/v1/models",
    tag = "Models",
    summary = "List models",
    description = "Models and aliases, with who serves them and their input limits.",
    responses(
        (status = 200, description = "The models", body = doc::images::ModelList),
        doc::common::KeyErrors,
    )
)]
pub async fn list_models(State(app): State<Arc<App>>, _caller: Caller) -> Json<Value> {
    let data: Vec<Value> = models::public_ids().map(|id| model_json(&app, id)).collect();
    Json(json!({"object": "list", "data": data}))
}

#[utoipa::path(
    get,
    path = "/v1/models/{id}",
    tag = "Models",
    summary = "Get a model",
    params(("id" = String, Path, description = "A model id or alias")),
    responses(
        (status = 200, description = "The model", body = doc::images::Model),
        doc::common::KeyErrors,
    )
)]
pub async fn get_model(
    State(app): State<Arc<App>>,
    _caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    if models::resolve(&id).is_none() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "model_not_found",
            format!("The model '{id}' does not exist."),
        ));
    }
    Ok(Json(model_json(&app, &id)))
}
