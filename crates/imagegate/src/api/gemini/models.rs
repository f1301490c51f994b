//! `GET /v1beta/models` and `GET /v1beta/models/{model}` in Gemini's `Model` shape.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};
use std::sync::Arc;

use super::error::{GeminiCaller, GeminiError};
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::domain::models;

fn model_json(app: &App, id: &str) -> Value {
    let model = models::resolve(id);
    let upstream = model.map(|m| m.upstream).unwrap_or(id);
    let family = model.map(|m| m.family).unwrap_or(models::Family::Pro);
    json!({
        "name": format!("models/{id}"),
        "baseModelId": upstream,
        "version": "001",
        "displayName": id,
        "description": format!("{upstream} through imagegate ({}).", app.providers.owner_label(upstream)),
        "inputTokenLimit": 65536,
        "outputTokenLimit": 32768,
        "supportedGenerationMethods": ["generateContent", "streamGenerateContent"],
        "maxInputImages": crate::domain::request::max_reference_images(family),
    })
}

#[utoipa::path(
    get,
    path = "/v1beta/models",
    operation_id = "gemini_list_models",
    tag = "Gemini",
    summary = "List models (Gemini shape)",
    responses(
        (status = 200, description = "The models", body = doc::gemini::GeminiModelList),
        (status = "4XX", description = "An error in Gemini's shape", body = doc::gemini::GeminiError),
    )
)]
pub async fn list_models(State(app): State<Arc<App>>, _caller: GeminiCaller) -> Json<Value> {
    let data: Vec<Value> = models::public_ids().map(|id| model_json(&app, id)).collect();
    Json(json!({"models": data}))
}

#[utoipa::path(
    get,
    path = "/v1beta/models/{id}",
    operation_id = "gemini_get_model",
    tag = "Gemini",
    summary = "Get a model (Gemini shape)",
    params(("id" = String, Path, description = "A model id or alias")),
    responses(
        (status = 200, description = "The model", body = doc::gemini::GeminiModel),
        (status = "4XX", description = "An error in Gemini's shape", body = doc::gemini::GeminiError),
    )
)]
pub async fn get_model(
    State(app): State<Arc<App>>,
    _caller: GeminiCaller,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, GeminiError> {
    let id = id.strip_prefix("models/").unwrap_or(&id).to_string();
    if models::resolve(&id).is_none() {
        return Err(GeminiError::not_found(format!("models/{id} is not found.")));
    }
    Ok(Json(model_json(&app, &id)))
}
