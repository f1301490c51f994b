//! A fake Gemini API: `POST /v1beta/models/{model}:generateContent` as the Gemini REST reference
//! documents it. Pro models answer like Gemini 3 Pro Image does (a thought text, a thought draft
//! image, then the final JPEG); Flash answers one PNG. Checks what the real API checks: the
//! `x-goog-api-key` header, the model name, `imageSize` spelling, a single candidate.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::images::picture;
use crate::script::{Recorded, Reply, Script};

const PRO_MODELS: &[&str] = &["gemini-3-pro-image-preview", "gemini-3-pro-image"];
const FLASH_MODELS: &[&str] = &["gemini-2.5-flash-image", "gemini-2.5-flash-image-preview"];
const SIZES: &str = include_str!("../fixtures/gemini/pro-image-sizes.json");
/// Gemini 2.5 Flash Image output sizes (1K only), from its documentation.
const FLASH_SIZES: &[(&str, u32, u32)] = &[
    ("1:1", 1024, 1024),
    ("2:3", 832, 1248),
    ("3:2", 1248, 832),
    ("3:4", 864, 1184),
    ("4:3", 1184, 864),
    ("4:5", 896, 1152),
    ("5:4", 1152, 896),
    ("9:16", 768, 1344),
    ("16:9", 1344, 768),
    ("21:9", 1536, 672),
];

/// A running fake Gemini server.
pub struct FakeGemini {
    pub addr: SocketAddr,
    pub script: Script,
    /// The answers' final images, in call order (base64), to compare with what the gateway serves.
    pub finals: Arc<std::sync::Mutex<Vec<String>>>,
    /// The Batch API's jobs and files, and its controls.
    pub batches: crate::gemini_batch::FakeBatches,
    /// Keys this fake refuses as Google refuses a wrong or deleted key.
    invalid_keys: Arc<std::sync::Mutex<Vec<String>>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
pub(crate) struct Shared {
    script: Script,
    sizes: Arc<Value>,
    counter: Arc<AtomicU64>,
    finals: Arc<std::sync::Mutex<Vec<String>>>,
    pub(crate) invalid_keys: Arc<std::sync::Mutex<Vec<String>>>,
    pub(crate) batches: crate::gemini_batch::FakeBatches,
}

impl FakeGemini {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start() -> anyhow::Result<FakeGemini> {
        let script = Script::default();
        let finals = Arc::new(std::sync::Mutex::new(Vec::new()));
        let invalid_keys = Arc::new(std::sync::Mutex::new(Vec::new()));
        let batches = crate::gemini_batch::FakeBatches::default();
        let shared = Shared {
            batches: batches.clone(),
            invalid_keys: invalid_keys.clone(),
            script: script.clone(),
            sizes: Arc::new(serde_json::from_str::<Value>(SIZES)?["sizes"].clone()),
            counter: Arc::new(AtomicU64::new(0)),
            finals: finals.clone(),
        };
        let app = Router::new()
            .route("/v1beta/models/{model_action}", post(generate_content))
            .route("/_fake/calls", axum::routing::get(calls))
            .route("/_fake/batches", axum::routing::get(batch_counts))
            .route("/upload/v1beta/files", post(crate::gemini_batch::upload))
            .route("/download/v1beta/files/{name}", axum::routing::get(crate::gemini_batch::download))
            .route("/v1beta/batches", axum::routing::get(crate::gemini_batch::list))
            .route(
                "/v1beta/batches/{name}",
                axum::routing::get(crate::gemini_batch::batch).post(crate::gemini_batch::batch),
            )
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            crate::serve::serve(listener, app).await;
        });
        Ok(FakeGemini { addr, script, finals, batches, invalid_keys, server })
    }

    /// From now on, calls with `key` are refused as the real API refuses a wrong key: 400
    /// INVALID_ARGUMENT with `ErrorInfo.reason = "API_KEY_INVALID"` (not 401/403).
    pub fn invalidate_key(&self, key: &str) {
        if let Ok(mut k) = self.invalid_keys.lock() {
            k.push(key.to_string());
        }
    }

    /// Accepts `key` again.
    pub fn restore_key(&self, key: &str) {
        if let Ok(mut k) = self.invalid_keys.lock() {
            k.retain(|x| x != key);
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// `GET /_fake/calls`: the calls received so far, for tests that run the fake as a process.
async fn calls(State(s): State<Shared>) -> Json<Value> {
    Json(s.script.calls_json())
}

/// `GET /_fake/batches`: Batch API jobs created, cancels and polls so far.
async fn batch_counts(State(s): State<Shared>) -> Json<Value> {
    Json(json!({"creations": s.batches.creations(), "cancels": s.batches.cancels(), "polls": s.batches.polls()}))
}

impl Drop for FakeGemini {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn generate_content(
    State(s): State<Shared>,
    Path(model_action): Path<String>,
    uri: axum::http::Uri,
    version: axum::http::Version,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(model) = model_action.strip_suffix(":batchGenerateContent") {
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        return crate::gemini_batch::create(&s, model, &headers, &body).await;
    }
    let resp = generate_content_json(State(s), Path(model_action.clone()), version, headers, body).await;
    if !model_action.ends_with(":streamGenerateContent") {
        return resp;
    }
    let sse = uri.query().is_some_and(|q| q.split('&').any(|kv| kv == "alt=sse"));
    crate::gemini_stream::stream(resp, sse).await
}

async fn generate_content_json(
    State(s): State<Shared>,
    Path(model_action): Path<String>,
    version: axum::http::Version,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let guard = s.script.enter();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let api_key = headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()).map(str::to_string);
    s.script.record(Recorded {
        path: format!("/v1beta/models/{model_action}"),
        http_version: format!("{version:?}"),
        api_key: api_key.clone(),
        body: body.clone(),
    });
    let delay = s.script.delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let resp = answer(&s, &model_action, api_key.as_deref(), &body, s.script.next_reply()).await;
    guard.finish();
    resp
}

async fn answer(s: &Shared, model_action: &str, api_key: Option<&str>, body: &Value, reply: Reply) -> Response {
    match reply {
        Reply::Delay(d, then) => {
            tokio::time::sleep(d).await;
            Box::pin(answer(s, model_action, api_key, body, *then)).await
        }
        Reply::Json { status, body } => {
            (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(body)).into_response()
        }
        Reply::Raw { status, body } => (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), body).into_response(),
        Reply::Reset => {
            let broken = futures_util::stream::iter([
                Ok(bytes::Bytes::from_static(b"{\"candidates\": [")),
                Err(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by the fake")),
            ]);
            Response::new(axum::body::Body::from_stream(broken))
        }
        Reply::Success => success(s, model_action, api_key, body),
        Reply::Truncated => crate::script::truncated(success(s, model_action, api_key, body)).await,
    }
}

fn success(s: &Shared, model_action: &str, api_key: Option<&str>, body: &Value) -> Response {
    let (status, body) = success_json(s, model_action, api_key, body);
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Json(body)).into_response()
}

fn google_error_json(code: u16, status: &str, message: &str) -> (u16, Value) {
    (code, json!({"error": {"code": code, "message": message, "status": status}}))
}

/// The answer to one `generateContent` request: its status and body (also a batch line's).
pub(crate) fn success_json(s: &Shared, model_action: &str, api_key: Option<&str>, body: &Value) -> (u16, Value) {
    let Some(model) =
        model_action.strip_suffix(":generateContent").or_else(|| model_action.strip_suffix(":streamGenerateContent"))
    else {
        return google_error_json(404, "NOT_FOUND", "Method not found.");
    };
    if api_key.is_none_or(str::is_empty) {
        return google_error_json(
            403,
            "PERMISSION_DENIED",
            "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        );
    }
    let invalid = s.invalid_keys.lock().map(|k| k.iter().any(|x| Some(x.as_str()) == api_key)).unwrap_or(false);
    if invalid {
        return (400, fixture("error-400-api-key-invalid.json"));
    }
    let pro = PRO_MODELS.contains(&model);
    if !pro && !FLASH_MODELS.contains(&model) {
        return google_error_json(404, "NOT_FOUND", &format!("models/{model} is not found for API version v1beta."));
    }
    let config = &body["generationConfig"];
    if config["candidateCount"].as_u64().is_some_and(|n| n > 1) {
        return google_error_json(
            400,
            "INVALID_ARGUMENT",
            &format!("Multiple candidates is not enabled for models/{model}"),
        );
    }
    // Text anywhere in the conversation (images may come first, and earlier turns before).
    let texts: Vec<&str> = body["contents"]
        .as_array()
        .map(|c| {
            c.iter()
                .flat_map(|t| t["parts"].as_array().into_iter().flatten())
                .filter_map(|p| p["text"].as_str())
                .collect()
        })
        .unwrap_or_default();
    if texts.iter().any(|t| t.contains("[fake:block]")) {
        // A prompt the safety system blocks: 200, no candidates, promptFeedback (the fixture).
        return (200, fixture("prompt-blocked.json"));
    }
    let prompt_ok = texts.iter().any(|t| !t.is_empty());
    if !prompt_ok {
        return google_error_json(
            400,
            "INVALID_ARGUMENT",
            "* GenerateContentRequest.contents: contents is not specified",
        );
    }
    let ratio = config["imageConfig"]["aspectRatio"].as_str().unwrap_or("1:1");
    let size = config["imageConfig"]["imageSize"].as_str();
    let (w, h) = if pro {
        let size = size.unwrap_or("1K");
        match s.sizes[ratio][size].as_array() {
            Some(wh) => (wh[0].as_u64().unwrap_or(1024) as u32, wh[1].as_u64().unwrap_or(1024) as u32),
            None => {
                return google_error_json(
                    400,
                    "INVALID_ARGUMENT",
                    &format!("Invalid image config: aspectRatio {ratio:?}, imageSize {size:?}."),
                );
            }
        }
    } else {
        if size.is_some() {
            return google_error_json(400, "INVALID_ARGUMENT", "imageSize is not supported for this model.");
        }
        match FLASH_SIZES.iter().find(|(r, _, _)| *r == ratio) {
            Some((_, w, h)) => (*w, *h),
            None => {
                return google_error_json(400, "INVALID_ARGUMENT", &format!("Unsupported aspect ratio {ratio:?}."));
            }
        }
    };
    let n = s.counter.fetch_add(1, Ordering::SeqCst);
    let b64 = base64::engine::general_purpose::STANDARD;
    let final_image = b64.encode(picture(w, h, n + 1, !pro));
    if let Ok(mut f) = s.finals.lock() {
        f.push(final_image.clone());
    }
    let parts = if pro {
        // Gemini 3 Pro Image thinks in up to two draft images before its final one.
        let draft = b64.encode(picture(w / 8, h / 8, n + 1_000_000, false));
        let second = b64.encode(picture(w / 4, h / 4, n + 2_000_000, false));
        json!([
            {"text": "Composing the scene...", "thought": true},
            {"inlineData": {"mimeType": "image/jpeg", "data": draft}, "thought": true},
            {"text": "Refining the light.", "thought": true},
            {"inlineData": {"mimeType": "image/jpeg", "data": second}, "thought": true},
            {"text": "Here is the image you asked for."},
            {"inlineData": {"mimeType": "image/jpeg", "data": final_image}, "thoughtSignature": "c2lnbmF0dXJl"}
        ])
    } else {
        json!([{"inlineData": {"mimeType": "image/png", "data": final_image}}])
    };
    (
        200,
        json!({
            "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": if size == Some("4K") { 2000 } else { 1120 },
                              "thoughtsTokenCount": if pro { 300 } else { 0 }, "totalTokenCount": 1432},
            "modelVersion": model,
            "responseId": format!("fake-{n}"),
        }),
    )
}

/// A fixture from `fixtures/gemini/`, parsed.
pub fn fixture(name: &str) -> Value {
    let text = match name {
        "error-400-invalid.json" => include_str!("../fixtures/gemini/error-400-invalid.json"),
        "error-400-api-key-invalid.json" => include_str!("../fixtures/gemini/error-400-api-key-invalid.json"),
        "error-403-key.json" => include_str!("../fixtures/gemini/error-403-key.json"),
        "error-429-quota.json" => include_str!("../fixtures/gemini/error-429-quota.json"),
        "error-503-overloaded.json" => include_str!("../fixtures/gemini/error-503-overloaded.json"),
        "finish-image-safety.json" => include_str!("../fixtures/gemini/finish-image-safety.json"),
        "flash-image-png.json" => include_str!("../fixtures/gemini/flash-image-png.json"),
        "pro-image-with-thoughts.json" => {
            include_str!("../fixtures/gemini/pro-image-with-thoughts.json")
        }
        "prompt-blocked.json" => include_str!("../fixtures/gemini/prompt-blocked.json"),
        "text-only-refusal.json" => include_str!("../fixtures/gemini/text-only-refusal.json"),
        _ => "null",
    };
    serde_json::from_str(text).unwrap_or(Value::Null)
}
