//! `?format=&w=&h=&quality=` on image URLs: parsing, bounds, normalisation to a finite set of
//! variants, and the resulting size. Pure.

use super::request::OutputFormat;

/// Largest width or height a client may ask for.
pub const MAX_SIDE: u32 = 8192;

/// How asked-for values are normalised, so that an image has a finite set of variants however
/// many different URLs are asked for (`?w=1`, `?w=2`, … would otherwise each be one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Sizes, ascending: a width or height is rounded up to the next one (a size above the
    /// largest means "no limit": the original's).
    pub sizes: Vec<u32>,
    /// Qualities, ascending: a quality is rounded to the nearest.
    pub qualities: Vec<u8>,
}

impl Rules {
    fn snap_side(&self, n: u32) -> Option<u32> {
        self.sizes.iter().copied().find(|s| *s >= n)
    }

    fn snap_quality(&self, q: u8) -> u8 {
        self.qualities.iter().copied().min_by_key(|x| (x.abs_diff(q), std::cmp::Reverse(*x))).unwrap_or(q)
    }
}

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
    rules: &Rules,
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
    Ok(Some(VariantSpec {
        format,
        w: side("w", w)?.and_then(|n| rules.snap_side(n)),
        h: side("h", h)?.and_then(|n| rules.snap_side(n)),
        quality: quality.map(|q| rules.snap_quality(q)),
    }))
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

    fn rules() -> Rules {
        Rules { sizes: vec![64, 128, 256, 320, 512, 1024, 2048], qualities: vec![50, 75, 90] }
    }

    #[test]
    fn asked_values_are_snapped_to_a_finite_set() {
        let p = |w: &str| parse(None, Some(w), None, None, OutputFormat::Jpeg, &rules()).unwrap().unwrap();
        assert_eq!(p("1").w, Some(64));
        assert_eq!(p("300").w, Some(320));
        assert_eq!(p("320").w, Some(320));
        assert_eq!(p("3000").w, None, "above the largest step: the original size");
        let distinct: std::collections::BTreeSet<_> = (1..=8192).map(|w| p(&w.to_string()).w).collect();
        assert_eq!(distinct.len(), rules().sizes.len() + 1);
        let q = |q: &str| parse(Some("webp"), None, None, Some(q), OutputFormat::Jpeg, &rules()).unwrap().unwrap();
        assert_eq!(q("1").quality, Some(50));
        assert_eq!(q("80").quality, Some(75));
        assert_eq!(q("83").quality, Some(90), "the nearest step");
        assert_eq!(q("100").quality, Some(90));
    }

    #[test]
    fn bad_values_name_their_param() {
        let r = rules();
        let p = |f, w, h, q| parse(f, w, h, q, OutputFormat::Jpeg, &r);
        assert_eq!(p(None, None, None, None), Ok(None));
        assert_eq!(p(Some("gif"), None, None, None).unwrap_err().0, "format");
        assert_eq!(p(None, Some("0"), None, None).unwrap_err().0, "w");
        assert_eq!(p(None, Some("99999"), None, None).unwrap_err().0, "w");
        assert_eq!(p(None, None, Some("-5"), None).unwrap_err().0, "h");
        assert_eq!(p(Some("webp"), None, None, Some("101")).unwrap_err().0, "quality");
        assert_eq!(p(Some("png"), None, None, Some("80")).unwrap_err().0, "quality");
        let ok = p(Some("webp"), Some("256"), None, Some("75")).unwrap().unwrap();
        assert_eq!((ok.format, ok.w, ok.quality), (OutputFormat::Webp, Some(256), Some(75)));
        assert_eq!(
            p(None, Some("10"), None, None).unwrap().unwrap().format,
            OutputFormat::Jpeg,
            "keeps the original format"
        );
    }
}
