//! Variants: the first request for a `?format=&w=&h=&quality=` converts and stores it; later
//! ones are served from storage; concurrent first requests share one conversion.
//!
//! Anyone holding an image URL can ask for variants, so each is bounded: values are snapped to
//! a finite set (`domain::variant::Rules`), an image has at most `max_variants_per_image`, and
//! conversions run on the bounded [`Pool`](crate::imaging::Pool), refused with `Busy` when its
//! queue is full. A conversion runs on its own task, detached from the requests waiting for
//! it: when they go away it still finishes and is stored (the work is not wasted), and it takes
//! itself out of the single-flight table whatever its outcome, so a failure is never cached.

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::blobs::BlobStore;
use crate::domain::now_millis;
use crate::domain::variant::VariantSpec;
use crate::imaging::pool::Ticket;
use crate::imaging::{self, Pool, PoolError};
use crate::store::{ImageRecord, Store};

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

#[derive(Debug, Clone, thiserror::Error)]
pub enum VariantError {
    #[error("the original is gone")]
    Gone,
    /// Every conversion slot is busy and the queue is full.
    #[error("every conversion slot is busy")]
    Busy,
    /// The image already has as many variants as allowed.
    #[error("the image has {0} variants already")]
    TooMany(u32),
    #[error("conversion failed: {0}")]
    Failed(String),
}

/// A variant's bytes: in hand (just converted), or in storage with their length.
pub enum Variant {
    Bytes(Bytes),
    Stored { blob_key: String, len: u64 },
}

type Flight = Shared<BoxFuture<'static, Result<Bytes, VariantError>>>;

/// What a conversion needs, owned (it outlives the request that started it).
#[derive(Clone)]
pub struct Converter {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub pool: Arc<Pool>,
    pub max_per_image: u32,
}

#[derive(Default)]
pub struct Variants {
    /// Conversions in flight, by variant blob key.
    in_flight: Arc<Mutex<HashMap<String, Flight>>>,
    conversions: Arc<AtomicU64>,
}

/// Takes a conversion out of the single-flight table when its task ends, however it ends.
struct Forget {
    table: Arc<Mutex<HashMap<String, Flight>>>,
    key: String,
}

impl Drop for Forget {
    fn drop(&mut self) {
        if let Ok(mut t) = self.table.lock() {
            t.remove(&self.key);
        }
    }
}

impl Variants {
    /// Conversions started by this process since start.
    pub fn conversions(&self) -> u64 {
        self.conversions.load(Ordering::Relaxed)
    }

    /// The variant, and how it was obtained.
    pub async fn get(
        &self,
        cx: &Converter,
        img: &ImageRecord,
        spec: &VariantSpec,
    ) -> Result<(Variant, Source), VariantError> {
        let key = spec.key(&img.id, img.width, img.height);
        let stored = cx.store.variants(&img.id).await.map_err(|e| VariantError::Failed(e.to_string()))?;
        if let Some((blob_key, len)) = stored.iter().find(|(k, _)| *k == key) {
            return Ok((Variant::Stored { blob_key: blob_key.clone(), len: (*len).max(0) as u64 }, Source::Stored));
        }
        let (flight, source) = {
            let Ok(mut table) = self.in_flight.lock() else {
                return Err(VariantError::Failed("variant table poisoned".into()));
            };
            match table.get(&key) {
                Some(f) => (f.clone(), Source::Shared),
                None => {
                    let prefix = format!("{}_", img.id);
                    let converting = table.keys().filter(|k| k.starts_with(&prefix)).count();
                    if stored.len() + converting >= cx.max_per_image as usize {
                        return Err(VariantError::TooMany(cx.max_per_image));
                    }
                    let flight = self.start(cx, img, spec, &key)?;
                    table.insert(key.clone(), flight.clone());
                    (flight, Source::Converted)
                }
            }
        };
        Ok((Variant::Bytes(flight.await?), source))
    }

    /// Starts the conversion on its own task (after taking a place in the pool's queue, so a full
    /// queue is refused before anything starts).
    fn start(&self, cx: &Converter, img: &ImageRecord, spec: &VariantSpec, key: &str) -> Result<Flight, VariantError> {
        // The place is taken here and handed to the task, which holds it until a slot is free.
        let ticket = cx.pool.reserve().map_err(|_| VariantError::Busy)?;
        let forget = Forget { table: Arc::clone(&self.in_flight), key: key.to_string() };
        let (cx, img, spec, key) = (cx.clone(), img.clone(), spec.clone(), key.to_string());
        let conversions = Arc::clone(&self.conversions);
        let task = tokio::spawn(async move {
            let _forget = forget;
            conversions.fetch_add(1, Ordering::Relaxed);
            let started = std::time::Instant::now();
            let done = convert(&cx, &img, &spec, &key, ticket).await;
            crate::stats::conversion(if done.is_ok() { "ok" } else { "failed" }, started.elapsed());
            done
        });
        let flight: BoxFuture<'static, Result<Bytes, VariantError>> =
            async move { task.await.unwrap_or_else(|e| Err(VariantError::Failed(format!("conversion stopped: {e}")))) }
                .boxed();
        Ok(flight.shared())
    }
}

async fn convert(
    cx: &Converter,
    img: &ImageRecord,
    spec: &VariantSpec,
    key: &str,
    ticket: Ticket,
) -> Result<Bytes, VariantError> {
    let original = cx
        .blobs
        .get(&img.blob_key)
        .await
        .map_err(|e| if e.is_not_found() { VariantError::Gone } else { VariantError::Failed(e.to_string()) })?;
    let (w, h) = spec.target_size(img.width, img.height);
    let (format, quality) = (spec.format, spec.quality);
    let converted = cx
        .pool
        .run_reserved(ticket, move || -> Result<Bytes, imaging::ImagingError> {
            let decoded = imaging::decode(&original)?;
            let resized = if (w, h) == (decoded.width(), decoded.height()) {
                decoded
            } else {
                decoded.resize_exact(w, h, image::imageops::FilterType::Triangle)
            };
            imaging::encode(&resized.into_rgb8(), format, quality)
        })
        .await
        .map_err(|e| match e {
            PoolError::Busy => VariantError::Busy,
            PoolError::Stopped(e) => VariantError::Failed(e.to_string()),
        })?
        .map_err(|e| VariantError::Failed(e.to_string()))?;
    // Stored best-effort: a failed write only costs a later re-conversion.
    if cx.blobs.put(key, converted.clone(), spec.format.mime()).await.is_ok() {
        let _ = cx.store.add_variant(&img.id, key, converted.len() as i64, now_millis()).await;
    }
    Ok(converted)
}
