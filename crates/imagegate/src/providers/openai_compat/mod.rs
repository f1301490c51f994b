//! OpenAI-compatible image upstreams: `POST {base}/v1/images/generations` (OpenAI's
//! `gpt-image-1`, other gateways, resellers). Answers may carry `b64_json` or a `url`, which is
//! fetched into our storage with a size cap.

mod errors;
mod wire;

use async_trait::async_trait;
use bytes::Bytes;

use super::{GeneratedImage, Provider, ProviderError, ProviderRequest, decode_image, send_call, within_deadline};
use crate::config::{Runtime, Secret};

pub use errors::classify;
pub use wire::{build_request, parse_response};

/// Largest image accepted from a `url` answer.
pub const MAX_DOWNLOAD_BYTES: usize = 64 * 1024 * 1024;

pub struct OpenAiCompatProvider {
    client: reqwest::Client,
    base_url: String,
    key: Secret,
}

impl OpenAiCompatProvider {
    pub fn new(rt: &Runtime, key: Secret, base_url: String) -> anyhow::Result<OpenAiCompatProvider> {
        crate::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .connect_timeout(rt.connect_timeout)
            .tcp_keepalive(rt.keepalive)
            .user_agent(concat!("imagegate/", env!("CARGO_PKG_VERSION")));
        if rt.openai_http2_prior_knowledge {
            builder = builder.http2_prior_knowledge();
        }
        let client = builder.build()?;
        Ok(OpenAiCompatProvider { client, base_url, key })
    }

    /// Fetches a `url` answer, refusing anything larger than the cap.
    async fn download(&self, url: &str) -> Result<(Bytes, Option<String>), ProviderError> {
        let parsed =
            url::Url::parse(url).map_err(|_| ProviderError::Malformed { message: "image url is not a URL".into() })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(ProviderError::Malformed { message: "image url must be http(s)".into() });
        }
        let resp = self.client.get(parsed).send().await.map_err(ProviderError::Network)?;
        if !resp.status().is_success() {
            return Err(ProviderError::Overloaded {
                status: resp.status().as_u16(),
                message: "fetching the image url failed".into(),
            });
        }
        if resp.content_length().is_some_and(|n| n as usize > MAX_DOWNLOAD_BYTES) {
            return Err(ProviderError::Malformed { message: "image at url is larger than the cap".into() });
        }
        let mime = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        let mut resp = resp;
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(ProviderError::Network)? {
            if body.len() + chunk.len() > MAX_DOWNLOAD_BYTES {
                return Err(ProviderError::Malformed { message: "image at url is larger than the cap".into() });
            }
            body.extend_from_slice(&chunk);
        }
        Ok((Bytes::from(body), mime))
    }
}

#[async_trait]
impl Provider for OpenAiCompatProvider {
    fn name(&self) -> &'static str {
        "openai_compat"
    }

    async fn generate(&self, req: &ProviderRequest) -> Result<GeneratedImage, ProviderError> {
        let url = format!("{}/v1/images/generations", self.base_url);
        let body = build_request(req);
        let call = async {
            let req = self.client.post(&url).bearer_auth(self.key.expose()).json(&body);
            let bytes = send_call(req, classify).await?;
            let answer = parse_response(&bytes)?;
            let (bytes, mime) = match (answer.b64_json, answer.url) {
                (Some(b64), _) => (decode_image(&b64, "b64_json")?, None),
                (None, Some(u)) => self.download(&u).await?,
                (None, None) => {
                    return Err(ProviderError::Malformed { message: "answer has neither b64_json nor url".into() });
                }
            };
            let mime = crate::imaging::sniff(&bytes)
                .map(|f| f.mime().to_string())
                .or(mime)
                .ok_or_else(|| ProviderError::Malformed { message: "answer is not an image".into() })?;
            Ok(GeneratedImage {
                bytes,
                mime,
                text: answer.revised_prompt,
                input_tokens: answer.input_tokens,
                output_tokens: answer.output_tokens,
            })
        };
        within_deadline(req.deadline, call).await
    }
}
