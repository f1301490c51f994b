//! `:streamGenerateContent`: the drafts Gemini 3 Pro Image makes while it thinks, each as a
//! chunk with a `thought: true` image part as they arrive, then the answer; as server-sent
//! events (`?alt=sse`) or the elements of one JSON array, as Gemini streams. The task is as
//! durable as any: a client that goes away leaves it running to its end.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use super::answer;
use super::error::status_name;
use crate::api::openai::images::{Submitted, with_task_header};
use crate::api::watch::{self, Watched};
use crate::app::App;
use crate::domain::request::ImageRequest;

pub async fn respond(
    app: Arc<App>,
    owner: String,
    submitted: Submitted<'_>,
    req: ImageRequest,
    inline: bool,
    sse: bool,
) -> Response {
    let task_id = submitted.task.id.clone();
    let wait = app.rt.deadline(req.resolution()) + Duration::from_secs(60);
    let mut watched = watch::start(app.clone(), owner, submitted.task.clone(), wait).await;
    drop(submitted);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let id = task_id.clone();
    tokio::spawn(async move {
        let mut first = true;
        while let Some(w) = watched.recv().await {
            let (chunk, last) = match w {
                Watched::Status(_) => continue,
                Watched::Draft(p) => {
                    let part = if inline {
                        let data = base64_simd::STANDARD.encode_to_string(&p.bytes);
                        json!({"inlineData": {"mimeType": p.content_type, "data": data}, "thought": true})
                    } else {
                        json!({"fileData": {"mimeType": p.content_type, "fileUri": p.url}, "thought": true})
                    };
                    let event = json!({
                        "candidates": [{"content": {"role": "model", "parts": [part]}, "index": p.index}],
                        "modelVersion": req.upstream_model,
                        "responseId": id,
                    });
                    (event.to_string().into_bytes(), false)
                }
                Watched::End(mut ended) => {
                    // The drafts went out as chunks already; the answer does not repeat them.
                    ended.previews.clear();
                    match answer::render(&app, &ended, &req, inline).await {
                        Ok(body) => (body, true),
                        Err(e) => (error_chunk(e.0.status, &e.0.message), true),
                    }
                }
                Watched::TimedOut(id) => (
                    error_chunk(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!("The image is still being generated. It will be kept: GET /v1/tasks/{id}."),
                    ),
                    true,
                ),
            };
            let framed = frame(&chunk, sse, first, last);
            first = false;
            if tx.send(Ok(Bytes::from(framed))).await.is_err() {
                return; // the client went away; the task runs on
            }
            if last {
                return;
            }
        }
    });
    let body = axum::body::Body::from_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|c| (c, rx))
    }));
    let content_type = if sse { "text/event-stream" } else { "application/json" };
    with_task_header(([(header::CONTENT_TYPE, content_type)], body).into_response(), &task_id)
}

fn error_chunk(status: StatusCode, message: &str) -> Vec<u8> {
    json!({"error": {"code": status.as_u16(), "message": message, "status": status_name(status)}})
        .to_string()
        .into_bytes()
}

/// One chunk as an SSE event, or as an element of the JSON array.
fn frame(chunk: &[u8], sse: bool, first: bool, last: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(chunk.len() + 10);
    if sse {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n\r\n");
    } else {
        out.extend_from_slice(if first { b"[" } else { b"," });
        out.extend_from_slice(chunk);
        if last {
            out.push(b']');
        }
    }
    out
}
