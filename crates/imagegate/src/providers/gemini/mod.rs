//! Gemini image models over REST: `POST {base}/v1beta/models/{model}:streamGenerateContent?alt=sse`
//! (the answer of `generateContent`, its drafts first).

mod batch;
mod errors;
mod stream;
mod wire;

use async_trait::async_trait;

use super::{GeneratedImage, Provider, ProviderError, ProviderRequest, within_deadline};
use crate::config::{Runtime, Secret};

pub use errors::classify;
pub use wire::{Answer, MASK_INSTRUCTION, body, build_request, parse_response};

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

    /// Streams the call (`:streamGenerateContent?alt=sse`): Gemini 3 Pro Image's drafts arrive
    /// while it thinks, and go to `req.previews`; the final image ends the stream.
    fn batch(&self) -> Option<&dyn crate::providers::batch::BatchProvider> {
        Some(self)
    }

    async fn generate(&self, req: &ProviderRequest) -> Result<GeneratedImage, ProviderError> {
        let url = format!("{}/v1beta/models/{}:streamGenerateContent?alt=sse", self.base_url, req.model);
        let call = async {
            let (body, length) = body(req)?;
            let resp = self
                .client
                .post(&url)
                .header("x-goog-api-key", self.key.expose())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::CONTENT_LENGTH, length)
                .body(body)
                .send()
                .await
                .map_err(ProviderError::Network)?;
            let status = resp.status().as_u16();
            if !(200..300).contains(&status) {
                let retry_after =
                    resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
                let body = crate::egress::read_capped(resp, 64 * 1024).await.unwrap_or_default();
                return Err(classify(status, &body, retry_after.as_deref()));
            }
            let mut answer = Answer::default();
            let mut on_draft = |mime: String, bytes: bytes::Bytes| {
                if let Some(tx) = &req.previews {
                    let _ = tx.send(super::Draft { index: req.index, mime, bytes });
                }
            };
            stream::read(resp, self.max_answer, |event| answer.feed(event, &mut on_draft)).await?;
            answer.finish()
        };
        within_deadline(req.deadline, call).await
    }
}
