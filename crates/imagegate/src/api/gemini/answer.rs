//! A finished task rendered as Gemini's `GenerateContentResponse`: one candidate per image
//! (`inlineData`, or with `imagegate-response-format: url` a `fileData` pointing at the image's
//! URL), `finishReason`, `usageMetadata`; a blocked prompt as `promptFeedback`, a refused image as
//! its `finishReason`, as Gemini answers them (200); other failures as Gemini errors.

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::error::GeminiError;
use crate::api::error::ApiError;
use crate::api::openai::images::{image_bytes, placeholder, splice_base64};
use crate::app::App;
use crate::domain::request::ImageRequest;
use crate::domain::task::TaskStatus;
use crate::worker::Finished;

/// The answer's JSON bytes.
pub async fn render(app: &App, ended: &Finished, req: &ImageRequest, inline: bool) -> Result<Vec<u8>, GeminiError> {
    let task = &ended.task;
    match task.status {
        TaskStatus::Completed => completed(app, ended, req, inline).await,
        TaskStatus::Failed => {
            let error = task.error.clone().unwrap_or(Value::Null);
            if error["code"] == "content_policy_violation" {
                return Ok(refused(&error, req, &task.id).to_string().into_bytes());
            }
            Err(GeminiError(ApiError::from_task_error(&error).with_task(&task.id)))
        }
        TaskStatus::Cancelled => Err(GeminiError(
            ApiError::new(StatusCode::CONFLICT, "task_cancelled", "The task was cancelled.").with_task(&task.id),
        )),
        TaskStatus::Queued | TaskStatus::Running => Err(GeminiError(
            ApiError::new(StatusCode::GATEWAY_TIMEOUT, "still_running", "The image is still being generated.")
                .with_task(&task.id),
        )),
    }
}

fn usage(result: &Value) -> Value {
    let u = &result["usage"];
    let (input, output) = (u["input_tokens"].as_u64().unwrap_or(0), u["output_tokens"].as_u64().unwrap_or(0));
    json!({"promptTokenCount": input, "candidatesTokenCount": output, "totalTokenCount": input + output})
}

async fn completed(app: &App, ended: &Finished, req: &ImageRequest, inline: bool) -> Result<Vec<u8>, GeminiError> {
    let task = &ended.task;
    let mut result = task.result.clone().unwrap_or_else(|| json!({"data": []}));
    app.urls.refresh(&mut result).await;
    let nonce: u64 = rand::random();
    let mut images = Vec::new();
    let mut candidates = Vec::new();
    for (index, item) in result["data"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        let mime = item["content_type"].as_str().unwrap_or("image/png");
        let mut parts = Vec::new();
        // The drafts the upstream sent before this image (when it ended in this process), as
        // thought parts, as Gemini answers them.
        for p in ended.previews.iter().filter(|p| p.index as usize == index) {
            if inline {
                images.push(p.bytes.clone());
                let data = placeholder(nonce, images.len() - 1);
                parts.push(json!({"inlineData": {"mimeType": p.content_type, "data": data}, "thought": true}));
            } else {
                parts.push(json!({"fileData": {"mimeType": p.content_type, "fileUri": p.url}, "thought": true}));
            }
        }
        if let Some(text) = item["revised_prompt"].as_str() {
            parts.push(json!({"text": text}));
        }
        let mut part = if inline {
            let id = item["id"].as_str().unwrap_or_default();
            images.push(image_bytes(app, id, &ended.images).await.map_err(|e| GeminiError(e.with_task(&task.id)))?);
            json!({"inlineData": {"mimeType": mime, "data": placeholder(nonce, images.len() - 1)}})
        } else {
            json!({"fileData": {"mimeType": mime, "fileUri": item["url"]}})
        };
        // The upstream's signature, so that a chat hands it back with the image, as Gemini's
        // SDKs do with Gemini's own answers.
        if let Some(sig) = item["signature"].as_str() {
            part["thoughtSignature"] = json!(sig);
        }
        parts.push(part);
        candidates.push(json!({"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": index}));
    }
    let body = json!({
        "candidates": candidates,
        "usageMetadata": usage(&result),
        "modelVersion": req.upstream_model,
        "responseId": task.id,
    });
    let skeleton = serde_json::to_vec(&body).map_err(|e| GeminiError(ApiError::internal(&e)))?;
    if images.is_empty() {
        return Ok(skeleton);
    }
    tokio::task::spawn_blocking(move || splice_base64(&skeleton, nonce, &images))
        .await
        .map_err(|e| GeminiError(ApiError::internal(&e)))
}

/// A content refusal as Gemini reports it: a blocked prompt in `promptFeedback` (no
/// candidates), a refused image as the candidate's `finishReason`.
fn refused(error: &Value, req: &ImageRequest, task_id: &str) -> Value {
    let reason = error["reason"].as_str().unwrap_or("OTHER");
    let zero = json!({"promptTokenCount": 0, "totalTokenCount": 0});
    if error["blocked"] == "prompt" {
        return json!({
            "promptFeedback": {"blockReason": reason, "blockReasonMessage": error["message"]},
            "usageMetadata": zero,
            "modelVersion": req.upstream_model,
            "responseId": task_id,
        });
    }
    let candidate = if reason == "TEXT_ONLY" {
        json!({"content": {"role": "model", "parts": [{"text": error["message"]}]}, "finishReason": "STOP", "index": 0})
    } else {
        json!({"finishReason": reason, "finishMessage": error["message"], "index": 0})
    };
    json!({"candidates": [candidate], "usageMetadata": zero, "modelVersion": req.upstream_model, "responseId": task_id})
}
