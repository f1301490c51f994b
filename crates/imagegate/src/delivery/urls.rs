//! Image URLs as clients get them, per the configured mode: the gateway's own `/images/…`, a
//! public base (CDN, public bucket), or presigned S3 URLs. Presigned URLs expire, so every
//! place that hands a stored result out again (task reads and lists, SSE events, webhook
//! payloads, idempotent replays) signs its URLs afresh through [`ImageUrls::refresh`].

use serde_json::{Value, json};
use std::sync::Arc;

use crate::blobs::BlobStore;
use crate::config::UrlMode;
use crate::domain::now_secs;
use crate::domain::request::OutputFormat;

#[derive(Clone)]
pub struct ImageUrls {
    mode: UrlMode,
    /// Base of the gateway's own URLs (`{public_url}/images/{key}`).
    public_url: String,
    blobs: Arc<dyn BlobStore>,
}

impl ImageUrls {
    pub fn new(mode: UrlMode, public_url: String, blobs: Arc<dyn BlobStore>) -> ImageUrls {
        ImageUrls { mode, public_url, blobs }
    }

    /// The URL of the stored object `key`, and when it stops working if sooner than the image's
    /// expiry (presigned URLs).
    pub async fn url_for(&self, key: &str) -> (String, Option<i64>) {
        match &self.mode {
            UrlMode::Gateway => (format!("{}/images/{key}", self.public_url), None),
            UrlMode::Public(base) => (format!("{base}/{key}"), None),
            UrlMode::Presigned(ttl) => match self.blobs.presign(key, *ttl).await {
                Ok(Some(url)) => (url, Some(now_secs() + ttl.as_secs() as i64)),
                // Checked at boot; should a signature fail, the gateway can still serve it.
                _ => (format!("{}/images/{key}", self.public_url), None),
            },
        }
    }

    /// Whether URLs expire before their image (and must be signed afresh when handed out again).
    pub fn expire(&self) -> bool {
        matches!(self.mode, UrlMode::Presigned(_))
    }

    /// In presigned mode, signs each image URL of a stored result (`{"data": [{id,
    /// content_type, url, …}]}`) afresh; other modes' URLs do not expire before their image.
    pub async fn refresh(&self, result: &mut Value) {
        if !self.expire() {
            return;
        }
        let Some(items) = result.get_mut("data").and_then(|d| d.as_array_mut()) else { return };
        for item in items {
            let (Some(id), Some(format)) = (
                item.get("id").and_then(|v| v.as_str()),
                item.get("content_type").and_then(|v| v.as_str()).and_then(OutputFormat::from_mime),
            ) else {
                continue;
            };
            let (url, expires) = self.url_for(&format!("{id}.{}", format.ext())).await;
            item["url"] = json!(url);
            item["url_expires_at"] = json!(expires);
        }
    }

    /// `refresh` for the result inside a rendered task object (`{"result": …}`).
    pub async fn refresh_task(&self, task: &mut Value) {
        if let Some(result) = task.get_mut("result").filter(|r| !r.is_null()) {
            self.refresh(result).await;
        }
    }
}
