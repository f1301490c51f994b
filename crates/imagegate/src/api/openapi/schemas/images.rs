//! `/v1/images/*`, `/v1/models`: OpenAI's images API with imagegate's extensions.

use serde_json::Value;
use utoipa::ToSchema;

/// How images come back.
#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    Url,
    B64Json,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    Png,
    Jpeg,
    Webp,
}

/// Gemini's aspect ratios.
#[derive(ToSchema)]
pub enum AspectRatio {
    #[serde(rename = "1:1")]
    Square,
    #[serde(rename = "2:3")]
    R2x3,
    #[serde(rename = "3:2")]
    R3x2,
    #[serde(rename = "3:4")]
    R3x4,
    #[serde(rename = "4:3")]
    R4x3,
    #[serde(rename = "4:5")]
    R4x5,
    #[serde(rename = "5:4")]
    R5x4,
    #[serde(rename = "9:16")]
    R9x16,
    #[serde(rename = "16:9")]
    R16x9,
    #[serde(rename = "21:9")]
    R21x9,
}

/// Gemini's resolutions.
#[derive(ToSchema)]
pub enum ImageSize {
    #[serde(rename = "1K")]
    K1,
    #[serde(rename = "2K")]
    K2,
    #[serde(rename = "4K")]
    K4,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    Auto,
    Low,
    Medium,
    High,
    Standard,
    Hd,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookEvent {
    Started,
    Completed,
    Failed,
    Cancelled,
}

/// `POST /v1/images/generations`: OpenAI's fields, plus Gemini's ratio and resolution and the
/// gateway's task fields.
#[derive(ToSchema)]
#[schema(example = json!({"model": "nano-banana-pro", "prompt": "a watercolor fox in a birch forest", "size": "2048x2048"}))]
#[serde(deny_unknown_fields)]
pub struct GenerationRequest {
    /// What to draw.
    #[schema(min_length = 1, max_length = 32000)]
    pub prompt: String,
    /// A model id or alias from `GET /v1/models` (default `nano-banana-pro`).
    pub model: Option<String>,
    /// Images to make, 1 to 10 (default 1).
    #[schema(minimum = 1, maximum = 10)]
    pub n: Option<u32>,
    /// `auto`, `1024x1024`, `2048x2048`, `4096x4096`, `1536x1024`, `1024x1536` or any exact Gemini size.
    #[schema(pattern = "^(auto|[0-9]{3,4}x[0-9]{3,4})$")]
    pub size: Option<String>,
    /// Gemini's ratio: `1:1 2:3 3:2 3:4 4:3 4:5 5:4 9:16 16:9 21:9` (overrides `size`).
    pub aspect_ratio: Option<AspectRatio>,
    /// Gemini's resolution: `1K`, `2K`, `4K` (overrides `size`).
    pub image_size: Option<ImageSize>,
    /// `url` (default: a stored image's URL) or `b64_json`.
    pub response_format: Option<ResponseFormat>,
    /// `png`, `jpeg` or `webp`: the stored image is converted.
    pub output_format: Option<OutputFormat>,
    /// JPEG/WebP quality, 0 to 100.
    #[schema(maximum = 100)]
    pub output_compression: Option<u32>,
    /// Passed to OpenAI-compatible upstreams.
    pub quality: Option<Quality>,
    /// Passed to OpenAI-compatible upstreams.
    pub background: Option<String>,
    /// Image ids (`img_…`), `https` URLs or `data:` URLs to draw from (edits and composition).
    pub reference_images: Option<Vec<String>>,
    /// Where to POST the task's events (signed, Standard Webhooks); public addresses only.
    pub webhook_url: Option<String>,
    /// Which events: `started`, `completed`, `failed`, `cancelled` (default the last three).
    pub webhook_events: Option<Vec<WebhookEvent>>,
    /// `true`: OpenAI's streaming images (server-sent events); `n` must be 1.
    pub stream: Option<bool>,
    /// Drafts to stream before the image, 0 to 3 (with `stream`).
    #[schema(maximum = 3)]
    pub partial_images: Option<u32>,
    /// `flex` on the async route: served through an upstream batch job when there is time.
    pub service_tier: Option<String>,
    /// With `flex`: seconds from now or an RFC 3339 time, at most a day away.
    pub deadline: Option<Value>,
    /// Free text passed on as OpenAI's `user`.
    pub user: Option<String>,
}

/// `POST /v1/images/edits` as multipart form data (what the `openai` SDK's `images.edit` sends).
#[derive(ToSchema)]
pub struct EditForm {
    pub prompt: String,
    /// One image file; repeat as `image[]` for several (up to the model's `max_input_images`).
    #[schema(format = Binary, value_type = String)]
    pub image: Vec<u8>,
    /// A PNG of the first image's size; transparent where to change.
    #[schema(format = Binary, value_type = Option<String>)]
    pub mask: Option<Vec<u8>>,
    pub model: Option<String>,
    pub n: Option<u32>,
    pub size: Option<String>,
    pub aspect_ratio: Option<AspectRatio>,
    pub image_size: Option<ImageSize>,
    pub response_format: Option<ResponseFormat>,
    pub output_format: Option<OutputFormat>,
    pub webhook_url: Option<String>,
}

/// An input image of the JSON form of edits: one of the two fields.
#[derive(ToSchema)]
pub struct ImageRef {
    /// An `https` URL (fetched once, at submit) or a `data:` URL.
    pub image_url: Option<String>,
    /// An image of the same key, by id (`img_…`).
    pub image_id: Option<String>,
}

/// `POST /v1/images/edits` as JSON.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditJson {
    #[schema(min_length = 1, max_length = 32000)]
    pub prompt: String,
    pub images: Vec<ImageRef>,
    pub mask: Option<ImageRef>,
    pub model: Option<String>,
    pub n: Option<u32>,
    pub size: Option<String>,
    pub aspect_ratio: Option<AspectRatio>,
    pub image_size: Option<ImageSize>,
    pub response_format: Option<ResponseFormat>,
    pub output_format: Option<OutputFormat>,
    pub webhook_url: Option<String>,
}

/// One image of an answer.
#[derive(ToSchema)]
pub struct Image {
    /// Where the stored image is served (absent with `b64_json`).
    pub url: Option<String>,
    /// The image itself, when `response_format` was `b64_json`.
    pub b64_json: Option<String>,
    /// The image's id (`img_…`): a reference for later edits.
    pub id: Option<String>,
    /// Unix seconds when the image is deleted (the key's retention).
    pub expires_at: Option<i64>,
    pub width: Option<u32>,
    pub height: Option<u32>,
    pub content_type: Option<String>,
    /// Text the model returned with the image.
    pub revised_prompt: Option<String>,
    /// The model that served it, when a fallback did.
    pub model: Option<String>,
}

#[derive(ToSchema)]
pub struct Usage {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub total_tokens: Option<u64>,
    pub images: Option<u32>,
    pub cost_usd: Option<f64>,
}

/// The sync answer (also a completed task's `result`).
#[derive(ToSchema)]
pub struct ImagesResponse {
    /// Unix seconds.
    pub created: i64,
    pub data: Vec<Image>,
    /// `WIDTHxHEIGHT` of the images.
    pub size: Option<String>,
    pub output_format: Option<OutputFormat>,
    pub usage: Option<Usage>,
    /// `batch` or `realtime`, for flex requests.
    pub served_by: Option<String>,
}

/// A model of `GET /v1/models`.
#[derive(ToSchema)]
pub struct Model {
    pub id: String,
    pub object: String,
    pub created: i64,
    /// `google`, `openai-compatible` or `simulated` (no upstream key set).
    pub owned_by: String,
    pub upstream_model: Option<String>,
    pub max_input_images: Option<u32>,
    pub max_input_image_bytes: Option<u64>,
    pub max_input_total_bytes: Option<u64>,
    pub max_input_image_pixels: Option<u64>,
}

#[derive(ToSchema)]
pub struct ModelList {
    pub object: String,
    pub data: Vec<Model>,
}
