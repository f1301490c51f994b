//! SEAM Provider: the only place that knows a vendor's wire format.
//!
//! An adapter turns one [`ProviderRequest`] (one image) into one [`GeneratedImage`] or a
//! [`ProviderError`] whose kind tells the worker what to do (retry, fail over, refund, report)
//! without knowing the vendor. Fan-out for `n > 1` happens above this seam.

pub mod channels;
pub mod gemini;
pub mod simulated;

use async_trait::async_trait;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Runtime;
use crate::domain::models::Family;
use crate::domain::sizes::Resolution;

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
    Rejected { reason: String, message: String },
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
}

/// The providers chosen at boot: a router over the channels that serve the models.
#[derive(Clone)]
pub struct Registry {
    router: Arc<channels::Router>,
    simulated: bool,
}

impl Registry {
    /// Gemini channels when a key is configured, otherwise the simulated provider for every model.
    pub fn from_config(rt: &Runtime) -> anyhow::Result<Registry> {
        use channels::{Channel, ChannelSpec};
        let mut list = Vec::new();
        for (i, key) in rt.gemini_keys.iter().enumerate() {
            let spec = ChannelSpec {
                name: format!("gemini-{}", i + 1),
                weight: 1,
                max_concurrency: rt.gemini_max_concurrency,
                rpm: rt.gemini_rpm,
            };
            let provider = gemini::GeminiProvider::new(rt, key.clone(), rt.gemini_base_url.clone())?;
            list.push(Channel::new(spec, Arc::new(provider), rt.breaker));
        }
        for ch in &rt.gemini_channels {
            let spec = ChannelSpec {
                name: ch.name.clone(),
                weight: ch.weight,
                max_concurrency: ch.max_concurrency,
                rpm: ch.rpm,
            };
            let base = ch.base_url.clone().unwrap_or_else(|| rt.gemini_base_url.clone());
            let provider = gemini::GeminiProvider::new(rt, ch.key.clone(), base)?;
            list.push(Channel::new(spec, Arc::new(provider), rt.breaker));
        }
        let simulated = list.is_empty();
        if simulated {
            let spec = ChannelSpec { name: "simulated".into(), weight: 1, max_concurrency: 0, rpm: 0 };
            let provider = simulated::SimulatedProvider::new(rt.simulated_latency, rt.simulated_failure_rate);
            list.push(Channel::new(spec, Arc::new(provider), rt.breaker));
        }
        Ok(Registry { router: Arc::new(channels::Router::new(list)), simulated })
    }

    /// The channels serving `model` (one router for all models, until per-model routing arrives).
    pub fn for_model(&self, _upstream_model: &str) -> &Arc<channels::Router> {
        &self.router
    }

    pub fn routers(&self) -> impl Iterator<Item = &Arc<channels::Router>> {
        std::iter::once(&self.router)
    }

    pub fn is_simulated(&self) -> bool {
        self.simulated
    }

    /// `owned_by` in `GET /v1/models`.
    pub fn owner_label(&self) -> &'static str {
        if self.simulated { "simulated" } else { "google" }
    }
}
