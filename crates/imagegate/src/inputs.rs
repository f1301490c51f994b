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
use crate::store::{InputRecord, Store, StoreError};

/// One input image at most (decoded `data:` URLs, referenced images).
pub const MAX_INPUT_BYTES: usize = 20 * 1024 * 1024;

/// Why an input was refused; `param` names it (`reference_images[2]`).
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
    Store(StoreError),
    Blob(String),
}

impl From<StoreError> for InputError {
    fn from(e: StoreError) -> InputError {
        InputError::Store(e)
    }
}

/// Where inputs are kept, and for how long.
pub struct Inputs<'a> {
    pub store: &'a Arc<dyn Store>,
    pub blobs: &'a Arc<dyn BlobStore>,
    /// Unix seconds the inputs are kept until (the task's retention).
    pub expires_at: i64,
}

impl Inputs<'_> {
    /// Stores the request's references for the task `task_id` of `owner`, in order.
    pub async fn store_references(
        &self,
        owner: &str,
        task_id: &str,
        references: &[String],
        now_ms: i64,
    ) -> Result<Vec<InputRecord>, InputError> {
        let mut out = Vec::with_capacity(references.len());
        for (position, reference) in references.iter().enumerate() {
            let param = format!("reference_images[{position}]");
            let bytes = if reference.starts_with("img_") {
                self.referenced_image(owner, reference, &param).await?
            } else {
                decode_data_url(reference, &param)?
            };
            out.push(self.store_bytes(owner, task_id, position as u32, bytes, &param, now_ms).await?);
        }
        Ok(out)
    }

    async fn referenced_image(&self, owner: &str, id: &str, param: &str) -> Result<Bytes, InputError> {
        let not_found = || InputError::NotFound {
            param: param.to_string(),
            message: format!("No image '{id}' of this API key (or it has expired)."),
        };
        let image = self.store.get_image(id).await?.filter(|i| i.owner == owner).ok_or_else(not_found)?;
        // Its size is on record: an image too large to be an input is refused unread.
        if image.bytes > MAX_INPUT_BYTES as i64 {
            return Err(InputError::Invalid {
                param: param.to_string(),
                message: format!(
                    "The image is {} bytes; an input image may be at most {MAX_INPUT_BYTES}.",
                    image.bytes
                ),
            });
        }
        self.blobs
            .get(&image.blob_key)
            .await
            .map_err(|e| if e.is_not_found() { not_found() } else { InputError::Blob(e.to_string()) })
    }

    /// Checks the bytes are an image within the limits and stores them (once per key).
    async fn store_bytes(
        &self,
        owner: &str,
        task_id: &str,
        position: u32,
        bytes: Bytes,
        param: &str,
        now_ms: i64,
    ) -> Result<InputRecord, InputError> {
        let invalid = |message: String| InputError::Invalid { param: param.to_string(), message };
        if bytes.len() > MAX_INPUT_BYTES {
            return Err(invalid(format!(
                "The image is {} bytes; an input image may be at most {MAX_INPUT_BYTES}.",
                bytes.len()
            )));
        }
        let format = crate::imaging::sniff(&bytes)
            .ok_or_else(|| invalid("The data is not a PNG, JPEG or WebP image.".into()))?;
        let (width, height) =
            crate::imaging::dimensions(&bytes).map_err(|e| invalid(format!("The image cannot be read: {e}.")))?;
        let sha256 = ids::hex(&Sha256::digest(&bytes));
        let blob_key = format!("inp_{owner}_{sha256}.{}", format.ext());
        let content_type = format.mime();
        let stored = match self.blobs.head(&blob_key).await {
            Ok(_) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(InputError::Blob(e.to_string())),
        };
        let size = bytes.len() as i64;
        if !stored {
            self.blobs.put(&blob_key, bytes, content_type).await.map_err(|e| InputError::Blob(e.to_string()))?;
        }
        Ok(InputRecord {
            id: ids::input_id(),
            task_id: task_id.to_string(),
            owner: owner.to_string(),
            position,
            blob_key,
            content_type: content_type.to_string(),
            sha256,
            bytes: size,
            width,
            height,
            created_at_ms: now_ms,
            expires_at: self.expires_at,
        })
    }
}

/// The bytes of a `data:[<type>];base64,<data>` URL.
fn decode_data_url(url: &str, param: &str) -> Result<Bytes, InputError> {
    let invalid = |message: &str| InputError::Invalid { param: param.to_string(), message: message.to_string() };
    let rest = url.strip_prefix("data:").ok_or_else(|| invalid("Not a data: URL."))?;
    let (meta, data) = rest.split_once(',').ok_or_else(|| invalid("A data: URL needs a ',' before its data."))?;
    if !meta.ends_with(";base64") {
        return Err(invalid("Only base64 data: URLs are taken (data:image/png;base64,…)."));
    }
    if data.len() / 4 * 3 > MAX_INPUT_BYTES + 3 {
        return Err(invalid("The image is larger than an input image may be."));
    }
    base64_simd::STANDARD
        .decode_to_vec(data.trim())
        .map(Bytes::from)
        .map_err(|_| invalid("The data: URL's data is not valid base64."))
}

/// The stored bytes of a task's inputs, in order, for the provider.
pub async fn load(
    store: &Arc<dyn Store>,
    blobs: &Arc<dyn BlobStore>,
    owner: &str,
    task_id: &str,
) -> Result<Vec<crate::providers::InputImage>, String> {
    let records = store.task_inputs(owner, task_id).await.map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(records.len());
    for r in records {
        let bytes = blobs.get(&r.blob_key).await.map_err(|e| format!("input {}: {e}", r.id))?;
        out.push(crate::providers::InputImage { content_type: r.content_type, bytes });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_decode_and_bad_ones_name_their_input() {
        let b = decode_data_url("data:image/png;base64,aGVsbG8=", "reference_images[0]").unwrap();
        assert_eq!(&b[..], b"hello");
        for bad in ["data:image/png,hello", "data:image/png;base64", "data:image/png;base64,@@@"] {
            match decode_data_url(bad, "reference_images[2]") {
                Err(InputError::Invalid { param, .. }) => assert_eq!(param, "reference_images[2]"),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
