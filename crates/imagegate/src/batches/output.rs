//! The output and error files of a batch that has ended, as OpenAI writes them: one JSONL line
//! per input line, the output file for lines that succeeded (`response.body` is the sync
//! answer, with image URLs, or `b64_json` when the line asked for it), the error file for the
//! others (a refused body, a failed task, a line cancelled or expired). Written from the store
//! a page at a time and streamed into the blob store: never held whole.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::collections::VecDeque;

use super::BatchError;
use crate::api::error::ApiError;
use crate::app::App;
use crate::domain::now_secs;
use crate::domain::task::TaskStatus;
use crate::store::{BatchLineRecord, BatchRecord, FileRecord};

/// Which of the two files.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Output,
    Errors,
}

/// Lines read from the store at a time.
const PAGE: u32 = 200;
/// Bytes gathered before they are handed to the blob store.
const CHUNK: usize = 256 * 1024;

/// The ids of the files written (none when no line belongs in one).
pub(super) struct Written {
    pub output: Option<String>,
    pub errors: Option<String>,
}

/// Writes the batch's output and error files. Their ids follow from the batch's, so a driver
/// that runs this again after a crash finds a file already recorded instead of writing another.
pub(super) async fn write_files(
    app: &App,
    b: &BatchRecord,
    completed: i64,
    failed: i64,
) -> Result<Written, BatchError> {
    let output = if completed > 0 { Some(write(app, b, Kind::Output).await?) } else { None };
    let errors = if failed > 0 { Some(write(app, b, Kind::Errors).await?) } else { None };
    Ok(Written { output, errors })
}

async fn write(app: &App, b: &BatchRecord, kind: Kind) -> Result<String, BatchError> {
    let suffix = match kind {
        Kind::Output => "OUT",
        Kind::Errors => "ERR",
    };
    let ulid = b.id.trim_start_matches("batch_");
    let id = format!("file-{ulid}{suffix}");
    if app.store.get_file(&b.owner, &id).await?.is_some() {
        return Ok(id);
    }
    let blob_key = format!("files_{ulid}{suffix}");
    let state = Pages { after: 0, queue: VecDeque::new(), exhausted: false };
    let chunks = futures_util::stream::try_unfold(state, move |mut st| async move {
        let mut buf = Vec::new();
        loop {
            if st.queue.is_empty() && !st.exhausted {
                let page = app.store.batch_lines(&b.id, st.after, PAGE).await.map_err(std::io::Error::other)?;
                st.exhausted = page.len() < PAGE as usize;
                if let Some(last) = page.last() {
                    st.after = last.line;
                }
                st.queue.extend(page);
            }
            let Some(line) = st.queue.pop_front() else { break };
            if let Some(text) = render(app, b, &line, kind).await {
                buf.extend_from_slice(text.as_bytes());
                buf.push(b'\n');
            }
            if buf.len() >= CHUNK {
                break;
            }
        }
        Ok::<_, std::io::Error>(if buf.is_empty() { None } else { Some((Bytes::from(buf), st)) })
    });
    let bytes = app.blobs.put_stream(&blob_key, Box::pin(chunks), "application/jsonl").await?;
    let filename = match kind {
        Kind::Output => format!("{}_output.jsonl", b.id),
        Kind::Errors => format!("{}_error.jsonl", b.id),
    };
    // Kept as long as the key keeps its images (the URLs in it stop working then anyway).
    let retention = match app.store.get_key(&b.owner).await? {
        Some(k) => app.rt.retention_for(&k.policy),
        None => app.rt.retention,
    };
    let record = FileRecord {
        id: id.clone(),
        owner: b.owner.clone(),
        purpose: "batch_output".to_string(),
        filename,
        bytes: bytes as i64,
        blob_key,
        created_at: now_secs(),
        expires_at: Some(now_secs() + retention.as_secs() as i64),
    };
    app.store.create_file(&record).await?;
    Ok(id)
}

struct Pages {
    after: i64,
    queue: VecDeque<BatchLineRecord>,
    exhausted: bool,
}

/// A line's JSONL text in the file `kind`, or `None` when it belongs in the other file.
async fn render(app: &App, b: &BatchRecord, line: &BatchLineRecord, kind: Kind) -> Option<String> {
    let ok = line.task.as_ref().is_some_and(|t| t.status == TaskStatus::Completed);
    match kind {
        Kind::Output if ok => success(app, b, line).await,
        Kind::Errors if !ok => Some(failure(b, line)),
        _ => None,
    }
}

fn request_id(b: &BatchRecord, line: &BatchLineRecord) -> String {
    match &line.task {
        Some(t) => format!("batch_req_{}", t.id.trim_start_matches("task_")),
        None => format!("batch_req_{}_{}", b.id.trim_start_matches("batch_"), line.line),
    }
}

async fn success(app: &App, b: &BatchRecord, line: &BatchLineRecord) -> Option<String> {
    let task = line.task.as_ref()?;
    let mut result = task.result.clone().unwrap_or_else(|| json!({"data": []}));
    let wants_b64 = task.request.get("response_format").and_then(Value::as_str) == Some("b64_json");
    let body = if wants_b64 {
        // An image gone from storage (its retention passed) leaves its URL in the answer.
        crate::api::openai::images::inline_images(app, &mut result.clone(), &[]).await.ok()
    } else {
        None
    };
    let body = match body {
        Some(b) => String::from_utf8(b).ok()?,
        None => {
            app.urls.refresh(&mut result).await;
            result.to_string()
        }
    };
    let body = RawValue::from_string(body).ok()?;
    let out = json!({
        "id": request_id(b, line),
        "custom_id": line.custom_id,
        "response": {"status_code": 200, "request_id": task.id, "body": body},
        "error": null,
    });
    Some(out.to_string())
}

fn failure(b: &BatchRecord, line: &BatchLineRecord) -> String {
    let id = request_id(b, line);
    let refused = |e: &Value, request_id: Option<&str>| {
        let mut err = ApiError::from_task_error(e);
        err.param = e["param"].as_str().map(str::to_string);
        json!({
            "id": id,
            "custom_id": line.custom_id,
            "response": {"status_code": err.status.as_u16(), "request_id": request_id, "body": err.body()},
            "error": {"code": err.code, "message": err.message},
        })
    };
    let out = match (&line.task, &line.error) {
        (None, Some(e)) => refused(e, None),
        (Some(t), _) if t.status == TaskStatus::Failed => {
            refused(t.error.as_ref().unwrap_or(&Value::Null), Some(&t.id))
        }
        _ => {
            let (code, message) = if b.expired_at.is_some() {
                ("batch_expired", "This line was not run before the batch's completion window closed.")
            } else {
                ("batch_cancelled", "This line was not run: the batch was cancelled.")
            };
            json!({"id": id, "custom_id": line.custom_id, "response": null,
                   "error": {"code": code, "message": message}})
        }
    };
    out.to_string()
}
