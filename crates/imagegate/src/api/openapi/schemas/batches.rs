//! `/v1/files` and `/v1/batches`: OpenAI's Files and Batch APIs.

use serde_json::Value;
use utoipa::ToSchema;

/// `POST /v1/files` (multipart): a JSONL file of batch requests.
#[derive(ToSchema)]
pub struct FileUpload {
    #[schema(format = Binary, value_type = String)]
    pub file: Vec<u8>,
    /// `batch`.
    pub purpose: String,
}

#[derive(ToSchema)]
pub struct File {
    /// `file-…`.
    pub id: String,
    pub object: String,
    pub bytes: u64,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub filename: String,
    /// `batch` (uploads) or `batch_output` (a batch's output and error files).
    pub purpose: String,
    pub status: String,
    pub status_details: Option<String>,
}

#[derive(ToSchema)]
pub struct FileList {
    pub object: String,
    pub data: Vec<File>,
    pub has_more: bool,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
}

/// `POST /v1/batches`.
#[derive(ToSchema)]
#[schema(example = json!({"input_file_id": "file-01JD…", "endpoint": "/v1/images/generations", "completion_window": "24h"}))]
pub struct BatchCreate {
    pub input_file_id: String,
    /// `/v1/images/generations` or `/v1/images/edits`.
    pub endpoint: String,
    /// `24h`.
    pub completion_window: String,
    /// Up to 16 string pairs; `webhook_url` receives the batch's end.
    pub metadata: Option<Value>,
}

#[derive(ToSchema)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

#[derive(ToSchema)]
pub struct Batch {
    /// `batch_…`.
    pub id: String,
    pub object: String,
    pub endpoint: String,
    pub errors: Option<Value>,
    pub input_file_id: String,
    pub completion_window: String,
    /// `validating`, `in_progress`, `finalizing`, `completed`, `failed`, `expired`, `cancelling`, `cancelled`.
    pub status: String,
    pub output_file_id: Option<String>,
    pub error_file_id: Option<String>,
    pub created_at: i64,
    pub in_progress_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub finalizing_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub failed_at: Option<i64>,
    pub expired_at: Option<i64>,
    pub cancelling_at: Option<i64>,
    pub cancelled_at: Option<i64>,
    pub request_counts: RequestCounts,
    pub metadata: Option<Value>,
    /// What the lines cost (half price on the upstream batch path).
    pub cost_usd: f64,
}

#[derive(ToSchema)]
pub struct BatchList {
    pub object: String,
    pub data: Vec<Batch>,
    pub has_more: bool,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
}
