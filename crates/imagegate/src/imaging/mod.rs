//! Image bytes: reading dimensions, decoding with limits (inputs are untrusted: upstream
//! answers, and later uploads), encoding to PNG, progressive JPEG and lossy WebP. CPU-heavy:
//! conversions run on the bounded [`pool::Pool`].

pub mod pool;

use bytes::Bytes;
use image::{DynamicImage, ImageReader, Limits, RgbImage};
use std::io::Cursor;

use crate::domain::request::OutputFormat;

pub use pool::{Pool, PoolError};

/// The most pixels an image may have to be decoded (or accepted at all): Gemini's largest
/// output is 6336×2688 (17 Mpx) and 4096² is 16.8 Mpx; this leaves room, and keeps one decode
/// under ~200 MB. A header claiming more is refused before any pixel is decoded
/// (decompression bombs).
pub const MAX_PIXELS: u64 = 40_000_000;
/// The longest side accepted.
pub const MAX_SIDE: u32 = 16_384;

/// Runs CPU-heavy work on the blocking pool, at most one job per core at a time (the simulated
/// provider's rendering; conversions go through the app's [`Pool`] instead).
pub async fn run_cpu<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, tokio::task::JoinError> {
    static SLOTS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let slots = SLOTS.get_or_init(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2))
    });
    let _permit = slots.acquire().await;
    tokio::task::spawn_blocking(f).await
}

#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    #[error("cannot read image: {0}")]
    Decode(#[from] image::ImageError),
    #[error("image is {0}x{1}: more pixels than the {MAX_PIXELS} allowed")]
    TooLarge(u32, u32),
    #[error("cannot encode image: {0}")]
    Encode(String),
}

/// The decoder's own bounds: sides, and memory for one decode (RGBA of `MAX_PIXELS`, plus
/// room for the decoder's buffers).
fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(MAX_SIDE);
    l.max_image_height = Some(MAX_SIDE);
    l.max_alloc = Some(MAX_PIXELS * 4 + 64 * 1024 * 1024);
    l
}

fn check_pixels((w, h): (u32, u32)) -> Result<(u32, u32), ImagingError> {
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Err(ImagingError::TooLarge(w, h));
    }
    Ok((w, h))
}

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, ImagingError> {
    let mut r = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(image::ImageError::IoError)?;
    r.limits(limits());
    Ok(r)
}

/// Width and height from the header, without decoding pixels; an image over the pixel limit is
/// an error here already.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), ImagingError> {
    check_pixels(reader(bytes)?.into_dimensions()?)
}

/// The format the bytes are in, sniffed from their magic number.
pub fn sniff(bytes: &[u8]) -> Option<OutputFormat> {
    match image::guess_format(bytes).ok()? {
        image::ImageFormat::Png => Some(OutputFormat::Png),
        image::ImageFormat::Jpeg => Some(OutputFormat::Jpeg),
        image::ImageFormat::WebP => Some(OutputFormat::Webp),
        _ => None,
    }
}

/// Decodes, after checking the header's size against the pixel limit.
pub fn decode(bytes: &[u8]) -> Result<DynamicImage, ImagingError> {
    dimensions(bytes)?;
    Ok(reader(bytes)?.decode()?)
}

/// Re-encodes `bytes` as `to` (quality 0..=100 for JPEG/WebP; defaults 90 and 80).
/// Returns the input unchanged when it is already in that format and no quality is asked.
pub fn transcode(bytes: Bytes, to: OutputFormat, quality: Option<u8>) -> Result<Bytes, ImagingError> {
    if sniff(&bytes) == Some(to) && quality.is_none() {
        return Ok(bytes);
    }
    let img = decode(&bytes)?;
    encode(&img.into_rgb8(), to, quality)
}

/// Encodes for delivery: JPEG is progressive (renders coarse-to-fine on slow links).
pub fn encode(rgb: &RgbImage, to: OutputFormat, quality: Option<u8>) -> Result<Bytes, ImagingError> {
    encode_with(rgb, to, quality, true)
}

pub fn encode_with(
    rgb: &RgbImage,
    to: OutputFormat,
    quality: Option<u8>,
    progressive: bool,
) -> Result<Bytes, ImagingError> {
    let (w, h) = rgb.dimensions();
    match to {
        OutputFormat::Png => {
            let mut out = Vec::new();
            let enc = image::codecs::png::PngEncoder::new_with_quality(
                &mut out,
                image::codecs::png::CompressionType::Fast,
                image::codecs::png::FilterType::Adaptive,
            );
            rgb.write_with_encoder(enc)?;
            Ok(Bytes::from(out))
        }
        OutputFormat::Jpeg => {
            let (w16, h16) = (u16::try_from(w), u16::try_from(h));
            let (Ok(w16), Ok(h16)) = (w16, h16) else {
                return Err(ImagingError::Encode("image too large for JPEG".into()));
            };
            let mut out = Vec::new();
            let mut enc = jpeg_encoder::Encoder::new(&mut out, quality.unwrap_or(90).max(1));
            enc.set_progressive(progressive);
            enc.encode(rgb.as_raw(), w16, h16, jpeg_encoder::ColorType::Rgb)
                .map_err(|e| ImagingError::Encode(e.to_string()))?;
            Ok(Bytes::from(out))
        }
        OutputFormat::Webp => {
            let enc = webp::Encoder::from_rgb(rgb.as_raw(), w, h);
            let mem = enc
                .encode_simple(false, f32::from(quality.unwrap_or(80)))
                .map_err(|e| ImagingError::Encode(format!("webp: {e:?}")))?;
            Ok(Bytes::copy_from_slice(&mem))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_round_trips_with_its_size() {
        let img = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 128]));
        for f in [OutputFormat::Png, OutputFormat::Jpeg, OutputFormat::Webp] {
            let bytes = encode(&img, f, None).unwrap();
            assert_eq!(sniff(&bytes), Some(f));
            assert_eq!(dimensions(&bytes).unwrap(), (64, 48));
            let again = transcode(bytes.clone(), OutputFormat::Png, None).unwrap();
            assert_eq!(sniff(&again), Some(OutputFormat::Png));
        }
    }

    #[test]
    fn a_header_claiming_too_many_pixels_is_refused_before_decoding() {
        // A PNG signature and an IHDR chunk claiming 60000x60000 (its CRC is not checked before
        // the size is read); no pixel data follows.
        let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
        png.extend_from_slice(&60_000u32.to_be_bytes());
        png.extend_from_slice(&60_000u32.to_be_bytes());
        png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
        assert!(dimensions(&png).is_err());
        assert!(decode(&png).is_err());
        assert!(transcode(Bytes::from(png), OutputFormat::Jpeg, None).is_err());
    }

    #[test]
    fn garbage_is_a_decode_error_not_a_panic() {
        assert!(dimensions(b"not an image").is_err());
        assert!(transcode(Bytes::from_static(b"\x89PNG\r\n\x1a\nbroken"), OutputFormat::Jpeg, None).is_err());
    }
}
