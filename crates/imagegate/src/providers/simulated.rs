//! The built-in simulated provider: ships in release so demos, tests and benchmarks run with no
//! upstream. It renders a real, deterministic image from the prompt at exactly the requested
//! size (JPEG for Pro models, PNG for Flash, as the real models answer), with configurable
//! latency and failure rate.
//!
//! Directives in the prompt script one call (handy for trying error paths by hand):
//! `[sim:refuse]` (content refusal), `[sim:error:503]` / `[sim:error:429]` / `[sim:error:500]`,
//! `[sim:delay:2s]` (latency for this call), `[sim:text]` (text-only answer).

use async_trait::async_trait;
use image::RgbImage;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use super::{GeneratedImage, Provider, ProviderError, ProviderRequest};
use crate::domain::models::Family;
use crate::domain::request::OutputFormat;
use crate::imaging;

pub struct SimulatedProvider {
    latency: Duration,
    failure_rate: f64,
}

impl SimulatedProvider {
    pub fn new(latency: Duration, failure_rate: f64) -> SimulatedProvider {
        SimulatedProvider { latency, failure_rate }
    }
}

fn directive<'a>(prompt: &'a str, name: &str) -> Option<&'a str> {
    let tag = format!("[sim:{name}");
    let start = prompt.find(&tag)? + tag.len();
    let rest = &prompt[start..];
    let end = rest.find(']')?;
    Some(rest[..end].trim_start_matches(':'))
}

#[async_trait]
impl Provider for SimulatedProvider {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn generate(&self, req: &ProviderRequest) -> Result<GeneratedImage, ProviderError> {
        let latency = directive(&req.prompt, "delay")
            .and_then(|d| crate::domain::duration::parse(d).ok())
            .unwrap_or(self.latency);
        if latency > req.deadline {
            tokio::time::sleep(req.deadline).await;
            return Err(ProviderError::Timeout(req.deadline));
        }
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if directive(&req.prompt, "refuse").is_some() {
            return Err(ProviderError::Rejected {
                reason: "IMAGE_SAFETY".into(),
                message: "The model declined to generate this image: IMAGE_SAFETY (simulated).".into(),
                prompt: false,
            });
        }
        if directive(&req.prompt, "text").is_some() {
            return Err(ProviderError::Rejected {
                reason: "TEXT_ONLY".into(),
                message: "The model answered with text instead of an image (simulated).".into(),
                prompt: false,
            });
        }
        if let Some(code) = directive(&req.prompt, "error") {
            return Err(scripted_error(code));
        }
        if self.failure_rate > 0.0 && rand::random::<f64>() < self.failure_rate {
            return Err(ProviderError::Overloaded {
                status: 503,
                message: "The model is overloaded (simulated).".into(),
            });
        }
        let format = match req.family {
            Family::Pro => OutputFormat::Jpeg,
            Family::Flash | Family::OpenAi => OutputFormat::Png,
        };
        let (prompt, index, w, h) = (req.prompt.clone(), req.index, req.width, req.height);
        // Baseline JPEG, as Gemini answers.
        let bytes = imaging::run_cpu(move || {
            let img = render(&prompt, index, w, h);
            imaging::encode_with(&img, format, Some(85), false)
        })
        .await
        .map_err(|e| ProviderError::Malformed { message: format!("renderer stopped: {e}") })?
        .map_err(|e| ProviderError::Malformed { message: e.to_string() })?;
        Ok(GeneratedImage {
            bytes,
            mime: format.mime().to_string(),
            text: None,
            // Gemini bills ~1 token per 4 prompt characters, 1120 image tokens at 1K/2K, 2000 at 4K.
            input_tokens: (req.prompt.len() as u64).div_ceil(4),
            output_tokens: if req.resolution == crate::domain::sizes::Resolution::K4 { 2000 } else { 1120 },
            signature: None,
        })
    }
}

fn scripted_error(code: &str) -> ProviderError {
    match code {
        "429" => ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(1)),
            message: "Resource exhausted (simulated).".into(),
        },
        "400" => ProviderError::Invalid { message: "Invalid argument (simulated).".into() },
        "403" => ProviderError::Auth { message: "Permission denied (simulated).".into() },
        other => ProviderError::Overloaded {
            status: other.parse().unwrap_or(503),
            message: "The model is overloaded (simulated).".into(),
        },
    }
}

/// A deterministic picture of the prompt: a diagonal gradient between two colours derived from
/// the prompt's hash, with soft rings around a point that moves with the image index, so the
/// `n` images of one request differ and the same prompt always gives the same image.
pub fn render(prompt: &str, index: u32, w: u32, h: u32) -> RgbImage {
    let mut hasher = DefaultHasher::new();
    prompt.hash(&mut hasher);
    index.hash(&mut hasher);
    let seed = hasher.finish();
    let byte = |i: u32| ((seed >> (i * 8)) & 0xff) as i32;
    let (a, b) = ([byte(0), byte(1), byte(2)], [byte(3), byte(4), byte(5)]);
    let (cx, cy) = ((byte(6) as u32 * w / 256) as i64, (byte(7) as u32 * h / 256) as i64);
    // Hot loop kept to table lookups and shifts: the gradient is precomputed per diagonal and
    // the ring width is a power of two.
    let span = (w + h).max(1) as i32;
    let gradient: Vec<[i32; 3]> = (0..span).map(|t| std::array::from_fn(|c| a[c] + (b[c] - a[c]) * t / span)).collect();
    let ring_shift = (w.max(h) / 16).max(4).ilog2();
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    for (y, row) in buf.chunks_exact_mut(w as usize * 3).enumerate() {
        let ay = (y as i64 - cy).abs();
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let ax = (x as i64 - cx).abs();
            // Octagonal distance estimate: no float math per pixel.
            let d = ax.max(ay) + ax.min(ay) / 2;
            let band = if (d >> ring_shift) & 1 == 0 { 24 } else { -24 };
            let g = &gradient[x + y];
            for c in 0..3 {
                px[c] = (g[c] + band).clamp(0, 255) as u8;
            }
        }
    }
    RgbImage::from_raw(w, h, buf).unwrap_or_else(|| RgbImage::new(w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sizes::Resolution;

    fn req(prompt: &str, index: u32) -> ProviderRequest {
        ProviderRequest {
            model: "gemini-3-pro-image-preview".into(),
            family: Family::Pro,
            prompt: prompt.into(),
            aspect_ratio: "16:9".into(),
            resolution: Resolution::K1,
            width: 1376,
            height: 768,
            index,
            deadline: Duration::from_secs(5),
            inputs: Default::default(),
            options: Default::default(),
            previews: None,
        }
    }

    #[tokio::test]
    async fn renders_a_real_jpeg_at_the_exact_size() {
        let p = SimulatedProvider::new(Duration::ZERO, 0.0);
        let img = p.generate(&req("a fox", 0)).await.unwrap();
        assert_eq!(img.mime, "image/jpeg");
        assert_eq!(imaging::dimensions(&img.bytes).unwrap(), (1376, 768));
    }

    #[test]
    fn same_prompt_same_image_other_index_other_image() {
        assert_eq!(render("fox", 0, 32, 32), render("fox", 0, 32, 32));
        assert_ne!(render("fox", 0, 32, 32), render("fox", 1, 32, 32));
        assert_ne!(render("fox", 0, 32, 32), render("owl", 0, 32, 32));
    }

    #[tokio::test]
    async fn directives_script_failures() {
        let p = SimulatedProvider::new(Duration::ZERO, 0.0);
        assert!(matches!(p.generate(&req("x [sim:refuse]", 0)).await, Err(ProviderError::Rejected { .. })));
        assert!(matches!(p.generate(&req("x [sim:error:429]", 0)).await, Err(ProviderError::RateLimited { .. })));
        assert!(matches!(
            p.generate(&req("x [sim:error:503]", 0)).await,
            Err(ProviderError::Overloaded { status: 503, .. })
        ));
        let mut slow = req("x [sim:delay:10s]", 0);
        slow.deadline = Duration::from_millis(20);
        assert!(matches!(p.generate(&slow).await, Err(ProviderError::Timeout(_))));
    }
}
