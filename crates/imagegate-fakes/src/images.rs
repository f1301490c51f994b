//! Real, small-to-large test images: distinct per call, at the size asked.

use image::{Rgb, RgbImage};
use std::io::Cursor;

/// Encodes a `w`×`h` picture whose colours depend on `seed`, as JPEG or PNG.
pub fn picture(w: u32, h: u32, seed: u64, png: bool) -> Vec<u8> {
    let c = |shift: u32| ((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> shift) & 0xff) as u8;
    let (r, g, b) = (c(8), c(24), c(40));
    let img = RgbImage::from_fn(w, h, |x, y| Rgb([r ^ (x as u8), g ^ (y as u8), b]));
    let mut out = Cursor::new(Vec::new());
    let format = if png { image::ImageFormat::Png } else { image::ImageFormat::Jpeg };
    // Encoding an in-memory RGB image cannot fail for these formats; an empty Vec would be
    // caught by the tests that decode it.
    let _ = img.write_to(&mut out, format);
    out.into_inner()
}

/// A `w`×`h` PNG of deterministic noise: incompressible like a detailed photo, so its size is
/// what a real generated PNG weighs (1024×1024 ≈ 3.1 MB, 4.2 MB as base64).
pub fn noise_png(w: u32, h: u32, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64*: fast, deterministic, good enough to defeat PNG's compression.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
    };
    let img = RgbImage::from_fn(w, h, |_, _| Rgb([next(), next(), next()]));
    let mut out = Cursor::new(Vec::new());
    let _ = img.write_to(&mut out, image::ImageFormat::Png);
    out.into_inner()
}
