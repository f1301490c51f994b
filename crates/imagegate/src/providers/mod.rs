//! SEAM Provider: the only place that knows a vendor's wire format.
//!
//! An adapter turns one [`ProviderRequest`] (one image) into one [`GeneratedImage`] or a
//! [`ProviderError`] whose kind tells the worker what to do (retry, fail over, refund, report)
//! without knowing the vendor. Fan-out for `n > 1` happens above this seam.

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
}

impl ProviderError {
    /// Whether another attempt may succeed.
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

/// The providers chosen at boot.
#[derive(Clone)]
pub struct Registry {
    provider: Arc<dyn Provider>,
}

impl Registry {
    /// Gemini when a key is configured, otherwise the simulated provider for every model.
    pub fn from_config(rt: &Runtime) -> anyhow::Result<Registry> {
        let provider: Arc<dyn Provider> = if rt.gemini_keys.is_empty() {
            Arc::new(simulated::SimulatedProvider::new(rt.simulated_latency, rt.simulated_failure_rate))
        } else {
            Arc::new(gemini::GeminiProvider::new(rt)?)
        };
        Ok(Registry { provider })
    }

    pub fn with(provider: Arc<dyn Provider>) -> Registry {
        Registry { provider }
    }

    /// The provider serving `model` (one for all, until channels arrive).
    pub fn for_model(&self, _upstream_model: &str) -> &Arc<dyn Provider> {
        &self.provider
    }

    pub fn is_simulated(&self) -> bool {
        self.provider.name() == "simulated"
    }

    /// `owned_by` in `GET /v1/models`.
    pub fn owner_label(&self) -> &'static str {
        if self.is_simulated() { "simulated" } else { "google" }
    }
}
