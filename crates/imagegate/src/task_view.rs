//! The task object of API.md, as the HTTP API, SSE events and webhook payloads show it.

use serde_json::{Value, json};

use crate::store::{ExportRecord, TaskRecord};

/// Renders a task; `queue_position` is shown for queued tasks when known.
pub fn task_object(t: &TaskRecord, queue_position: Option<i64>) -> Value {
    let secs = |ms: Option<i64>| ms.map(|m| m / 1000);
    let error = t.error.as_ref().map(|e| json!({"code": e["code"], "message": e["message"], "type": e["type"]}));
    let mut request = t.request.clone();
    if let Some(obj) = request.as_object_mut() {
        // The stored form also keeps the resolved upstream model; clients see what they sent.
        obj.remove("upstream_model");
        obj.remove("model");
        if let Some(w) = &t.webhook {
            obj.insert("webhook_url".into(), json!(w.url));
            obj.insert("webhook_events".into(), json!(w.events));
        }
    }
    let mut v = json!({
        "id": t.id,
        "object": "image.task",
        "status": t.status.as_str(),
        "mode": t.mode.as_str(),
        "model": t.model,
        "created_at": t.created_at_ms / 1000,
        "started_at": secs(t.started_at_ms),
        "completed_at": secs(t.completed_at_ms),
        "request": request,
        "result": t.result,
        "error": error,
        "attempts": t.attempts,
        "cost_usd": t.cost_usd,
    });
    if let Some(p) = queue_position {
        v["queue_position"] = json!(p);
    }
    if let Some(batch) = &t.batch_id {
        v["batch_id"] = json!(batch);
        v["custom_id"] = json!(t.custom_id);
    }
    if let Some(id) = &t.request_id {
        v["request_id"] = json!(id);
    }
    if t.cancel_requested && !t.status.is_terminal() {
        v["cancel_requested"] = json!(true);
    }
    v
}

/// Adds `exports` (copies to the key's own bucket), when the task has any:
/// `[{"image_id", "status": "pending"|"exported"|"failed", "bucket", "key", "attempts", "error", "exported_at"}]`.
pub fn with_exports(task: &mut Value, exports: &[ExportRecord]) {
    if exports.is_empty() {
        return;
    }
    let list: Vec<Value> = exports
        .iter()
        .map(|e| {
            json!({
                "image_id": e.image_id,
                "status": e.status,
                "bucket": e.bucket,
                "key": e.object_key,
                "attempts": e.attempts,
                "error": e.error,
                "exported_at": e.exported_at_ms.map(|m| m / 1000),
            })
        })
        .collect();
    task["exports"] = json!(list);
}

/// Whether a task object (or its stored request) names input images.
pub fn has_inputs(task: &Value) -> bool {
    let request = &task["request"];
    request["reference_images"].as_array().is_some_and(|r| !r.is_empty()) || request["mask"].is_string()
}

/// Adds `inputs` (the task's input images, in order):
/// `[{"id": "inp_…", "content_type", "width", "height", "bytes"}]`.
pub fn with_inputs(task: &mut Value, inputs: &[crate::store::InputRecord]) {
    let list: Vec<Value> = inputs
        .iter()
        .map(|i| {
            json!({"id": i.id, "content_type": i.content_type, "width": i.width, "height": i.height, "bytes": i.bytes})
        })
        .collect();
    task["inputs"] = json!(list);
}
