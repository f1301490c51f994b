//! Gemini's Batch API and the Files API under it, as the Gemini REST reference and the
//! google-genai SDK use them:
//! - `POST /upload/v1beta/files` (`X-Goog-Upload-Protocol: resumable`, command `start`): the
//!   upload URL in `x-goog-upload-url`; `POST` to it with `upload, finalize`: the file
//!   (`{"file": {"name": "files/…"}}`, `x-goog-upload-status: final`).
//! - `POST /v1beta/models/{model}:batchGenerateContent` with
//!   `{"batch": {"displayName", "inputConfig": {"fileName"}}}`: an operation named `batches/…`
//!   whose `metadata` is the batch (`state`: `BATCH_STATE_PENDING`, `…_RUNNING`,
//!   `…_SUCCEEDED`, `…_FAILED`, `…_CANCELLED`, `…_EXPIRED`; `output.responsesFile` when done).
//! - `GET /v1beta/batches/{id}`, `GET /v1beta/batches` (`operations`), `POST …:cancel`.
//! - `GET /download/v1beta/files/{id}:download?alt=media`: the responses file, one JSON line
//!   per request: `{"key", "response": GenerateContentResponse}` or `{"key", "error": Status}`.
//!
//! Input lines are `{"key", "request": GenerateContentRequest}`; each is answered as
//! `generateContent` would answer it (so `[fake:block]` and bad sizes fail their line only).
//! A job runs for `run_for` (a third pending, the rest running) and then ends as set.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::gemini::{Shared, success_json};

/// How a job ends once its time has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    Expired,
}

#[derive(Debug, Clone)]
struct Job {
    id: String,
    model: String,
    display_name: String,
    created: Instant,
    created_at: String,
    run_for: Duration,
    outcome: Outcome,
    cancelled: bool,
    requests: Vec<(String, Value)>,
    output_file: Option<String>,
    api_key: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    files: Mutex<HashMap<String, Vec<u8>>>,
    uploads: Mutex<HashMap<String, u64>>,
    jobs: Mutex<Vec<Job>>,
    run_for: Mutex<Option<Duration>>,
    create_delay: Mutex<Duration>,
    outcome: Mutex<Option<Outcome>>,
    job_state_names: Mutex<bool>,
    creations: AtomicUsize,
    cancels: AtomicUsize,
    polls: AtomicUsize,
    counter: AtomicUsize,
}

/// The fake's batch state and its controls.
#[derive(Debug, Default, Clone)]
pub struct FakeBatches {
    inner: Arc<Inner>,
}

impl FakeBatches {
    /// How long jobs created from now on take (default 300 ms).
    pub fn set_run_for(&self, d: Duration) {
        if let Ok(mut r) = self.inner.run_for.lock() {
            *r = Some(d);
        }
    }

    /// Holds each creation's answer this long after the job exists (a gateway killed in
    /// between has created a job it never heard of).
    pub fn set_create_delay(&self, d: Duration) {
        if let Ok(mut r) = self.inner.create_delay.lock() {
            *r = d;
        }
    }

    /// How jobs created from now on end (default: succeeded).
    pub fn set_outcome(&self, o: Outcome) {
        if let Ok(mut r) = self.inner.outcome.lock() {
            *r = Some(o);
        }
    }

    /// Name states `JOB_STATE_*` (as some API versions do) instead of `BATCH_STATE_*`.
    pub fn use_job_state_names(&self, on: bool) {
        if let Ok(mut r) = self.inner.job_state_names.lock() {
            *r = on;
        }
    }

    /// Jobs created so far.
    pub fn creations(&self) -> usize {
        self.inner.creations.load(Ordering::SeqCst)
    }

    /// Cancels received so far.
    pub fn cancels(&self) -> usize {
        self.inner.cancels.load(Ordering::SeqCst)
    }

    /// Gets of a job so far.
    pub fn polls(&self) -> usize {
        self.inner.polls.load(Ordering::SeqCst)
    }

    /// Each job's request keys, in creation order.
    pub fn job_keys(&self) -> Vec<Vec<String>> {
        self.inner
            .jobs
            .lock()
            .map(|j| j.iter().map(|j| j.requests.iter().map(|(k, _)| k.clone()).collect()).collect())
            .unwrap_or_default()
    }

    /// Each job's requests (`GenerateContentRequest`s), in creation order.
    pub fn job_requests(&self) -> Vec<Vec<Value>> {
        self.inner
            .jobs
            .lock()
            .map(|j| j.iter().map(|j| j.requests.iter().map(|(_, r)| r.clone()).collect()).collect())
            .unwrap_or_default()
    }

    fn next_id(&self) -> String {
        format!("fake{:06}", self.inner.counter.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

fn error(code: u16, status: &str, message: &str) -> Response {
    let http = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (http, Json(json!({"error": {"code": code, "message": message, "status": status}}))).into_response()
}

fn api_key(headers: &HeaderMap) -> Option<String> {
    headers.get("x-goog-api-key").and_then(|v| v.to_str().ok()).map(str::to_string).filter(|k| !k.is_empty())
}

/// The time now as RFC 3339 (UTC), as Google's timestamps are written.
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem / 60 % 60, rem % 60)
}

/// `POST /upload/v1beta/files`: starts a resumable upload, or (with `upload_id`) takes its bytes.
pub(crate) async fn upload(
    State(s): State<Shared>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let b = &s.batches;
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    match q.get("upload_id") {
        None => {
            let Some(key) = api_key(&headers) else {
                return error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.");
            };
            if s.invalid_keys.lock().is_ok_and(|k| k.contains(&key)) {
                let body = crate::gemini::fixture("error-400-api-key-invalid.json");
                return (StatusCode::BAD_REQUEST, Json(body)).into_response();
            }
            if header("x-goog-upload-protocol") != "resumable" || header("x-goog-upload-command") != "start" {
                return error(400, "INVALID_ARGUMENT", "Expected a resumable upload start.");
            }
            let Ok(length) = header("x-goog-upload-header-content-length").parse::<u64>() else {
                return error(400, "INVALID_ARGUMENT", "X-Goog-Upload-Header-Content-Length is required.");
            };
            let id = b.next_id();
            if let Ok(mut u) = b.inner.uploads.lock() {
                u.insert(id.clone(), length);
            }
            let host = header("host");
            let mut resp = Json(json!({})).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!(
                "http://{host}/upload/v1beta/files?upload_id={id}&upload_protocol=resumable"
            )) {
                resp.headers_mut().insert("x-goog-upload-url", v);
            }
            resp.headers_mut().insert("x-goog-upload-status", HeaderValue::from_static("active"));
            resp
        }
        Some(id) => {
            let declared = b.inner.uploads.lock().ok().and_then(|mut u| u.remove(id));
            let Some(declared) = declared else {
                return error(404, "NOT_FOUND", "No such upload.");
            };
            if !header("x-goog-upload-command").contains("finalize") || header("x-goog-upload-offset") != "0" {
                return error(400, "INVALID_ARGUMENT", "Expected the whole file at offset 0 with upload, finalize.");
            }
            if body.len() as u64 != declared {
                return error(400, "INVALID_ARGUMENT", "The upload's length differs from the declared one.");
            }
            let name = format!("files/{id}");
            let size = body.len();
            if let Ok(mut f) = b.inner.files.lock() {
                f.insert(name.clone(), body.to_vec());
            }
            let mut resp = Json(json!({"file": {
                "name": name, "mimeType": "application/jsonl", "sizeBytes": size.to_string(),
                "createTime": now_rfc3339(), "state": "ACTIVE", "source": "UPLOADED",
            }}))
            .into_response();
            resp.headers_mut().insert("x-goog-upload-status", HeaderValue::from_static("final"));
            resp
        }
    }
}

/// `GET /download/v1beta/files/{id}:download?alt=media`.
pub(crate) async fn download(State(s): State<Shared>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if api_key(&headers).is_none() {
        return error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.");
    }
    let Some(id) = name.strip_suffix(":download") else {
        return error(404, "NOT_FOUND", "Method not found.");
    };
    let found = s.batches.inner.files.lock().ok().and_then(|f| f.get(&format!("files/{id}")).cloned());
    match found {
        Some(bytes) => ([(axum::http::header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        None => error(404, "NOT_FOUND", "File not found."),
    }
}

/// `POST /v1beta/models/{model}:batchGenerateContent` (routed here by the model route).
pub(crate) async fn create(s: &Shared, model: &str, headers: &HeaderMap, body: &Value) -> Response {
    let b = &s.batches;
    let Some(key) = api_key(headers) else {
        return error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.");
    };
    let batch = &body["batch"];
    let Some(file) = batch["inputConfig"]["fileName"].as_str() else {
        return error(400, "INVALID_ARGUMENT", "batch.inputConfig.fileName is required.");
    };
    let Some(display_name) = batch["displayName"].as_str() else {
        return error(400, "INVALID_ARGUMENT", "batch.displayName is required.");
    };
    let Some(bytes) = b.inner.files.lock().ok().and_then(|f| f.get(file).cloned()) else {
        return error(404, "NOT_FOUND", &format!("{file} is not found."));
    };
    let mut requests = Vec::new();
    for (i, line) in bytes.split(|c| *c == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return error(400, "INVALID_ARGUMENT", &format!("Line {} of the input file is not JSON.", i + 1));
        };
        let (Some(key), true) = (v["key"].as_str(), v["request"].is_object()) else {
            return error(400, "INVALID_ARGUMENT", &format!("Line {} needs a key and a request.", i + 1));
        };
        requests.push((key.to_string(), v["request"].clone()));
    }
    let job = Job {
        id: b.next_id(),
        model: model.to_string(),
        display_name: display_name.to_string(),
        created: Instant::now(),
        created_at: now_rfc3339(),
        run_for: b.inner.run_for.lock().ok().and_then(|r| *r).unwrap_or(Duration::from_millis(300)),
        outcome: b.inner.outcome.lock().ok().and_then(|o| *o).unwrap_or(Outcome::Succeeded),
        cancelled: false,
        requests,
        output_file: None,
        api_key: Some(key),
    };
    b.inner.creations.fetch_add(1, Ordering::SeqCst);
    let op = operation(s, &job, "PENDING", false);
    if let Ok(mut j) = b.inner.jobs.lock() {
        j.push(job);
    }
    let delay = b.inner.create_delay.lock().map(|d| *d).unwrap_or_default();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    Json(op).into_response()
}

fn state_name(s: &Shared, state: &str) -> String {
    let job_names = s.batches.inner.job_state_names.lock().map(|j| *j).unwrap_or(false);
    if job_names { format!("JOB_STATE_{state}") } else { format!("BATCH_STATE_{state}") }
}

fn operation(s: &Shared, job: &Job, state: &str, done: bool) -> Value {
    let name = format!("batches/{}", job.id);
    let mut metadata = json!({
        "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
        "name": name,
        "model": format!("models/{}", job.model),
        "displayName": job.display_name,
        "createTime": job.created_at,
        "updateTime": now_rfc3339(),
        "batchStats": {"requestCount": job.requests.len().to_string()},
        "state": state_name(s, state),
    });
    let mut op = json!({"name": name, "metadata": metadata.clone(), "done": done});
    if let Some(file) = &job.output_file {
        metadata["output"] = json!({"responsesFile": file});
        metadata["endTime"] = json!(now_rfc3339());
        op["metadata"] = metadata;
        op["response"] = json!({
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput",
            "responsesFile": file,
        });
    }
    if state == "FAILED" {
        op["error"] = json!({"code": 13, "message": "The batch failed: internal error."});
    }
    op
}

/// A job's state now; a job that has just succeeded gets its responses file.
fn advance(s: &Shared, job: &mut Job) -> (&'static str, bool) {
    if job.cancelled {
        return ("CANCELLED", true);
    }
    let elapsed = job.created.elapsed();
    if elapsed < job.run_for / 3 {
        return ("PENDING", false);
    }
    if elapsed < job.run_for {
        return ("RUNNING", false);
    }
    match job.outcome {
        Outcome::Failed => ("FAILED", true),
        Outcome::Expired => ("EXPIRED", true),
        Outcome::Succeeded => {
            if job.output_file.is_none() {
                let mut out = Vec::new();
                for (key, request) in &job.requests {
                    let action = format!("{}:generateContent", job.model);
                    let (status, body) = success_json(s, &action, job.api_key.as_deref(), request);
                    let line = if status == 200 {
                        json!({"key": key, "response": body})
                    } else {
                        json!({"key": key, "error": {"code": status, "message": body["error"]["message"],
                                                     "status": body["error"]["status"]}})
                    };
                    out.extend_from_slice(line.to_string().as_bytes());
                    out.push(b'\n');
                }
                let name = format!("files/{}-responses", job.id);
                if let Ok(mut f) = s.batches.inner.files.lock() {
                    f.insert(name.clone(), out);
                }
                job.output_file = Some(name);
            }
            ("SUCCEEDED", true)
        }
    }
}

/// `GET /v1beta/batches/{id}`, `POST /v1beta/batches/{id}:cancel`.
pub(crate) async fn batch(
    State(s): State<Shared>,
    Path(name): Path<String>,
    method: axum::http::Method,
    headers: HeaderMap,
) -> Response {
    if api_key(&headers).is_none() {
        return error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.");
    }
    let (id, cancel) = match name.strip_suffix(":cancel") {
        Some(id) => (id.to_string(), true),
        None => (name.clone(), false),
    };
    if cancel != (method == axum::http::Method::POST) {
        return error(404, "NOT_FOUND", "Method not found.");
    }
    let Ok(mut jobs) = s.batches.inner.jobs.lock() else {
        return error(500, "INTERNAL", "lock");
    };
    let Some(job) = jobs.iter_mut().find(|j| j.id == id) else {
        return error(404, "NOT_FOUND", &format!("batches/{id} is not found."));
    };
    if cancel {
        s.batches.inner.cancels.fetch_add(1, Ordering::SeqCst);
        let (_, done) = advance(&s, job);
        if !done {
            job.cancelled = true;
        }
        return Json(json!({})).into_response();
    }
    s.batches.inner.polls.fetch_add(1, Ordering::SeqCst);
    let (state, done) = advance(&s, job);
    let job = job.clone();
    drop(jobs);
    Json(operation(&s, &job, state, done)).into_response()
}

/// `GET /v1beta/batches`: every job, newest first, as operations.
pub(crate) async fn list(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if api_key(&headers).is_none() {
        return error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers.");
    }
    let Ok(mut jobs) = s.batches.inner.jobs.lock() else {
        return error(500, "INTERNAL", "lock");
    };
    let mut ops = Vec::new();
    for job in jobs.iter_mut().rev() {
        let (state, done) = advance(&s, job);
        ops.push(operation(&s, job, state, done));
    }
    Json(json!({"operations": ops})).into_response()
}
