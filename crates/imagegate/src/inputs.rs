//! A task's input images: what a request names (an image id of the same key, a `data:` URL)
//! turned into bytes stored in the blob store before the task is written, so that every try,
//! failover and restart sends exactly these bytes and the client is never needed again.
//! Stored content-addressed per key (`inp_{key}_{sha256}.{ext}`): the same photo given to
//! many tasks is stored once.

use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::blobs::BlobStore;
use crate::domain::ids;
use crate::egress::Resolver;
use crate::store::{InputRecord, Store, StoreError};

/// Sizes and sources input images may have (`[inputs]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct InputLimits {
    /// Body limit of the routes that take input images (the rest keep `server.max_body_bytes`).
    pub max_body_bytes: usize,
    /// One input image at most (decoded).
    pub max_image_bytes: usize,
    /// All of one request's inputs at most.
    pub max_total_bytes: usize,
    /// `https` references may resolve to private addresses, and plain `http` is taken.
    pub allow_private_urls: bool,
}

impl Default for InputLimits {
    fn default() -> InputLimits {
        InputLimits {
            max_body_bytes: 140 * 1024 * 1024,
            max_image_bytes: 20 * 1024 * 1024,
            max_total_bytes: 100 * 1024 * 1024,
            allow_private_urls: false,
        }
    }
}

/// Why an input was refused; `param` names it (`reference_images[2]`, `image[3]`).
#[derive(Debug)]
pub enum InputError {
    /// No image of this key by that id (or its bytes are gone).
    NotFound {
        param: String,
        message: String,
    },
    Invalid {
        param: String,
        message: String,
    },
    /// An `https` reference that may not be fetched, or could not be.
    Url {
        param: String,
        message: String,
    },
    Store(StoreError),
    Blob(String),
}

impl From<StoreError> for InputError {
    fn from(e: StoreError) -> InputError {
        InputError::Store(e)
    }
}

fn invalid(param: &str, message: impl Into<String>) -> InputError {
    InputError::Invalid { param: param.to_string(), message: message.into() }
}

/// Where one request's inputs are kept, for how long, and what they have added up to so far.
pub struct Inputs<'a> {
    pub store: &'a Arc<dyn Store>,
    pub blobs: &'a Arc<dyn BlobStore>,
    /// The SSRF-guarded client for `https` references, and the resolver its checks use.
    pub fetcher: &'a reqwest::Client,
    pub resolver: &'a dyn Resolver,
    pub limits: InputLimits,
    /// Unix seconds the inputs are kept until (the task's retention).
    pub expires_at: i64,
    /// Bytes stored for this request so far.
    pub total: usize,
}

impl Inputs<'_> {
    /// Stores one input a request names (an `img_` id of `owner`, a `data:` URL, an `https`
    /// URL) as input `position` of the task `task_id`.
    pub async fn store_reference(
        &mut self,
        owner: &str,
        task_id: &str,
        position: u32,
        reference: &str,
        param: &str,
        now_ms: i64,
    ) -> Result<InputRecord, InputError> {
        let bytes = if reference.starts_with("img_") {
            self.referenced_image(owner, reference, param).await?
        } else if reference.starts_with("data:") {
            decode_data_url(reference, param, self.limits.max_image_bytes)?
        } else {
            self.fetch(reference, param).await?
        };
        self.store_bytes(owner, task_id, position, bytes, param, now_ms).await
    }

    /// Stores one input sent inline as base64 (Gemini's `inlineData`).
    pub async fn store_base64(
        &mut self,
        owner: &str,
        task_id: &str,
        position: u32,
        data: &str,
        param: &str,
        now_ms: i64,
    ) -> Result<InputRecord, InputError> {
        if data.len() / 4 * 3 > self.limits.max_image_bytes + 3 {
            return Err(invalid(param, "The image is larger than an input image may be."));
        }
        // Standard base64, or its URL-safe alphabet (some clients' JSON encoders use it).
        let data = data.trim();
        let bytes = base64_simd::STANDARD
            .decode_to_vec(data)
            .or_else(|_| base64_simd::URL_SAFE.decode_to_vec(data))
            .map(Bytes::from)
            .map_err(|_| invalid(param, "The image data is not valid base64."))?;
        self.store_bytes(owner, task_id, position, bytes, param, now_ms).await
    }

    async fn referenced_image(&self, owner: &str, id: &str, param: &str) -> Result<Bytes, InputError> {
        let not_found = || InputError::NotFound {
            param: param.to_string(),
            message: format!("No image '{id}' of this API key (or it has expired)."),
        };
        let image = self.store.get_image(id).await?.filter(|i| i.owner == owner).ok_or_else(not_found)?;
        // Its size is on record: an image too large to be an input is refused unread.
        self.check_size(image.bytes.max(0) as usize, param)?;
        self.blobs
            .get(&image.blob_key)
            .await
            .map_err(|e| if e.is_not_found() { not_found() } else { InputError::Blob(e.to_string()) })
    }

    /// Fetches an `https` reference once, through the guarded client (the address checked
    /// before connecting, redirects re-checked), reading no more than an input may be.
    async fn fetch(&self, url: &str, param: &str) -> Result<Bytes, InputError> {
        let invalid = |param: &str, message: String| InputError::Url { param: param.to_string(), message };
        let allow_private = self.limits.allow_private_urls;
        if !allow_private && !url.starts_with("https://") {
            return Err(invalid(param, "An input image URL must be https.".into()));
        }
        let checked = crate::egress::guard::check_target(self.resolver, url, allow_private)
            .await
            .map_err(|e| invalid(param, format!("The URL {e}.")))?;
        let resp = self
            .fetcher
            .get(checked)
            .header(reqwest::header::ACCEPT, "image/png, image/jpeg, image/webp")
            .send()
            .await
            .map_err(|e| invalid(param, format!("The image could not be fetched: {}.", describe(&e))))?;
        if !resp.status().is_success() {
            return Err(invalid(param, format!("Fetching the image answered {}.", resp.status())));
        }
        crate::egress::read_capped(resp, self.limits.max_image_bytes).await.map_err(|e| match e {
            crate::egress::ReadError::TooLarge(n) => InputError::Invalid {
                param: param.to_string(),
                message: format!("The image is larger than an input image may be ({n} bytes)."),
            },
            crate::egress::ReadError::Network(e) => {
                invalid(param, format!("The image could not be fetched: {}.", describe(&e)))
            }
        })
    }

    fn check_size(&self, size: usize, param: &str) -> Result<(), InputError> {
        let max = self.limits.max_image_bytes;
        if size > max {
            return Err(invalid(param, format!("The image is {size} bytes; an input image may be at most {max}.")));
        }
        let total = self.limits.max_total_bytes;
        if self.total + size > total {
            return Err(invalid(
                param,
                format!("The input images add up to more than {total} bytes, the most one request may carry."),
            ));
        }
        Ok(())
    }

    /// Checks the bytes are an image within the limits and stores them (once per key).
    pub async fn store_bytes(
        &mut self,
        owner: &str,
        task_id: &str,
        position: u32,
        bytes: Bytes,
        param: &str,
        now_ms: i64,
    ) -> Result<InputRecord, InputError> {
        self.check_size(bytes.len(), param)?;
        let format = crate::imaging::sniff(&bytes)
            .ok_or_else(|| invalid(param, "The data is not a PNG, JPEG or WebP image."))?;
        let (width, height) = crate::imaging::dimensions(&bytes)
            .map_err(|e| invalid(param, format!("The image cannot be read: {e}.")))?;
        let sha256 = ids::hex(&Sha256::digest(&bytes));
        let blob_key = format!("inp_{owner}_{sha256}.{}", format.ext());
        let content_type = format.mime();
        let stored = match self.blobs.head(&blob_key).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(InputError::Blob(e.to_string())),
        };
        let size = bytes.len();
        if !stored {
            self.blobs.put(&blob_key, bytes, content_type).await.map_err(|e| InputError::Blob(e.to_string()))?;
        }
        self.total += size;
        Ok(InputRecord {
            id: ids::input_id(),
            task_id: task_id.to_string(),
            owner: owner.to_string(),
            position,
            blob_key,
            content_type: content_type.to_string(),
            sha256,
            bytes: size as i64,
            width,
            height,
            created_at_ms: now_ms,
            expires_at: self.expires_at,
        })
    }
}

/// A mask as OpenAI's edits take it: a PNG (its transparent pixels mark what to change) of
/// the first image's size.
pub fn check_mask(mask: &InputRecord, first: Option<&InputRecord>, param: &str) -> Result<(), InputError> {
    if mask.content_type != "image/png" {
        return Err(invalid(param, "The mask must be a PNG image (with an alpha channel)."));
    }
    if let Some(f) = first
        && (f.width, f.height) != (mask.width, mask.height)
    {
        return Err(invalid(
            param,
            format!(
                "The mask is {}x{}; it must be the size of the first image, {}x{}.",
                mask.width, mask.height, f.width, f.height
            ),
        ));
    }
    Ok(())
}

/// A fetch error without its URL (the client sent the URL; what it resolved to is not told).
fn describe(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "it timed out"
    } else if e.is_redirect() {
        "a redirect was refused"
    } else if e.is_connect() {
        "the connection failed"
    } else {
        "the transfer failed"
    }
}

/// The bytes of a `data:[<type>];base64,<data>` URL.
pub fn decode_data_url(url: &str, param: &str, max: usize) -> Result<Bytes, InputError> {
    let invalid = |message: &str| InputError::Invalid { param: param.to_string(), message: message.to_string() };
    let rest = url.strip_prefix("data:").ok_or_else(|| invalid("Not a data: URL."))?;
    let (meta, data) = rest.split_once(',').ok_or_else(|| invalid("A data: URL needs a ',' before its data."))?;
    if !meta.ends_with(";base64") {
        return Err(invalid("Only base64 data: URLs are taken (data:image/png;base64,…)."));
    }
    if data.len() / 4 * 3 > max + 3 {
        return Err(invalid("The image is larger than an input image may be."));
    }
    base64_simd::STANDARD
        .decode_to_vec(data.trim())
        .map(Bytes::from)
        .map_err(|_| invalid("The data: URL's data is not valid base64."))
}

/// The stored bytes of a task's inputs, in order, for the provider (`has_mask`: the last one is
/// an edit's mask).
pub async fn load(
    store: &Arc<dyn Store>,
    blobs: &Arc<dyn BlobStore>,
    owner: &str,
    task_id: &str,
    has_mask: bool,
) -> Result<crate::providers::Inputs, String> {
    let records = store.task_inputs(owner, task_id).await.map_err(|e| e.to_string())?;
    let mut images = Vec::with_capacity(records.len());
    for r in records {
        let bytes = blobs.get(&r.blob_key).await.map_err(|e| format!("input {}: {e}", r.id))?;
        images.push(crate::providers::InputImage { content_type: r.content_type, bytes });
    }
    let mask = if has_mask { images.pop() } else { None };
    Ok(crate::providers::Inputs { images, mask })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_decode_and_bad_ones_name_their_input() {
        let b = decode_data_url("data:image/png;base64,aGVsbG8=", "reference_images[0]", 100).unwrap();
        assert_eq!(&b[..], b"hello");
        for bad in ["data:image/png,hello", "data:image/png;base64", "data:image/png;base64,@@@"] {
            match decode_data_url(bad, "reference_images[2]", 100) {
                Err(InputError::Invalid { param, .. }) => assert_eq!(param, "reference_images[2]"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
