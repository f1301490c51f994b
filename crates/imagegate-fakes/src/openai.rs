//! A fake OpenAI images API: `POST /v1/images/generations` as OpenAI's API reference documents it
//! (Bearer auth, `model`, `prompt`, `n`, `size` among 1024x1024 / 1536x1024 / 1024x1536 / auto),
//! answering `b64_json` (gpt-image-1's only form) or, in url mode, a `url` this fake serves.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::images::picture;
use crate::script::{Recorded, Reply, Script};

const SIZES: &[(&str, u32, u32)] =
    &[("auto", 1024, 1024), ("1024x1024", 1024, 1024), ("1536x1024", 1536, 1024), ("1024x1536", 1024, 1536)];

pub struct FakeOpenAi {
    pub addr: SocketAddr,
    pub script: Script,
    url_mode: Arc<AtomicBool>,
    /// Bytes of every image answered, in call order.
    pub images: Arc<Mutex<Vec<Vec<u8>>>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Shared {
    script: Script,
    url_mode: Arc<AtomicBool>,
    counter: Arc<AtomicU64>,
    images: Arc<Mutex<Vec<Vec<u8>>>>,
    files: Arc<Mutex<HashMap<u64, Vec<u8>>>>,
    base: String,
}

impl FakeOpenAi {
    pub async fn start() -> anyhow::Result<FakeOpenAi> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let script = Script::default();
        let url_mode = Arc::new(AtomicBool::new(false));
        let images = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            script: script.clone(),
            url_mode: url_mode.clone(),
            counter: Arc::new(AtomicU64::new(0)),
            images: images.clone(),
            files: Arc::new(Mutex::new(HashMap::new())),
            base: format!("http://{addr}"),
        };
        let app = Router::new()
            .route("/v1/images/generations", post(generate))
            .route("/v1/images/edits", post(edit))
            .route("/files/{name}", get(file))
            .with_state(shared);
        let server = tokio::spawn(async move {
            crate::serve::serve(listener, app).await;
        });
        Ok(FakeOpenAi { addr, script, url_mode, images, server })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answer with `url` instead of `b64_json`.
    pub fn answer_with_urls(&self, on: bool) {
        self.url_mode.store(on, Ordering::SeqCst);
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn openai_error(status: u16, kind: &str, code: &str, message: &str, param: Option<&str>) -> Response {
    let http = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (http, Json(json!({"error": {"message": message, "type": kind, "param": param, "code": code}}))).into_response()
}

async fn generate(
    State(s): State<Shared>,
    version: axum::http::Version,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    answer(s, version, headers, body, "/v1/images/generations").await
}

/// `POST /v1/images/edits`: multipart `image` / `image[]` files (up to 16), optional `mask`
/// (a PNG of the first image's size), and the generation's text fields. Recorded as JSON: the
/// text fields, and `image` / `mask` as `{filename, content_type, data}` (data in base64).
async fn edit(
    State(s): State<Shared>,
    version: axum::http::Version,
    headers: HeaderMap,
    mut form: axum::extract::Multipart,
) -> Response {
    let mut body = serde_json::Map::new();
    let mut images = Vec::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                return openai_error(400, "invalid_request_error", "invalid_multipart", &e.to_string(), None);
            }
        };
        let name = field.name().unwrap_or("").to_string();
        let file = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(str::to_string);
        let Ok(data) = field.bytes().await else {
            return openai_error(400, "invalid_request_error", "invalid_multipart", "unreadable field", None);
        };
        match (name.as_str(), file) {
            ("image" | "image[]" | "mask", Some(filename)) => {
                let item = json!({
                    "filename": filename,
                    "content_type": content_type,
                    "data": base64::engine::general_purpose::STANDARD.encode(&data),
                });
                if name == "mask" {
                    body.insert("mask".into(), item);
                } else {
                    images.push(item);
                }
            }
            (_, None) => {
                body.insert(name, Value::String(String::from_utf8_lossy(&data).into_owned()));
            }
            (_, Some(_)) => {
                return openai_error(
                    400,
                    "invalid_request_error",
                    "unknown_parameter",
                    &format!("Unexpected file '{name}'."),
                    Some(&name),
                );
            }
        }
    }
    if images.is_empty() || images.len() > 16 {
        return openai_error(400, "invalid_request_error", "invalid_value", "Give 1 to 16 images.", Some("image"));
    }
    body.insert("image".into(), Value::Array(images));
    answer(s, version, headers, Value::Object(body), "/v1/images/edits").await
}

async fn answer(s: Shared, version: axum::http::Version, headers: HeaderMap, body: Value, path: &str) -> Response {
    let guard = s.script.enter();
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_string);
    s.script.record(Recorded {
        path: path.into(),
        http_version: format!("{version:?}"),
        api_key: auth.as_ref().and_then(|a| a.strip_prefix("Bearer ").map(str::to_string)),
        body: body.clone(),
    });
    let delay = s.script.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let resp = match s.script.next_reply() {
        Reply::Json { status, body } => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(body)).into_response()
        }
        Reply::Raw { status, body } => (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response(),
        Reply::Delay(d, _) => {
            tokio::time::sleep(d).await;
            success(&s, auth.as_deref(), &body)
        }
        Reply::Reset => {
            let broken = futures_util::stream::iter([
                Ok(bytes::Bytes::from_static(b"{\"data\": [")),
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by the fake")),
            ]);
            Response::new(axum::body::Body::from_stream(broken))
        }
        Reply::Success => success(&s, auth.as_deref(), &body),
        Reply::Truncated => crate::script::truncated(success(&s, auth.as_deref(), &body)).await,
    };
    guard.finish();
    resp
}

fn success(s: &Shared, auth: Option<&str>, body: &Value) -> Response {
    if auth.is_none_or(|a| !a.starts_with("Bearer ") || a.len() < 10) {
        return openai_error(401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided.", None);
    }
    let size = body["size"].as_str().unwrap_or("auto");
    let Some((_, w, h)) = SIZES.iter().find(|(s, _, _)| *s == size) else {
        let msg = format!(
            "Invalid value: '{size}'. Supported values are: '1024x1024', '1024x1536', '1536x1024', and 'auto'."
        );
        return openai_error(400, "invalid_request_error", "invalid_value", &msg, Some("size"));
    };
    if body["prompt"].as_str().is_none_or(str::is_empty) {
        return openai_error(
            400,
            "invalid_request_error",
            "missing_required_parameter",
            "Missing prompt.",
            Some("prompt"),
        );
    }
    let n = s.counter.fetch_add(1, Ordering::SeqCst);
    let png = picture(*w, *h, n + 77, true);
    if let Ok(mut i) = s.images.lock() {
        i.push(png.clone());
    }
    let item = if s.url_mode.load(Ordering::SeqCst) {
        if let Ok(mut f) = s.files.lock() {
            f.insert(n, png);
        }
        json!({"url": format!("{}/files/{n}.png", s.base), "revised_prompt": body["prompt"]})
    } else {
        json!({"b64_json": base64::engine::general_purpose::STANDARD.encode(&png), "revised_prompt": body["prompt"]})
    };
    Json(json!({
        "created": 1764100000,
        "data": [item],
        "usage": {"total_tokens": 4176, "input_tokens": 16, "output_tokens": 4160,
                  "input_tokens_details": {"text_tokens": 16, "image_tokens": 0}},
    }))
    .into_response()
}

async fn file(State(s): State<Shared>, Path(name): Path<String>) -> Response {
    let n: Option<u64> = name.strip_suffix(".png").and_then(|n| n.parse().ok());
    match n.and_then(|n| s.files.lock().ok().and_then(|f| f.get(&n).cloned())) {
        Some(bytes) => ([("content-type", "image/png")], bytes).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
