//! Variants: the first request for a `?format=&w=&h=&quality=` converts and stores it; later
//! ones are served from storage; concurrent first requests share one conversion.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::OnceCell;

use crate::app::App;
use crate::domain::now_millis;
use crate::domain::variant::VariantSpec;
use crate::imaging;
use crate::store::ImageRecord;

/// How a variant was obtained (the `x-imagegate-variant` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Converted by this request.
    Converted,
    /// Read from storage.
    Stored,
    /// Another request converted it while this one waited.
    Shared,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Converted => "converted",
            Source::Stored => "stored",
            Source::Shared => "shared",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VariantError {
    #[error("the original is gone")]
    Gone,
    #[error("conversion failed: {0}")]
    Failed(String),
}

type Flight = Arc<OnceCell<Result<Bytes, String>>>;

#[derive(Default)]
pub struct Variants {
    in_flight: Mutex<HashMap<String, Flight>>,
    conversions: AtomicU64,
}

impl Variants {
    /// Conversions made by this process since start.
    pub fn conversions(&self) -> u64 {
        self.conversions.load(Ordering::Relaxed)
    }

    /// The variant's bytes, its blob key and how they were obtained.
    pub async fn get(&self, app: &App, img: &ImageRecord, spec: &VariantSpec) -> Result<(Bytes, Source), VariantError> {
        let key = spec.key(&img.id, img.width, img.height);
        if app.store.has_variant(&img.id, &key).await.unwrap_or(false)
            && let Ok(bytes) = app.blobs.get(&key).await
        {
            return Ok((bytes, Source::Stored));
        }
        let (flight, leader) = {
            let Ok(mut map) = self.in_flight.lock() else {
                return Err(VariantError::Failed("variant table poisoned".into()));
            };
            match map.get(&key) {
                Some(f) => (f.clone(), false),
                None => {
                    let f: Flight = Arc::new(OnceCell::new());
                    map.insert(key.clone(), f.clone());
                    (f, true)
                }
            }
        };
        let result = flight.get_or_init(|| self.convert(app, img, spec, &key)).await.clone();
        if leader && let Ok(mut map) = self.in_flight.lock() {
            map.remove(&key);
        }
        match result {
            Ok(bytes) => Ok((bytes, if leader { Source::Converted } else { Source::Shared })),
            Err(e) if e == "gone" => Err(VariantError::Gone),
            Err(e) => Err(VariantError::Failed(e)),
        }
    }

    async fn convert(&self, app: &App, img: &ImageRecord, spec: &VariantSpec, key: &str) -> Result<Bytes, String> {
        let original = app
            .blobs
            .get(&img.blob_key)
            .await
            .map_err(|e| if e.is_not_found() { "gone".to_string() } else { e.to_string() })?;
        let spec2 = spec.clone();
        let (w, h) = spec.target_size(img.width, img.height);
        self.conversions.fetch_add(1, Ordering::Relaxed);
        let bytes = imaging::run_cpu(move || -> Result<Bytes, imaging::ImagingError> {
            let decoded = imaging::decode(&original)?;
            let resized = if (w, h) == (decoded.width(), decoded.height()) {
                decoded
            } else {
                decoded.resize_exact(w, h, image::imageops::FilterType::Triangle)
            };
            imaging::encode(&resized.into_rgb8(), spec2.format, spec2.quality)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
        // Stored best-effort: a failed write only costs a later re-conversion.
        if app.blobs.put(key, bytes.clone(), spec.format.mime()).await.is_ok() {
            let _ = app.store.add_variant(&img.id, key, bytes.len() as i64, now_millis()).await;
        }
        Ok(bytes)
    }
}
