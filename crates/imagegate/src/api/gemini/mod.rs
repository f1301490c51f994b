//! The Gemini-native surface, for `google-genai` with `http_options={"base_url": …}` and any
//! Gemini REST client: `POST /v1beta/models/{model}:generateContent` (and `/v1/…`),
//! `:streamGenerateContent` (`?alt=sse` or a JSON array), `GET /v1beta/models[/{model}]`. A
//! translator like `api/openai/`: each request is the same durable task as any other.

mod answer;
mod error;
mod models;
mod request;
mod stream;

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::sync::Arc;

use crate::api::extract::RawJson;
use crate::api::openai::images::{submit, wait_for_end};
use crate::app::App;
use crate::domain::task::TaskMode;
use error::{GeminiCaller, GeminiError};

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1beta/models", get(models::list_models))
        .route("/v1beta/models/{id}", get(models::get_model).post(generate))
        .route("/v1/models/{id}", post(generate))
}

/// `{model}:generateContent` or `{model}:streamGenerateContent`.
async fn generate(
    State(app): State<Arc<App>>,
    GeminiCaller(key): GeminiCaller,
    axum::extract::Path(model_action): axum::extract::Path<String>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, GeminiError> {
    let not_found = || GeminiError::not_found(format!("Method not found: {model_action}."));
    let (model, action) = model_action.rsplit_once(':').ok_or_else(not_found)?;
    let stream = match action {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return Err(not_found()),
    };
    let model = model.strip_prefix("models/").unwrap_or(model).to_string();
    if crate::domain::models::resolve(&model).is_none() {
        return Err(GeminiError::not_found(format!("models/{model} is not found for API version v1beta.")));
    }
    let sse = req
        .uri()
        .query()
        .is_some_and(|q| url::form_urlencoded::parse(q.as_bytes()).any(|(k, v)| k == "alt" && v == "sse"));
    let inline = !headers
        .get("imagegate-response-format")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("url"));
    let RawJson(bytes) = RawJson::from_request(req, &()).await?;
    let submission = request::translate(&bytes, &model, inline)?;
    let (submitted, image_req) = Box::pin(submit(&app, &key, TaskMode::Sync, submission, &headers)).await?;
    // The body (megabytes of inline images, now stored) is not kept for the wait.
    drop(bytes);
    let owner = key.id.clone();
    drop(key);
    if stream {
        return Ok(stream::respond(app.clone(), owner, submitted, image_req, inline, sse).await);
    }
    let ended = wait_for_end(&app, &owner, submitted, &image_req).await?;
    let task_id = ended.task.id.clone();
    let body = Box::pin(answer::render(&app, &ended, &image_req, inline)).await?;
    drop(ended);
    let mut resp = ([(header::CONTENT_TYPE, "application/json")], body).into_response();
    *resp.status_mut() = StatusCode::OK;
    error::header(&mut resp, "imagegate-task-id", &task_id);
    Ok(resp)
}
