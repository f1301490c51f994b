//! Gemini's REST shape (`/v1beta/models/…`), as `google-genai` and Gemini REST clients send it.

use serde_json::Value;
use utoipa::ToSchema;

/// Gemini's error shape.
#[derive(ToSchema)]
pub struct GeminiError {
    pub error: GeminiErrorDetail,
}

#[derive(ToSchema)]
pub struct GeminiErrorDetail {
    /// The HTTP status.
    pub code: u16,
    pub message: String,
    /// `INVALID_ARGUMENT`, `UNAUTHENTICATED`, `NOT_FOUND`, `RESOURCE_EXHAUSTED`, …
    pub status: String,
}

/// Image bytes in a part.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Blob {
    pub mime_type: String,
    /// Base64.
    pub data: String,
}

/// An image by URL: an imagegate image URL, or an `https` URL fetched through the SSRF guard.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FileData {
    pub mime_type: Option<String>,
    pub file_uri: String,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    pub text: Option<String>,
    pub inline_data: Option<Blob>,
    pub file_data: Option<FileData>,
    /// A draft image (a preview), not the answer.
    pub thought: Option<bool>,
    pub thought_signature: Option<String>,
}

#[derive(ToSchema)]
pub struct Content {
    /// `user` or `model`.
    pub role: Option<String>,
    pub parts: Vec<Part>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageConfig {
    /// `1:1 2:3 3:2 3:4 4:3 4:5 5:4 9:16 16:9 21:9`.
    pub aspect_ratio: Option<String>,
    /// `1K`, `2K`, `4K`.
    pub image_size: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerationConfig {
    /// Must include `IMAGE`.
    pub response_modalities: Option<Vec<String>>,
    pub candidate_count: Option<u32>,
    pub image_config: Option<ImageConfig>,
}

/// `:generateContent` and `:streamGenerateContent`.
#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"contents": [{"parts": [{"text": "a watercolor fox"}]}], "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}}}))]
pub struct GenerateContentRequest {
    pub contents: Vec<Content>,
    pub generation_config: Option<GenerationConfig>,
    /// Passed on to Gemini.
    pub safety_settings: Option<Vec<Value>>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Candidate {
    pub content: Option<Content>,
    /// `STOP`, `IMAGE_SAFETY`, …
    pub finish_reason: Option<String>,
    pub index: Option<u32>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PromptFeedback {
    pub block_reason: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageMetadata {
    pub prompt_token_count: Option<u64>,
    pub candidates_token_count: Option<u64>,
    pub total_token_count: Option<u64>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentResponse {
    pub candidates: Option<Vec<Candidate>>,
    pub prompt_feedback: Option<PromptFeedback>,
    pub usage_metadata: Option<UsageMetadata>,
    pub model_version: Option<String>,
    pub response_id: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeminiModel {
    /// `models/{id}`.
    pub name: String,
    pub version: Option<String>,
    pub display_name: Option<String>,
    pub description: Option<String>,
    pub supported_generation_methods: Option<Vec<String>>,
}

#[derive(ToSchema)]
pub struct GeminiModelList {
    pub models: Vec<GeminiModel>,
}
