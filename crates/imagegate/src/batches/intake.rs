//! `validating`: the input file read twice as a stream. The first pass checks the whole file
//! (a line that is not JSON, a duplicate `custom_id`, a wrong `url` fails the batch before any
//! line runs); the second writes each line's task (or records why its body was refused).
//! Each line's task is keyed by the batch and line, so a driver that restarts mid-file gets
//! the tasks it already made rather than making them again.

use futures_util::StreamExt;
use serde_json::json;

use super::{BatchError, Step};
use crate::app::App;
use crate::domain::batch::BatchStatus;
use crate::domain::batch_input::{EDITS, Line, LineError, Lines, Validator};
use crate::domain::now_secs;
use crate::store::{BatchLink, BatchRecord, KeyRecord};

/// Lines between two renewals of the batch's lease.
const RENEW_EVERY: usize = 100;

pub(super) async fn validate(app: &App, worker: &str, mut b: BatchRecord) -> Result<Step, BatchError> {
    let key = match app.store.get_key(&b.owner).await? {
        Some(k) if k.revoked_at.is_none() => k,
        _ => return Ok(failed(b, vec![file_error("invalid_api_key", "The batch's API key has been revoked.")])),
    };
    let Some(file) = app.store.get_file(&b.owner, &b.input_file_id).await? else {
        let message = format!("The input file {} no longer exists.", b.input_file_id);
        return Ok(failed(b, vec![file_error("invalid_file", &message)]));
    };
    // Pass 1: the file as a whole.
    let mut checker = Validator::new(&b.endpoint);
    read(app, &file.blob_key, |found| {
        let _ = checker.feed(found);
    })
    .await?;
    let total = match checker.finish() {
        Ok(n) => n,
        Err(errors) => return Ok(failed(b, errors.into_iter().map(line_error).collect())),
    };
    // Pass 2: each line becomes a task, after those a run before this one recorded.
    let recorded = app.store.batch_progress(&b.id).await?.lines as usize;
    let mut validator = Validator::new(&b.endpoint);
    let mut seen = 0usize;
    let mut pending: Vec<Line> = Vec::new();
    let mut stream = app.blobs.stream(&file.blob_key, None).await?;
    let mut splitter = Lines::default();
    let mut more = true;
    while more {
        match stream.next().await {
            Some(chunk) => {
                let chunk = chunk.map_err(BatchError::Read)?;
                splitter.push(&chunk, |l| pending.extend(validator.feed(l)));
            }
            None => {
                std::mem::take(&mut splitter).finish(|l| pending.extend(validator.feed(l)));
                more = false;
            }
        }
        for line in pending.drain(..) {
            seen += 1;
            if seen <= recorded {
                continue;
            }
            run_line(app, &key, &b, line).await?;
            if seen.is_multiple_of(RENEW_EVERY) && !app.store.renew_batch(&b.id, worker, super::lease_until()).await? {
                return Err(BatchError::LeaseLost);
            }
        }
    }
    b.total = total as i64;
    b.status = BatchStatus::InProgress;
    b.in_progress_at = Some(now_secs());
    Ok(Step { batch: b, again_in_ms: 0 })
}

/// Reads the object's lines, handing each to `each`.
async fn read(app: &App, blob_key: &str, mut each: impl FnMut(&[u8])) -> Result<(), BatchError> {
    let mut stream = app.blobs.stream(blob_key, None).await?;
    let mut splitter = Lines::default();
    while let Some(chunk) = stream.next().await {
        splitter.push(&chunk.map_err(BatchError::Read)?, &mut each);
    }
    splitter.finish(each);
    Ok(())
}

/// Writes a line's task, or records why it cannot run. A refusal that may pass later (the
/// database or storage unreachable) stops the pass, to be run again.
async fn run_line(app: &App, key: &KeyRecord, b: &BatchRecord, line: Line) -> Result<(), BatchError> {
    let number = line.number as i64;
    let refusal = match &line.request {
        Err(invalid) => json!({"status": 400, "type": "invalid_request_error", "code": invalid.code,
                               "message": invalid.message, "param": invalid.param}),
        Ok(req) => {
            let link = BatchLink { batch_id: b.id.clone(), custom_id: line.custom_id.clone() };
            let idempotency = format!("{}:{}", b.id, number);
            let upstream = super::upstream::can_batch(app, &req.upstream_model);
            // The body again as the route reads it: its inputs borrowed from these bytes.
            let bytes = serde_json::to_vec(&line.body).unwrap_or_default();
            let submission = if b.endpoint == EDITS {
                crate::api::openai::edits::edit_line(&bytes)
            } else {
                crate::api::openai::images::generation_line(&bytes)
            };
            let submitted = match submission {
                Ok(s) => crate::api::openai::images::submit_line(app, key, link, &idempotency, s, upstream).await,
                Err(e) => Err(e),
            };
            match submitted {
                Ok(task) => {
                    app.store.add_batch_line(&b.id, number, &line.custom_id, Some(&task.id), None).await?;
                    return Ok(());
                }
                Err(e) if e.status.is_server_error() => return Err(BatchError::Submit(e.message)),
                Err(e) => json!({"status": e.status.as_u16(), "type": e.kind, "code": e.code,
                                 "message": e.message, "param": e.param}),
            }
        }
    };
    app.store.add_batch_line(&b.id, number, &line.custom_id, None, Some(&refusal)).await?;
    Ok(())
}

fn failed(mut b: BatchRecord, errors: Vec<serde_json::Value>) -> Step {
    b.status = BatchStatus::Failed;
    b.failed_at = Some(now_secs());
    b.errors = Some(json!({"object": "list", "data": errors}));
    Step { batch: b, again_in_ms: 0 }
}

fn line_error(e: LineError) -> serde_json::Value {
    json!({"code": e.code, "message": e.message, "param": e.param, "line": (e.line > 0).then_some(e.line)})
}

fn file_error(code: &str, message: &str) -> serde_json::Value {
    json!({"code": code, "message": message, "param": "input_file_id", "line": null})
}
