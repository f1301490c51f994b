//! Prices per image by model family and resolution (USD), and what a request costs.

use serde::{Deserialize, Serialize};

use super::models::Family;
use super::sizes::Resolution;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Nano Banana Pro at 1K and 2K.
    pub pro_1k_2k: f64,
    pub pro_4k: f64,
    /// Nano Banana (Flash).
    pub flash: f64,
    /// OpenAI image models (gpt-image-1 at medium quality, 1024x1024).
    pub openai: f64,
    /// Multiplier for batch jobs (0.5: half price).
    pub batch_factor: f64,
}

impl PriceTable {
    pub fn per_image(&self, family: Family, res: Resolution) -> f64 {
        match (family, res) {
            (Family::Flash, _) => self.flash,
            (Family::OpenAi, _) => self.openai,
            (Family::Pro, Resolution::K4) => self.pro_4k,
            (Family::Pro, _) => self.pro_1k_2k,
        }
    }

    /// Cost of `images` images, rounded to a millionth of a dollar.
    pub fn cost(&self, family: Family, res: Resolution, images: u32) -> f64 {
        round6(self.per_image(family, res) * f64::from(images))
    }
}

/// What a task is charged when it ends with `delivered` of its `reserved_images` images made:
/// their `actual` price when known (a fallback model may be cheaper), never above the
/// reservation `reserved_usd`; else the reservation pro rata.
pub fn charge(reserved_usd: f64, reserved_images: i64, delivered: u32, actual: Option<f64>) -> f64 {
    let delivered = i64::from(delivered).min(reserved_images);
    match actual {
        Some(c) => round6(c.min(reserved_usd)),
        None if reserved_images > 0 => round6(reserved_usd * delivered as f64 / reserved_images as f64),
        None => 0.0,
    }
}

pub fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_per_image_by_family_and_resolution() {
        let p = PriceTable { pro_1k_2k: 0.134, pro_4k: 0.24, flash: 0.039, openai: 0.042, batch_factor: 0.5 };
        assert_eq!(p.cost(Family::Pro, Resolution::K2, 1), 0.134);
        assert_eq!(p.cost(Family::Pro, Resolution::K4, 2), 0.48);
        assert_eq!(p.cost(Family::Flash, Resolution::K1, 3), 0.117);
        assert_eq!(p.cost(Family::Pro, Resolution::K1, 10), 1.34);
    }
}
