//! Gemini image models over REST: `POST {base}/v1beta/models/{model}:generateContent`.

mod errors;
mod wire;

use async_trait::async_trait;

use super::{GeneratedImage, Provider, ProviderError, ProviderRequest, decode_image, send_call, within_deadline};
use crate::config::{Runtime, Secret};

pub use errors::classify;
pub use wire::{MASK_INSTRUCTION, body, build_request, parse_response};

/// One Gemini channel: a credential and an endpoint.
pub struct GeminiProvider {
    client: reqwest::Client,
    base_url: String,
    key: Secret,
    max_answer: usize,
}

impl GeminiProvider {
    pub fn new(rt: &Runtime, key: Secret, base_url: String) -> anyhow::Result<GeminiProvider> {
        let client =
            crate::egress::upstream(rt.connect_timeout, rt.keepalive, rt.upstream_proxy.as_deref())?.build()?;
        Ok(GeminiProvider { client, base_url, key, max_answer: rt.upstream_max_answer_bytes })
    }
}

#[async_trait]
impl Provider for GeminiProvider {
    fn name(&self) -> &'static str {
        "gemini"
    }

    async fn generate(&self, req: &ProviderRequest) -> Result<GeneratedImage, ProviderError> {
        let url = format!("{}/v1beta/models/{}:generateContent", self.base_url, req.model);
        let call = async {
            let (body, length) = body(req)?;
            let req = self
                .client
                .post(&url)
                .header("x-goog-api-key", self.key.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::CONTENT_LENGTH, length)
                .body(body);
            let bytes = send_call(req, self.max_answer, classify).await?;
            let image = parse_response(&bytes)?;
            Ok(GeneratedImage {
                bytes: decode_image(&image.data, "image data")?,
                mime: image.mime_type,
                text: image.text,
                input_tokens: image.input_tokens,
                output_tokens: image.output_tokens,
            })
        };
        within_deadline(req.deadline, call).await
    }
}
