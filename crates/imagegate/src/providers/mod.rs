//! SEAM Provider: the only place that knows a vendor's wire format.
//!
//! An adapter turns one [`ProviderRequest`] (one image) into one [`GeneratedImage`] or a
//! [`ProviderError`] whose kind tells the worker what to do (retry, fail over, refund, report)
//! without knowing the vendor. Fan-out for `n > 1` happens above this seam.

pub mod batch;
pub mod channels;
pub mod gemini;
pub mod openai_compat;
pub mod quota;
pub mod simulated;

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Runtime;
use crate::domain::models::Family;
use crate::domain::sizes::Resolution;

/// Error bodies are read up to this much (they are small; more is not worth holding).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Sends an upstream call and reads the whole answer, up to `max_bytes`. A non-2xx answer
/// becomes an error through the adapter's `classify(status, body, retry_after)`; a 2xx one
/// returns its body.
pub async fn send_call(
    req: reqwest::RequestBuilder,
    max_bytes: usize,
    classify: fn(u16, &[u8], Option<&str>) -> ProviderError,
) -> Result<Bytes, ProviderError> {
    let resp = req.send().await.map_err(ProviderError::Network)?;
    let status = resp.status().as_u16();
    let retry_after =
        resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()).map(str::to_string);
    if !(200..300).contains(&status) {
        let body = crate::egress::read_capped(resp, MAX_ERROR_BODY).await.unwrap_or_default();
        return Err(classify(status, &body, retry_after.as_deref()));
    }
    read_answer(resp, max_bytes).await
}

/// Reads an upstream answer's body with the cap: an oversized answer is a malformed one.
pub async fn read_answer(resp: reqwest::Response, max_bytes: usize) -> Result<Bytes, ProviderError> {
    crate::egress::read_capped(resp, max_bytes).await.map_err(|e| match e {
        crate::egress::ReadError::TooLarge(n) => {
            ProviderError::Malformed { message: format!("the answer is larger than the {n}-byte cap") }
        }
        crate::egress::ReadError::Network(e) => ProviderError::Network(e),
    })
}

/// Decodes an image sent as base64 (`what` names the field in the error). SIMD: a 4K PNG is
/// tens of megabytes of base64, and the `base64` crate's scalar decoder was a tenth of a
/// 1024x1024 request's CPU.
pub fn decode_image(b64: &str, what: &str) -> Result<Bytes, ProviderError> {
    base64_simd::STANDARD
        .decode_to_vec(b64.as_bytes())
        .map(Bytes::from)
        .map_err(|_| ProviderError::Malformed { message: format!("{what} is not valid base64") })
}

/// Runs an adapter's call within the request's deadline.
pub async fn within_deadline<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = Result<T, ProviderError>>,
) -> Result<T, ProviderError> {
    tokio::time::timeout(deadline, call).await.unwrap_or(Err(ProviderError::Timeout(deadline)))
}

/// One image to generate.
#[derive(Debug, Clone)]
pub struct ProviderRequest {
    /// Upstream model name (aliases already resolved).
    pub model: String,
    pub family: Family,
    pub prompt: String,
    pub aspect_ratio: String,
    pub resolution: Resolution,
    /// Expected output pixels (what the size table promises).
    pub width: u32,
    pub height: u32,
    /// Which of the request's `n` images this is (0-based): distinct images per index.
    pub index: u32,
    /// Time budget for this call; adapters must not outlive it.
    pub deadline: Duration,
    /// Input images (reference images, an edit's images and mask): the stored bytes.
    pub inputs: std::sync::Arc<Inputs>,
    /// Request fields only some upstreams take (OpenAI-compatible edits).
    pub options: std::sync::Arc<Options>,
    /// Where drafts go as they arrive (Gemini 3 Pro Image's thought images), when wanted.
    pub previews: Option<PreviewSink>,
}

impl ProviderRequest {
    /// Image `index` of a validated request, as an upstream is asked for it.
    pub fn for_image(
        req: &crate::domain::request::ImageRequest,
        index: u32,
        deadline: Duration,
        inputs: std::sync::Arc<Inputs>,
        options: std::sync::Arc<Options>,
        previews: Option<PreviewSink>,
    ) -> ProviderRequest {
        let shape = req.shape();
        let (width, height) = shape.pixels();
        ProviderRequest {
            model: req.upstream_model.clone(),
            family: req.family(),
            prompt: req.prompt.clone(),
            aspect_ratio: req.aspect_ratio.clone(),
            resolution: shape.resolution,
            width,
            height,
            index,
            deadline,
            inputs,
            options,
            previews,
        }
    }
}

impl Options {
    /// The fields of a request that some upstreams take.
    pub fn of(req: &crate::domain::request::ImageRequest) -> Options {
        Options {
            quality: req.quality.clone(),
            background: req.background.clone(),
            input_fidelity: req.input_fidelity.clone(),
            turns: req.turns.clone(),
            safety: req.safety.clone(),
        }
    }
}

/// A draft of an image, received before the final one: shown as a preview, never a result.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Which of the request's images it is a draft of.
    pub index: u32,
    pub mime: String,
    pub bytes: Bytes,
}

pub type PreviewSink = tokio::sync::mpsc::UnboundedSender<Draft>;

/// A request's input images, in order, and an edit's mask.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub images: Vec<InputImage>,
    pub mask: Option<InputImage>,
}

impl Inputs {
    pub fn is_empty(&self) -> bool {
        self.images.is_empty() && self.mask.is_none()
    }

    /// The bytes of all the inputs.
    pub fn bytes(&self) -> usize {
        self.images.iter().chain(&self.mask).map(|i| i.bytes.len()).sum()
    }
}

/// Fields passed through to upstreams that take them, as the client sent them.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub quality: Option<String>,
    pub background: Option<String>,
    pub input_fidelity: Option<String>,
    /// The conversation, for upstreams that take one (its images are `inputs.images`).
    pub turns: Vec<crate::domain::conversation::Turn>,
    pub safety: Vec<crate::domain::conversation::SafetySetting>,
}

/// An input image as sent upstream.
#[derive(Debug, Clone)]
pub struct InputImage {
    pub content_type: String,
    pub bytes: Bytes,
}

/// One generated image as the upstream returned it.
#[derive(Debug, Clone)]
pub struct GeneratedImage {
    pub bytes: Bytes,
    /// `image/jpeg`, `image/png`, …
    pub mime: String,
    /// Any text the model returned beside the image.
    pub text: Option<String>,
    /// Tokens the upstream billed for the prompt and for the output (image + thoughts).
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// The upstream's opaque token for the image (Gemini's `thoughtSignature`), for clients that
    /// hand the image back in a later turn.
    pub signature: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// 429: over the upstream's quota; retry after the hint if any.
    #[error("upstream rate limited: {message}")]
    RateLimited { retry_after: Option<Duration>, message: String },
    /// 5xx or "model overloaded": retryable.
    #[error("upstream unavailable ({status}): {message}")]
    Overloaded { status: u16, message: String },
    /// The call ran past its deadline.
    #[error("upstream did not answer within {0:?}")]
    Timeout(Duration),
    /// Connect error, reset, broken body.
    #[error("network error talking to upstream")]
    Network(#[source] reqwest::Error),
    /// Content refusal (safety block, prohibited content, text-only answer): never retried.
    #[error("{message}")]
    /// `prompt`: the prompt itself was blocked (no candidate at all), not the output.
    Rejected { reason: String, message: String, prompt: bool },
    /// The upstream said our request is invalid (400/404): not retried.
    #[error("upstream refused the request: {message}")]
    Invalid { message: String },
    /// The gateway's upstream credential was refused (401/403).
    #[error("upstream refused the gateway's credential: {message}")]
    Auth { message: String },
    /// A 200 we could not use (bad JSON, no image, undecodable image): retryable.
    #[error("malformed upstream response: {message}")]
    Malformed { message: String },
    /// No channel can take the call (all disabled or open).
    #[error("no healthy upstream channel")]
    Unavailable,
}

impl ProviderError {
    /// Whether another attempt may succeed.
    /// The server's requested delay before another try, if it gave one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProviderError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Whether another channel may do better than this one (rate limits and overloads are
    /// per channel; timeouts and malformed answers are not obviously so).
    pub fn is_channel_fault(&self) -> bool {
        matches!(self, ProviderError::RateLimited { .. } | ProviderError::Overloaded { .. } | ProviderError::Network(_))
    }

    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ProviderError::RateLimited { .. }
                | ProviderError::Overloaded { .. }
                | ProviderError::Timeout(_)
                | ProviderError::Network(_)
                | ProviderError::Malformed { .. }
        )
    }
}

#[async_trait]
pub trait Provider: Send + Sync {
    /// Short name for logs and `owned_by` (`gemini`, `simulated`).
    fn name(&self) -> &'static str;
    /// Generates one image. Cancel-safe: dropping the future aborts the upstream call.
    /// Not retried here; the caller owns retry policy.
    async fn generate(&self, req: &ProviderRequest) -> Result<GeneratedImage, ProviderError>;
    /// The provider's batch API, if it has one (jobs at the batch price).
    fn batch(&self) -> Option<&dyn batch::BatchProvider> {
        None
    }
}

/// The providers chosen at boot: one router for Gemini models and one for models sent to an
/// OpenAI-compatible upstream. A router with no configured channel serves its models with the
/// simulated provider (and says so in `owned_by`).
#[derive(Clone)]
pub struct Registry {
    gemini: Arc<channels::Router>,
    openai: Arc<channels::Router>,
    gemini_simulated: bool,
    openai_simulated: bool,
    /// Upstream model names routed to the OpenAI-compatible router.
    openai_models: Vec<String>,
}

/// One upstream's settings, as the config gives them.
struct Upstream<'a> {
    prefix: &'a str,
    keys: &'a [crate::config::Secret],
    base_url: &'a str,
    max_concurrency: usize,
    rpm: u32,
    extra: &'a [crate::config::ChannelSettings],
}

fn channel_list(
    rt: &Runtime,
    u: Upstream<'_>,
    make: &dyn Fn(crate::config::Secret, String) -> anyhow::Result<Arc<dyn Provider>>,
) -> anyhow::Result<Vec<channels::Channel>> {
    use channels::{Channel, ChannelSpec};
    let Upstream { prefix, keys, base_url, max_concurrency, rpm, extra } = u;
    let mut list = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let spec = ChannelSpec { name: format!("{prefix}-{}", i + 1), weight: 1, max_concurrency, rpm };
        list.push(Channel::new(spec, make(key.clone(), base_url.to_string())?, rt.breaker));
    }
    for ch in extra {
        let spec =
            ChannelSpec { name: ch.name.clone(), weight: ch.weight, max_concurrency: ch.max_concurrency, rpm: ch.rpm };
        let base = ch.base_url.clone().unwrap_or_else(|| base_url.to_string());
        list.push(Channel::new(spec, make(ch.key.clone(), base)?, rt.breaker));
    }
    Ok(list)
}

fn simulated_channel(rt: &Runtime) -> channels::Channel {
    let spec = channels::ChannelSpec { name: "simulated".into(), weight: 1, max_concurrency: 0, rpm: 0 };
    let provider = simulated::SimulatedProvider::new(rt.simulated_latency, rt.simulated_failure_rate);
    channels::Channel::new(spec, Arc::new(provider), rt.breaker)
}

impl Registry {
    pub fn from_config(rt: &Runtime) -> anyhow::Result<Registry> {
        let gemini = channel_list(
            rt,
            Upstream {
                prefix: "gemini",
                keys: &rt.gemini_keys,
                base_url: &rt.gemini_base_url,
                max_concurrency: rt.gemini_max_concurrency,
                rpm: rt.gemini_rpm,
                extra: &rt.gemini_channels,
            },
            &|key, base| Ok(Arc::new(gemini::GeminiProvider::new(rt, key, base)?)),
        )?;
        let openai = channel_list(
            rt,
            Upstream {
                prefix: "openai",
                keys: &rt.openai_keys,
                base_url: &rt.openai_base_url,
                max_concurrency: rt.openai_max_concurrency,
                rpm: rt.openai_rpm,
                extra: &rt.openai_channels,
            },
            &|key, base| Ok(Arc::new(openai_compat::OpenAiCompatProvider::new(rt, key, base)?)),
        )?;
        let (gemini_simulated, openai_simulated) = (gemini.is_empty(), openai.is_empty());
        let router = |list: Vec<channels::Channel>| {
            Arc::new(channels::Router::new(if list.is_empty() { vec![simulated_channel(rt)] } else { list }))
        };
        let openai_models = rt
            .openai_models
            .iter()
            .filter_map(|m| crate::domain::models::resolve(m).map(|x| x.upstream.to_string()))
            .collect();
        Ok(Registry {
            gemini: router(gemini),
            openai: router(openai),
            gemini_simulated,
            openai_simulated,
            openai_models,
        })
    }

    fn is_openai(&self, upstream_model: &str) -> bool {
        self.openai_models.iter().any(|m| m == upstream_model)
            || crate::domain::models::resolve(upstream_model).map(|m| m.family) == Some(Family::OpenAi)
    }

    /// The channels serving `model` (an upstream model name).
    pub fn for_model(&self, upstream_model: &str) -> &Arc<channels::Router> {
        if self.is_openai(upstream_model) { &self.openai } else { &self.gemini }
    }

    /// Counts the channels' limits with the other replicas sharing `quota`.
    pub fn share(&self, quota: Arc<dyn quota::SharedQuota>) {
        self.gemini.share(quota.clone(), "gemini");
        self.openai.share(quota, "openai");
    }

    pub fn routers(&self) -> impl Iterator<Item = &Arc<channels::Router>> {
        [&self.gemini, &self.openai].into_iter()
    }

    /// True when no upstream at all is configured: every model is simulated.
    pub fn is_simulated(&self) -> bool {
        self.gemini_simulated && self.openai_simulated
    }

    /// Which upstreams serve the models, for logs and `/readyz`.
    pub fn summary(&self) -> &'static str {
        match (self.gemini_simulated, self.openai_simulated) {
            (true, true) => "simulated",
            (false, true) => "gemini (OpenAI models simulated)",
            (true, false) => "openai_compat (Gemini models simulated)",
            (false, false) => "gemini + openai_compat",
        }
    }

    /// `owned_by` for a model in `GET /v1/models`.
    pub fn owner_label(&self, upstream_model: &str) -> &'static str {
        match (self.is_openai(upstream_model), self.gemini_simulated, self.openai_simulated) {
            (true, _, true) | (false, true, _) => "simulated",
            (true, _, false) => "openai_compat",
            (false, false, _) => "google",
        }
    }
}
