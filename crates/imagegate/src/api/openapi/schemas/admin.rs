//! `/admin/v1/*`: keys and their policy, export destinations, channels (admin token).

use utoipa::ToSchema;

/// A key's policy fields: on create, and on `PATCH` (where `null` clears a field).
#[derive(ToSchema)]
#[schema(example = json!({"name": "acme", "rpm": 60, "max_concurrency": 4, "daily_images": 500, "budget_usd": 25, "retention": "30d", "models": ["nano-banana-pro"]}))]
pub struct KeyPolicy {
    pub name: Option<String>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tasks queued or running at once.
    pub max_concurrency: Option<u32>,
    /// Images per UTC day.
    pub daily_images: Option<u64>,
    /// Total spend allowed, in dollars.
    pub budget_usd: Option<f64>,
    /// How long images are kept: `7d` (default), `30d`, …
    pub retention: Option<String>,
    /// The models the key may use (all when absent).
    pub models: Option<Vec<String>>,
}

/// An API key; the secret is shown once, in `key`, when it is created.
#[derive(ToSchema)]
pub struct Key {
    /// `key_…`.
    pub id: String,
    pub object: String,
    pub name: Option<String>,
    /// The secret's first characters, to recognise it.
    pub prefix: Option<String>,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
    pub retention: Option<String>,
    pub rpm: Option<u32>,
    pub max_concurrency: Option<u32>,
    pub daily_images: Option<u64>,
    pub budget_usd: Option<f64>,
    pub models: Option<Vec<String>>,
    pub spent_usd: f64,
    pub reserved_usd: f64,
    pub export: Option<ExportDestination>,
    /// The secret (`igk_…`), only in the answer to its creation.
    pub key: Option<String>,
}

#[derive(ToSchema)]
pub struct KeyList {
    pub object: String,
    pub data: Vec<Key>,
}

/// `PUT /admin/v1/keys/{id}/export`: the customer's S3-compatible bucket.
#[derive(ToSchema)]
pub struct ExportRequest {
    pub bucket: String,
    pub prefix: Option<String>,
    /// The S3 endpoint (`https://s3.eu-central-1.amazonaws.com`, a MinIO, R2, …).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Bucket in the host name (`https://bucket.endpoint`) rather than the path.
    pub virtual_host: Option<bool>,
    pub access_key_id: String,
    /// A literal (sealed with the server's key, never shown again) or `env::NAME`.
    pub secret_access_key: String,
    /// `false` skips the probe object written, read and deleted first.
    pub verify: Option<bool>,
}

#[derive(ToSchema)]
pub struct ExportDestination {
    pub object: Option<String>,
    pub key_id: Option<String>,
    pub bucket: String,
    pub prefix: Option<String>,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub virtual_host: Option<bool>,
    pub access_key_id: Option<String>,
    /// `<sealed>` or the `env::` name.
    pub secret_access_key: Option<String>,
}

/// An upstream channel: a credential and an endpoint.
#[derive(ToSchema)]
pub struct Channel {
    pub object: String,
    pub name: String,
    pub provider: String,
    /// `healthy`, `rate_limited`, `open`, `half_open` or `disabled`.
    pub state: String,
    pub disabled_reason: Option<String>,
    pub rate_limited_for_secs: Option<u64>,
    pub in_flight: u64,
    pub max_concurrency: Option<u64>,
    pub rpm: Option<u64>,
    pub weight: Option<u64>,
    pub calls: Option<u64>,
    pub errors: Option<u64>,
    pub recent_error_rate: Option<f64>,
}

#[derive(ToSchema)]
pub struct ChannelList {
    pub object: String,
    pub data: Vec<Channel>,
}
