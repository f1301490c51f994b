//! OpenAI-compatible image upstreams: `POST {base}/v1/images/generations`, and with input images
//! `POST {base}/v1/images/edits` (multipart, as OpenAI's edits take it) (OpenAI's
//! `gpt-image-1`, other gateways, resellers). Answers may carry `b64_json` or a `url`, which is
//! fetched into our storage with a size cap: from the upstream's own origin with its client,
//! from anywhere else through the SSRF-guarded client (public addresses only, redirects
//! re-checked), as the answer is the upstream's word, not the operator's.

mod errors;
mod wire;

use async_trait::async_trait;
use bytes::Bytes;

use super::{GeneratedImage, Provider, ProviderError, ProviderRequest, decode_image, send_call, within_deadline};
use crate::config::{Runtime, Secret};

pub use errors::classify;
pub use wire::{build_request, edit_form, parse_response};

pub struct OpenAiCompatProvider {
    client: reqwest::Client,
    /// For image URLs outside the upstream's own origin.
    guarded: reqwest::Client,
    base_url: String,
    origin: Option<url::Origin>,
    key: Secret,
    max_answer: usize,
}

impl OpenAiCompatProvider {
    pub fn new(rt: &Runtime, key: Secret, base_url: String) -> anyhow::Result<OpenAiCompatProvider> {
        let mut builder = crate::egress::upstream(rt.connect_timeout, rt.keepalive, rt.upstream_proxy.as_deref())?;
        if rt.openai_http2_prior_knowledge {
            builder = builder.http2_prior_knowledge();
        }
        let guarded = crate::egress::guarded(crate::egress::Guarded {
            resolver: rt.resolver.0.clone(),
            allow_private: false,
            timeout: std::time::Duration::from_secs(120),
            max_redirects: 3,
            user_agent: concat!("imagegate/", env!("CARGO_PKG_VERSION")),
        })?;
        let origin = url::Url::parse(&base_url).ok().map(|u| u.origin());
        Ok(OpenAiCompatProvider {
            client: builder.build()?,
            guarded,
            base_url,
            origin,
            key,
            max_answer: rt.upstream_max_answer_bytes,
        })
    }

    /// Fetches a `url` answer, refusing anything larger than the cap.
    async fn download(&self, url: &str) -> Result<(Bytes, Option<String>), ProviderError> {
        let parsed =
            url::Url::parse(url).map_err(|_| ProviderError::Malformed { message: "image url is not a URL".into() })?;
        let own = self.origin.as_ref().is_some_and(|o| *o == parsed.origin());
        let client = if own {
            &self.client
        } else {
            crate::egress::guard::check_url(url, false)
                .map_err(|e| ProviderError::Malformed { message: format!("image url {e}") })?;
            &self.guarded
        };
        let resp = client.get(parsed).send().await.map_err(ProviderError::Network)?;
        if !resp.status().is_success() {
            return Err(ProviderError::Overloaded {
                status: resp.status().as_u16(),
                message: "fetching the image url failed".into(),
            });
        }
        let mime = resp.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_string);
        Ok((super::read_answer(resp, self.max_answer).await?, mime))
    }
}

#[async_trait]
impl Provider for OpenAiCompatProvider {
    fn name(&self) -> &'static str {
        "openai_compat"
    }

    async fn generate(&self, req: &ProviderRequest) -> Result<GeneratedImage, ProviderError> {
        let call = async {
            // With input images, an edit (multipart); else a generation (JSON).
            let call = if req.inputs.is_empty() {
                let url = format!("{}/v1/images/generations", self.base_url);
                self.client.post(url).json(&build_request(req))
            } else {
                let url = format!("{}/v1/images/edits", self.base_url);
                self.client.post(url).multipart(edit_form(req)?)
            };
            let bytes = send_call(call.bearer_auth(self.key.expose()), self.max_answer, classify).await?;
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
                signature: None,
            })
        };
        within_deadline(req.deadline, call).await
    }
}
