//! `:streamGenerateContent` as Gemini streams it: the answer's parts one event at a time (thought
//! drafts first, the final image last with `finishReason` and `usageMetadata`), as server-sent
//! events (`?alt=sse`: `data: {GenerateContentResponse}` per event) or a JSON array. Error answers
//! come as they would without streaming: a status and one JSON error.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::time::Duration;

/// How long apart the events go: drafts arrive while the model is still thinking.
pub const EVENT_GAP: Duration = Duration::from_millis(10);

/// Turns a whole answer into its stream.
pub async fn stream(full: Response, sse: bool) -> Response {
    let (parts, body) = full.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    if parts.status != StatusCode::OK {
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    }
    let Ok(answer) = serde_json::from_slice::<Value>(&bytes) else {
        // Not JSON (a scripted raw or cut-off answer): sent as it is, cut short.
        return Response::from_parts(parts, axum::body::Body::from(bytes));
    };
    let events = split(&answer);
    let frames: Vec<Vec<u8>> = if sse {
        events.iter().map(|e| format!("data: {e}\r\n\r\n").into_bytes()).collect()
    } else {
        let n = events.len();
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let open = if i == 0 { "[" } else { "" };
                let close = if i + 1 == n { "]" } else { ",\r\n" };
                format!("{open}{e}{close}").into_bytes()
            })
            .collect()
    };
    let stream = futures_util::stream::unfold(frames.into_iter().enumerate(), |mut it| async move {
        let (i, frame) = it.next()?;
        if i > 0 {
            tokio::time::sleep(EVENT_GAP).await;
        }
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(frame)), it))
    });
    let content_type = if sse { "text/event-stream" } else { "application/json" };
    ([(header::CONTENT_TYPE, content_type)], axum::body::Body::from_stream(stream)).into_response()
}

/// One event per part of the first candidate; the last carries `finishReason` and the usage.
/// An answer without candidates (a blocked prompt) is one event.
fn split(answer: &Value) -> Vec<Value> {
    let Some(candidate) = answer["candidates"].get(0) else { return vec![answer.clone()] };
    let parts = candidate["content"]["parts"].as_array().cloned().unwrap_or_default();
    if parts.is_empty() {
        return vec![answer.clone()];
    }
    let n = parts.len();
    parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            let mut c = json!({"content": {"role": "model", "parts": [part]}, "index": 0});
            let mut e = json!({"modelVersion": answer["modelVersion"], "responseId": answer["responseId"]});
            if i + 1 == n {
                c["finishReason"] = candidate["finishReason"].clone();
                e["usageMetadata"] = answer["usageMetadata"].clone();
            }
            e["candidates"] = json!([c]);
            e
        })
        .collect()
}
