//! Gemini 3 Pro Image output sizes: 10 aspect ratios × {1K, 2K, 4K}, and how the OpenAI-style
//! `size` / `aspect_ratio` / `image_size` fields map onto them.

use std::fmt;

/// Output resolution tier. Gemini spells these with an uppercase K.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resolution {
    K1,
    K2,
    K4,
}

impl Resolution {
    pub const ALL: [Resolution; 3] = [Resolution::K1, Resolution::K2, Resolution::K4];

    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::K1 => "1K",
            Resolution::K2 => "2K",
            Resolution::K4 => "4K",
        }
    }

    /// Accepts `1K`/`2K`/`4K` (and lowercase, which Gemini itself would reject).
    pub fn parse(s: &str) -> Option<Resolution> {
        match s {
            "1K" | "1k" => Some(Resolution::K1),
            "2K" | "2k" => Some(Resolution::K2),
            "4K" | "4k" => Some(Resolution::K4),
            _ => None,
        }
    }
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The ten aspect ratios Gemini image models accept, with their pixel sizes per resolution
/// (from the Gemini 3 Pro Image documentation's size table).
pub const TABLE: [(&str, [(u32, u32); 3]); 10] = [
    ("1:1", [(1024, 1024), (2048, 2048), (4096, 4096)]),
    ("2:3", [(848, 1264), (1696, 2528), (3392, 5056)]),
    ("3:2", [(1264, 848), (2528, 1696), (5056, 3392)]),
    ("3:4", [(896, 1200), (1792, 2400), (3584, 4800)]),
    ("4:3", [(1200, 896), (2400, 1792), (4800, 3584)]),
    ("4:5", [(928, 1152), (1856, 2304), (3712, 4608)]),
    ("5:4", [(1152, 928), (2304, 1856), (4608, 3712)]),
    ("9:16", [(768, 1376), (1536, 2752), (3072, 5504)]),
    ("16:9", [(1376, 768), (2752, 1536), (5504, 3072)]),
    ("21:9", [(1584, 672), (3168, 1344), (6336, 2688)]),
];

/// A resolved output shape: what we ask the upstream for and what we expect back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    pub aspect_ratio: &'static str,
    pub resolution: Resolution,
    /// Flash models have their own 1K table.
    pub flash: bool,
    /// Models sized in exact pixels (OpenAI's): the size asked for.
    pub exact: Option<(u32, u32)>,
}

impl ImageShape {
    pub fn pixels(&self) -> (u32, u32) {
        if let Some(wh) = self.exact {
            return wh;
        }
        let px = if self.flash { flash_pixels(self.aspect_ratio) } else { pixels(self.aspect_ratio, self.resolution) };
        px.unwrap_or((1024, 1024))
    }
}

/// Sizes OpenAI's image models take (`auto` is answered at 1024x1024).
pub const OPENAI_SIZES: [(&str, (u32, u32), &str); 4] = [
    ("auto", (1024, 1024), "1:1"),
    ("1024x1024", (1024, 1024), "1:1"),
    ("1536x1024", (1536, 1024), "3:2"),
    ("1024x1536", (1024, 1536), "2:3"),
];

/// The canonical `&'static str` for a ratio the table knows.
pub fn ratio(s: &str) -> Option<&'static str> {
    TABLE.iter().find(|(r, _)| *r == s).map(|(r, _)| *r)
}

/// Gemini 2.5 Flash Image's 1K sizes (it has no 2K/4K).
pub const FLASH_TABLE: [(&str, (u32, u32)); 10] = [
    ("1:1", (1024, 1024)),
    ("2:3", (832, 1248)),
    ("3:2", (1248, 832)),
    ("3:4", (864, 1184)),
    ("4:3", (1184, 864)),
    ("4:5", (896, 1152)),
    ("5:4", (1152, 896)),
    ("9:16", (768, 1344)),
    ("16:9", (1344, 768)),
    ("21:9", (1536, 672)),
];

/// Pixel size of a Flash image at `ratio` (1K).
pub fn flash_pixels(ratio: &str) -> Option<(u32, u32)> {
    FLASH_TABLE.iter().find(|(r, _)| *r == ratio).map(|(_, wh)| *wh)
}

/// Pixel size of a Pro image at `ratio` and `res`.
pub fn pixels(ratio: &str, res: Resolution) -> Option<(u32, u32)> {
    let idx = Resolution::ALL.iter().position(|r| *r == res)?;
    TABLE.iter().find(|(r, _)| *r == ratio).map(|(_, sizes)| sizes[idx])
}

/// What the `size` field says about ratio and resolution; `None` parts are unspecified (`auto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeHint {
    pub aspect_ratio: Option<&'static str>,
    pub resolution: Option<Resolution>,
}

/// Supported `size` values for error messages.
pub const SUPPORTED_SIZES: &str =
    "auto, 1024x1024, 2048x2048, 4096x4096, 1536x1024, 1024x1536, or an exact Gemini size such as 1376x768 (16:9 1K)";

/// Parses the `size` field. OpenAI's landscape/portrait sizes map to the nearest Gemini ratio
/// at 1K (Gemini cannot produce 1536x1024 exactly; it returns 1264x848 for 3:2).
pub fn parse_size(s: &str) -> Option<SizeHint> {
    match s {
        "auto" => {
            return Some(SizeHint { aspect_ratio: None, resolution: None });
        }
        "1536x1024" => return Some(hint("3:2", Resolution::K1)),
        "1024x1536" => return Some(hint("2:3", Resolution::K1)),
        "1792x1024" => return Some(hint("16:9", Resolution::K1)),
        "1024x1792" => return Some(hint("9:16", Resolution::K1)),
        "512x512" | "256x256" => return Some(hint("1:1", Resolution::K1)),
        _ => {}
    }
    let (w, h) = s.split_once('x')?;
    let w: u32 = w.parse().ok()?;
    let h: u32 = h.parse().ok()?;
    for (ratio, sizes) in TABLE.iter() {
        for (i, (tw, th)) in sizes.iter().enumerate() {
            if (*tw, *th) == (w, h) {
                return Some(hint(ratio, Resolution::ALL[i]));
            }
        }
    }
    FLASH_TABLE.iter().find(|(_, wh)| *wh == (w, h)).map(|(ratio, _)| hint(ratio, Resolution::K1))
}

fn hint(ratio: &'static str, res: Resolution) -> SizeHint {
    SizeHint { aspect_ratio: Some(ratio), resolution: Some(res) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_size_round_trips_through_parse_size() {
        for (ratio, sizes) in TABLE.iter() {
            for (i, (w, h)) in sizes.iter().enumerate() {
                let h = parse_size(&format!("{w}x{h}")).unwrap();
                assert_eq!(h.aspect_ratio, Some(*ratio));
                assert_eq!(h.resolution, Some(Resolution::ALL[i]));
            }
        }
    }

    #[test]
    fn openai_sizes_map_to_the_nearest_gemini_shape() {
        assert_eq!(parse_size("1536x1024").unwrap().aspect_ratio, Some("3:2"));
        assert_eq!(parse_size("1024x1536").unwrap().aspect_ratio, Some("2:3"));
        assert_eq!(parse_size("auto").unwrap().resolution, None);
        assert_eq!(parse_size("2048x2048").unwrap().resolution, Some(Resolution::K2));
    }

    #[test]
    fn unknown_sizes_are_refused() {
        for s in ["13x7", "1024", "x", "1024x1024x1", "-1x-1", "", "99999999999x1"] {
            assert!(parse_size(s).is_none(), "{s}");
        }
    }

    #[test]
    fn the_table_matches_the_documented_fixture() {
        let text = include_str!("../../../imagegate-fakes/fixtures/gemini/pro-image-sizes.json");
        let v: serde_json::Value = serde_json::from_str(text).unwrap();
        let sizes = v["sizes"].as_object().unwrap();
        assert_eq!(sizes.len(), 10);
        for (ratio, by_res) in sizes {
            for res in Resolution::ALL {
                let wh = &by_res[res.as_str()];
                let expected = (wh[0].as_u64().unwrap() as u32, wh[1].as_u64().unwrap() as u32);
                assert_eq!(pixels(ratio, res), Some(expected), "{ratio} {res}");
            }
        }
    }
}
