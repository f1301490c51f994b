//! `stream: true` on generations, as OpenAI streams images: server-sent events
//! `image_generation.partial_image` (a draft, base64, for up to `partial_images` drafts) as the
//! model makes them, then `image_generation.completed` with the image, or an `error` event.
//! The task is as durable as any: a client that goes away leaves it running to its end.

use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use super::images::{Submitted, with_task_header};
use crate::api::error::ApiError;
use crate::api::watch::Watched;
use crate::app::App;
use crate::domain::now_secs;
use crate::domain::request::ImageRequest;
use crate::domain::task::TaskStatus;
use crate::worker::Finished;

pub async fn respond(
    app: Arc<App>,
    owner: String,
    submitted: Submitted<'_>,
    req: ImageRequest,
) -> Result<Response, ApiError> {
    let task_id = submitted.task.id.clone();
    let wait = app.rt.deadline(req.resolution()) + Duration::from_secs(60);
    let mut watched = crate::api::watch::start(app.clone(), owner, submitted.task.clone(), wait).await;
    drop(submitted);
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(8);
    tokio::spawn(async move {
        let wanted = req.partial_images.unwrap_or(0) as usize;
        let mut sent = 0usize;
        while let Some(w) = watched.recv().await {
            let event = match w {
                Watched::Draft(p) if p.index == 0 && sent < wanted => {
                    let mut data = common(&req, format_of(&p.content_type));
                    data["type"] = json!("image_generation.partial_image");
                    data["partial_image_index"] = json!(sent);
                    data["b64_json"] = json!(base64_simd::STANDARD.encode_to_string(&p.bytes));
                    sent += 1;
                    Event::default().event("image_generation.partial_image").data(data.to_string())
                }
                Watched::Draft(_) | Watched::Status(_) => continue,
                Watched::End(ended) => final_event(&app, &ended, &req).await,
                Watched::TimedOut(id) => {
                    let err = json!({"error": {"type": "server_error", "code": "still_running",
                        "message": format!("The image is still being generated. It will be kept: GET /v1/tasks/{id}.")}});
                    Event::default().event("error").data(err.to_string())
                }
            };
            if tx.send(event).await.is_err() {
                return; // the client went away; the task runs on
            }
        }
    });
    let stream =
        futures_util::stream::unfold(
            rx,
            |mut rx| async move { rx.recv().await.map(|e| (Ok::<Event, Infallible>(e), rx)) },
        );
    let sse = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    Ok(with_task_header(sse.into_response(), &task_id))
}

fn common(req: &ImageRequest, output_format: &str) -> Value {
    let (w, h) = req.shape().pixels();
    json!({
        "created_at": now_secs(),
        "background": req.background.as_deref().unwrap_or("auto"),
        "quality": req.quality.as_deref().unwrap_or("auto"),
        "size": format!("{w}x{h}"),
        "output_format": output_format,
    })
}

fn format_of(mime: &str) -> &str {
    mime.strip_prefix("image/").unwrap_or("png")
}

async fn final_event(app: &App, ended: &Finished, req: &ImageRequest) -> Event {
    let task = &ended.task;
    let error = |e: ApiError| {
        let body = json!({"error": {"type": e.kind, "code": e.code, "message": e.message, "param": e.param}});
        Event::default().event("error").data(body.to_string())
    };
    match task.status {
        TaskStatus::Completed => {
            let result = task.result.clone().unwrap_or(Value::Null);
            let item = &result["data"][0];
            let id = item["id"].as_str().unwrap_or_default();
            let bytes = match super::images::image_bytes(app, id, &ended.images).await {
                Ok(b) => b,
                Err(e) => return error(e),
            };
            let mut data = common(req, format_of(item["content_type"].as_str().unwrap_or("image/png")));
            data["type"] = json!("image_generation.completed");
            data["b64_json"] = json!(base64_simd::STANDARD.encode_to_string(&bytes));
            let u = &result["usage"];
            data["usage"] = json!({
                "input_tokens": u["input_tokens"], "output_tokens": u["output_tokens"], "total_tokens": u["total_tokens"],
                "input_tokens_details": {"text_tokens": u["input_tokens"], "image_tokens": 0},
            });
            Event::default().event("image_generation.completed").data(data.to_string())
        }
        TaskStatus::Failed => error(ApiError::from_task_error(task.error.as_ref().unwrap_or(&Value::Null))),
        TaskStatus::Cancelled => {
            error(ApiError::new(axum::http::StatusCode::CONFLICT, "task_cancelled", "The task was cancelled."))
        }
        TaskStatus::Queued | TaskStatus::Running => error(ApiError::new(
            axum::http::StatusCode::GATEWAY_TIMEOUT,
            "still_running",
            "The image is still being generated.",
        )),
    }
}
