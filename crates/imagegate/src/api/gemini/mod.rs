//! The Gemini-native surface, for `google-genai` with `http_options={"base_url": …}` and any
//! Gemini REST client: `POST /v1beta/models/{model}:generateContent` (and `/v1/…`),
//! `:streamGenerateContent` (`?alt=sse` or a JSON array), `GET /v1beta/models[/{model}]`. A
//! translator like `api/openai/`: each request is the same durable task as any other.

mod answer;
mod error;
mod models;
mod request;
mod stream;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use std::sync::Arc;

use crate::api::extract::RawJson;
use crate::api::openai::images::{submit, wait_for_end};
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::domain::task::TaskMode;
use error::{GeminiCaller, GeminiError};

pub fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    use utoipa::OpenApi;
    use utoipa_axum::routes;
    // `{model}:generateContent` is one path segment to axum (its router has no suffix
    // captures), so the generation paths are documented by `GenerateDocs` and routed here to
    // one handler that reads the method off the segment.
    utoipa_axum::router::OpenApiRouter::with_openapi(GenerateDocs::openapi())
        .routes(routes!(models::list_models))
        .routes(routes!(models::get_model))
        .route("/v1beta/models/{id}", post(generate))
        .route("/v1/models/{id}", post(generate))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(generate_content, stream_generate_content, generate_content_v1, stream_generate_content_v1))]
struct GenerateDocs;

macro_rules! generate_doc {
    ($name:ident, $path:literal, $summary:literal, $ok:literal, [$($content:tt)*]) => {
        #[utoipa::path(
            post,
            path = $path,
            tag = "Gemini",
            summary = $summary,
            description = "Gemini's REST shape, for `google-genai` and Gemini REST clients; keys as `x-goog-api-key`, `?key=` or `Authorization: Bearer`. A durable task like any other (`imagegate-task-id`). The header `imagegate-response-format: url` answers with `fileData` URLs instead of base64.",
            params(("model" = String, Path, description = "`gemini-3-pro-image-preview`, `nano-banana-pro`, …")),
            request_body = doc::gemini::GenerateContentRequest,
            responses(
                (status = 200, description = $ok, content($($content)*),
                    headers(("imagegate-task-id" = String, description = "The id of the task that holds this request"))),
                (status = "4XX", description = "An error in Gemini's shape", body = doc::gemini::GeminiError),
                (status = "5XX", description = "An upstream failure or a deadline, in Gemini's shape", body = doc::gemini::GeminiError),
            )
        )]
        #[allow(dead_code)]
        fn $name() {}
    };
}
// Braces: rustfmt leaves the response lists as written.
generate_doc! {
    generate_content,
    "/v1beta/models/{model}:generateContent",
    "Generate (Gemini shape)",
    "The answer: a candidate per image",
    [(doc::gemini::GenerateContentResponse = "application/json")]
}
generate_doc! {
    stream_generate_content,
    "/v1beta/models/{model}:streamGenerateContent",
    "Generate, streaming drafts (Gemini shape)",
    "With `?alt=sse`: server-sent events of `GenerateContentResponse` chunks (drafts as `thought` parts, then the answer); otherwise a JSON array of them",
    [(Vec<doc::gemini::GenerateContentResponse> = "application/json"), (doc::common::ServerSentEvent = "text/event-stream")]
}
generate_doc! {
    generate_content_v1,
    "/v1/models/{model}:generateContent",
    "Generate (Gemini shape, v1)",
    "The answer",
    [(doc::gemini::GenerateContentResponse = "application/json")]
}
generate_doc! {
    stream_generate_content_v1,
    "/v1/models/{model}:streamGenerateContent",
    "Generate, streaming drafts (Gemini shape, v1)",
    "Chunks, as on v1beta",
    [(Vec<doc::gemini::GenerateContentResponse> = "application/json"), (doc::common::ServerSentEvent = "text/event-stream")]
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
