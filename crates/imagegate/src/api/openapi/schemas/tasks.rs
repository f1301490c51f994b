//! `/v1/tasks`: the durable record of every request, whatever its surface and mode.

use serde_json::Value;
use utoipa::ToSchema;

use super::images::ImagesResponse;

/// A task's error: the one its sync request got.
#[derive(ToSchema)]
pub struct TaskError {
    pub code: Option<String>,
    pub message: Option<String>,
    pub r#type: Option<String>,
}

/// A stored input image of an edit.
#[derive(ToSchema)]
pub struct TaskInput {
    /// `inp_…`.
    pub id: String,
    pub content_type: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub bytes: u64,
}

/// A copy of one of the task's images to the key's own bucket.
#[derive(ToSchema)]
pub struct TaskExport {
    pub image_id: String,
    /// `pending`, `exported` or `failed`.
    pub status: String,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub attempts: Option<u32>,
    pub error: Option<String>,
    pub exported_at: Option<i64>,
}

/// Every request is a task: `GET /v1/tasks/{id}` shows it even if its client went away.
#[derive(ToSchema)]
#[schema(example = json!({"id": "task_01JD…", "object": "image.task", "status": "completed", "mode": "sync", "model": "nano-banana-pro", "created_at": 1764100000, "attempts": 1, "cost_usd": 0.134}))]
pub struct Task {
    /// `task_…`.
    pub id: String,
    /// `image.task`.
    pub object: String,
    /// `queued`, `running`, `completed`, `failed` or `cancelled`.
    pub status: String,
    /// `sync`, `async` or `batch`.
    pub mode: String,
    pub model: String,
    /// Unix seconds.
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub completed_at: Option<i64>,
    /// Tasks ahead of it while queued (1000 means 1,000 or more).
    pub queue_position: Option<u64>,
    /// The request as submitted (input images as their stored ids).
    pub request: Option<Value>,
    /// The sync answer, once completed.
    pub result: Option<ImagesResponse>,
    pub error: Option<TaskError>,
    /// Upstream tries.
    pub attempts: u32,
    /// Charged so far (reserved while it runs; refunded when it fails).
    pub cost_usd: Option<f64>,
    pub inputs: Option<Vec<TaskInput>>,
    pub exports: Option<Vec<TaskExport>>,
    /// For a batch line: its batch and `custom_id`.
    pub batch_id: Option<String>,
    pub custom_id: Option<String>,
    /// The `X-Request-Id` of the request that submitted it (also on its log lines).
    pub request_id: Option<String>,
    /// A cancel was asked of a running task and is under way.
    pub cancel_requested: Option<bool>,
}

#[derive(ToSchema)]
pub struct TaskList {
    pub object: String,
    pub data: Vec<Task>,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub has_more: bool,
}

/// One attempt to deliver a webhook.
#[derive(ToSchema)]
pub struct WebhookDelivery {
    pub object: String,
    /// The `webhook-id` header: the same on every retry of one event.
    pub webhook_id: String,
    /// `task.completed`, …
    pub event: String,
    pub url: String,
    pub attempted_at: i64,
    /// The receiver's status, or absent when the connection failed.
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub latency_ms: Option<u64>,
    pub success: bool,
}

#[derive(ToSchema)]
pub struct WebhookDeliveryList {
    pub object: String,
    pub data: Vec<WebhookDelivery>,
}

/// The key's webhook signing secret (`whsec_…`, Standard Webhooks).
#[derive(ToSchema)]
pub struct WebhookSecret {
    pub object: String,
    pub secret: String,
}

/// One row of usage: a day, a model.
#[derive(ToSchema)]
pub struct UsageRow {
    /// `YYYY-MM-DD` (UTC).
    pub date: String,
    pub model: String,
    pub images: u64,
    pub cost_usd: f64,
    /// On the admin route: whose.
    pub key_id: Option<String>,
}

/// `GET /v1/usage`: images and cost by day and model.
#[derive(ToSchema)]
pub struct UsageReport {
    pub object: String,
    pub data: Vec<UsageRow>,
    pub total_images: u64,
    pub total_cost_usd: f64,
    pub spent_usd: Option<f64>,
    pub reserved_usd: Option<f64>,
    pub budget_usd: Option<f64>,
    pub daily_images: Option<u64>,
}
