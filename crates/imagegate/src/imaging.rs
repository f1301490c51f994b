//! Image bytes: reading dimensions, decoding with limits (inputs are untrusted), encoding to
//! PNG, progressive JPEG and lossy WebP. CPU-heavy: call through `run_cpu`.

use bytes::Bytes;
use image::{DynamicImage, ImageReader, Limits, RgbImage};
use std::io::Cursor;

use crate::domain::request::OutputFormat;

/// Runs CPU-heavy image work on the blocking pool, at most one job per core at a time: more
/// would only add memory (each job holds full-size pixel buffers) without adding throughput.
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
    #[error("cannot encode image: {0}")]
    Encode(String),
}

/// The largest image we will decode (Gemini's biggest is 6336×2688).
fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(12_000);
    l.max_image_height = Some(12_000);
    l.max_alloc = Some(768 * 1024 * 1024);
    l
}

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, ImagingError> {
    let mut r = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(image::ImageError::IoError)?;
    r.limits(limits());
    Ok(r)
}

/// Width and height from the header, without decoding pixels.
pub fn dimensions(bytes: &[u8]) -> Result<(u32, u32), ImagingError> {
    Ok(reader(bytes)?.into_dimensions()?)
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

pub fn decode(bytes: &[u8]) -> Result<DynamicImage, ImagingError> {
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
    fn garbage_is_a_decode_error_not_a_panic() {
        assert!(dimensions(b"not an image").is_err());
        assert!(transcode(Bytes::from_static(b"\x89PNG\r\n\x1a\nbroken"), OutputFormat::Jpeg, None).is_err());
    }
}
