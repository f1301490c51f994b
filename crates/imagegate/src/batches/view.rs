//! The batch object of OpenAI's Batch API, as the HTTP API and batch webhooks show it, plus
//! `cost_usd`.

use serde_json::{Value, json};

use crate::store::{BatchProgress, BatchRecord};

/// Renders a batch; `live` gives its lines' counts while it runs (the stored counts are those
/// of its last save).
pub fn batch_object(b: &BatchRecord, live: Option<&BatchProgress>) -> Value {
    let (total, completed, failed, cost) = match live {
        Some(p) => (b.total.max(p.lines), p.completed, p.failed, p.cost_usd),
        None => (b.total, b.completed, b.failed, b.cost_usd),
    };
    json!({
        "id": b.id,
        "object": "batch",
        "endpoint": b.endpoint,
        "errors": b.errors,
        "input_file_id": b.input_file_id,
        "completion_window": b.completion_window,
        "status": b.status.as_str(),
        "output_file_id": b.output_file_id,
        "error_file_id": b.error_file_id,
        "created_at": b.created_at,
        "in_progress_at": b.in_progress_at,
        "expires_at": b.expires_at,
        "finalizing_at": b.finalizing_at,
        "completed_at": b.completed_at,
        "failed_at": b.failed_at,
        "expired_at": b.expired_at,
        "cancelling_at": b.cancelling_at,
        "cancelled_at": b.cancelled_at,
        "request_counts": {"total": total, "completed": completed, "failed": failed},
        "metadata": b.metadata,
        "cost_usd": (cost * 1e6).round() / 1e6,
    })
}
