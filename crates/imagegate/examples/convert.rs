//! The gateway's image conversion as a command, for `bench/run.sh convert` (compared with
//! libvips on the same files). Same code path as `GET /images/{id}?format=…`: decode with
//! limits, then encode (lossy WebP, progressive JPEG, PNG).
//!
//!   convert IN OUT.webp|OUT.jpeg|OUT.png [QUALITY]
//!   convert --make-inputs DIR SIZE      writes DIR/input.png and DIR/input.jpeg (photo-like)

#![allow(clippy::print_stderr)]

use bytes::Bytes;
use image::{Rgb, RgbImage};
use imagegate::domain::request::OutputFormat;
use imagegate::imaging;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, dir, size] if flag == "--make-inputs" => make_inputs(dir, size.parse()?),
        [input, output, rest @ ..] => {
            let quality = rest.first().map(|q| q.parse::<u8>()).transpose()?;
            let to = match output.rsplit('.').next() {
                Some("webp") => OutputFormat::Webp,
                Some("jpeg" | "jpg") => OutputFormat::Jpeg,
                Some("png") => OutputFormat::Png,
                _ => anyhow::bail!("OUT must end in .webp, .jpeg or .png"),
            };
            let bytes = Bytes::from(std::fs::read(input)?);
            let decoded = imaging::decode(&bytes)?;
            let out = imaging::encode(&decoded.into_rgb8(), to, quality)?;
            std::fs::write(output, out)?;
            Ok(())
        }
        _ => {
            eprintln!("convert IN OUT.webp|OUT.jpeg|OUT.png [QUALITY] | convert --make-inputs DIR SIZE");
            std::process::exit(2);
        }
    }
}

/// Smooth gradients with fine detail and a little noise: compresses like a photograph, not
/// like a flat test card or pure noise.
fn make_inputs(dir: &str, size: u32) -> anyhow::Result<()> {
    let mut state: u32 = 0x9E37_79B9;
    let img = RgbImage::from_fn(size, size, |x, y| {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % 12) as f32 - 6.0;
        let (fx, fy) = (x as f32 / size as f32, y as f32 / size as f32);
        let ring = ((fx - 0.5).hypot(fy - 0.5) * 60.0).sin() * 40.0;
        let wave = ((fx * 23.0).sin() * (fy * 17.0).cos()) * 50.0;
        let c = |base: f32| (base + ring + wave + n).clamp(0.0, 255.0) as u8;
        Rgb([c(90.0 + 100.0 * fx), c(60.0 + 120.0 * fy), c(160.0 - 80.0 * fx * fy)])
    });
    std::fs::create_dir_all(dir)?;
    std::fs::write(format!("{dir}/input.png"), imaging::encode_with(&img, OutputFormat::Png, None, false)?)?;
    std::fs::write(format!("{dir}/input.jpeg"), imaging::encode_with(&img, OutputFormat::Jpeg, Some(90), false)?)?;
    Ok(())
}
