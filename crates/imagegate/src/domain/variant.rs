//! `?format=&w=&h=&quality=` on image URLs: parsing, bounds, and the resulting size. Pure.

use super::request::OutputFormat;

/// Largest width or height a client may ask for.
pub const MAX_SIDE: u32 = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantSpec {
    pub format: OutputFormat,
    pub w: Option<u32>,
    pub h: Option<u32>,
    pub quality: Option<u8>,
}

impl VariantSpec {
    /// Output size: fit inside `w`×`h` keeping the aspect ratio, never larger than the original.
    pub fn target_size(&self, orig_w: u32, orig_h: u32) -> (u32, u32) {
        let (ow, oh) = (f64::from(orig_w.max(1)), f64::from(orig_h.max(1)));
        let sw = self.w.map_or(1.0, |w| f64::from(w) / ow);
        let sh = self.h.map_or(1.0, |h| f64::from(h) / oh);
        let scale = sw.min(sh).min(1.0);
        (((ow * scale).round() as u32).max(1), ((oh * scale).round() as u32).max(1))
    }

    /// The blob key suffix naming this variant for a given original size (so `w=99999` and
    /// `w=<original>` share one stored variant).
    pub fn key(&self, image_id: &str, orig_w: u32, orig_h: u32) -> String {
        let (w, h) = self.target_size(orig_w, orig_h);
        let q = self.quality.map(|q| q.to_string()).unwrap_or_else(|| "d".into());
        format!("{image_id}_{w}x{h}_q{q}.{}", self.format.ext())
    }
}

/// Parses the query of an image URL. `None` when no conversion is asked for.
/// Errors are `(param, message)`.
pub fn parse(
    format: Option<&str>,
    w: Option<&str>,
    h: Option<&str>,
    quality: Option<&str>,
    original: OutputFormat,
) -> Result<Option<VariantSpec>, (&'static str, String)> {
    if format.is_none() && w.is_none() && h.is_none() && quality.is_none() {
        return Ok(None);
    }
    let format = match format {
        None => original,
        Some(f) => {
            OutputFormat::parse(f).ok_or(("format", format!("Unsupported format '{f}'. Use webp, jpeg or png.")))?
        }
    };
    let side = |name: &'static str, v: Option<&str>| -> Result<Option<u32>, (&'static str, String)> {
        match v {
            None => Ok(None),
            Some(s) => match s.parse::<u32>() {
                Ok(n) if (1..=MAX_SIDE).contains(&n) => Ok(Some(n)),
                _ => Err((name, format!("'{name}' must be an integer from 1 to {MAX_SIDE}."))),
            },
        }
    };
    let quality = match quality {
        None => None,
        Some(q) => match q.parse::<u8>() {
            Ok(n) if (1..=100).contains(&n) => Some(n),
            _ => return Err(("quality", "'quality' must be an integer from 1 to 100.".into())),
        },
    };
    if quality.is_some() && format == OutputFormat::Png {
        return Err(("quality", "'quality' applies to webp and jpeg.".into()));
    }
    Ok(Some(VariantSpec { format, w: side("w", w)?, h: side("h", h)?, quality }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fits_inside_and_never_upscales() {
        let s = VariantSpec { format: OutputFormat::Webp, w: Some(256), h: None, quality: None };
        assert_eq!(s.target_size(2048, 1024), (256, 128));
        let s = VariantSpec { format: OutputFormat::Webp, w: Some(4000), h: Some(100), quality: None };
        assert_eq!(s.target_size(2048, 1024), (200, 100));
        let s = VariantSpec { format: OutputFormat::Webp, w: Some(8000), h: None, quality: None };
        assert_eq!(s.target_size(2048, 1024), (2048, 1024));
        assert_eq!(s.key("img_x", 2048, 1024), "img_x_2048x1024_qd.webp");
    }

    #[test]
    fn bad_values_name_their_param() {
        let p = |f, w, h, q| parse(f, w, h, q, OutputFormat::Jpeg);
        assert_eq!(p(None, None, None, None), Ok(None));
        assert_eq!(p(Some("gif"), None, None, None).unwrap_err().0, "format");
        assert_eq!(p(None, Some("0"), None, None).unwrap_err().0, "w");
        assert_eq!(p(None, Some("99999"), None, None).unwrap_err().0, "w");
        assert_eq!(p(None, None, Some("-5"), None).unwrap_err().0, "h");
        assert_eq!(p(Some("webp"), None, None, Some("101")).unwrap_err().0, "quality");
        assert_eq!(p(Some("png"), None, None, Some("80")).unwrap_err().0, "quality");
        let ok = p(Some("webp"), Some("256"), None, Some("70")).unwrap().unwrap();
        assert_eq!((ok.format, ok.w, ok.quality), (OutputFormat::Webp, Some(256), Some(70)));
        assert_eq!(
            p(None, Some("10"), None, None).unwrap().unwrap().format,
            OutputFormat::Jpeg,
            "keeps the original format"
        );
    }
}
