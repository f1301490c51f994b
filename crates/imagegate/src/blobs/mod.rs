//! SEAM BlobStore: where image bytes live (local folder by default; S3-compatible at scale).
//!
//! The store is addressed by opaque keys the gateway chooses (`img_….jpeg`); it knows nothing
//! of tasks or owners. `put` has stored the object when it returns (how far toward the disk
//! follows the durability level, see `crate::domain::durability`): a task is only marked completed
//! after its images are stored, so a crash in between regenerates rather than loses.

pub mod fs;
pub mod s3;

use async_trait::async_trait;
use bytes::Bytes;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;

use crate::domain::durability::Durability;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob {0:?} not found")]
    NotFound(String),
    #[error("invalid blob key {0:?}")]
    InvalidKey(String),
    #[error("blob store I/O error on {key:?}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unsupported storage URL {0:?}: use file://PATH or s3://BUCKET[/PREFIX]?endpoint=…&region=…")]
    UnsupportedUrl(String),
    #[error("storage refused access: {0}")]
    Denied(String),
    #[error("bucket '{0}' does not exist")]
    MissingBucket(String),
    #[error("storage error on {key:?}: {message}")]
    Backend { key: String, message: String },
}

impl BlobError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, BlobError::NotFound(_))
    }
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores `bytes` under `key`, replacing any previous object. Once it returns the object
    /// survives a crash of this process; with `power` durability, also a power cut.
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), BlobError>;
    /// Stores a stream of bytes under `key` without holding them whole (files of the Files
    /// API); the object appears only once the stream has ended well, and an error from the
    /// stream leaves nothing behind. Returns the object's size.
    async fn put_stream<'a>(&self, key: &str, stream: InStream<'a>, content_type: &str) -> Result<u64, BlobError>;
    /// Puts every object stored so far on the disk (blocking: call it off the async threads);
    /// returns how many objects it had to flush. Stores whose `put` is already durable (S3)
    /// have nothing to do.
    fn flush(&self) -> Result<usize, BlobError> {
        Ok(0)
    }
    /// The whole object.
    async fn get(&self, key: &str) -> Result<Bytes, BlobError>;
    /// The bytes of `range` (the whole object when `None`) as a stream of chunks: memory stays
    /// bounded whatever the object's size, and only the range asked for is read. `NotFound`
    /// before the first chunk when the object is missing.
    async fn stream(&self, key: &str, range: Option<Range<u64>>) -> Result<ByteStream, BlobError>;
    /// Object size in bytes, or `NotFound`.
    async fn head(&self, key: &str) -> Result<u64, BlobError>;
    /// Deletes the object; deleting a missing object is not an error (idempotent).
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// One page of the stored objects, for the orphan sweep: `(key, last modified, Unix
    /// seconds)`, and the cursor of the next page (`None` after the last). Pages follow an
    /// order of the store's choosing; a full pass visits every object once.
    async fn list_page(&self, cursor: Option<String>) -> Result<(Vec<(String, i64)>, Option<String>), BlobError>;
    /// Writes, reads back and deletes a small object: fails fast at boot on a wrong
    /// location or permission rather than on the first paid image.
    async fn probe(&self) -> Result<(), BlobError>;
    /// A time-limited URL that reads the object straight from the store, when the store can
    /// make one (S3 presigning); `None` otherwise.
    async fn presign(&self, key: &str, ttl: std::time::Duration) -> Result<Option<String>, BlobError> {
        let _ = (key, ttl);
        Ok(None)
    }
}

/// Bytes on their way into the store.
pub type InStream<'a> = futures_util::stream::BoxStream<'a, Result<Bytes, std::io::Error>>;

/// A stream of an object's bytes.
pub type ByteStream = Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// The most read at a time when streaming, and so about what one response holds however slowly
/// its client reads: most images whole, in one read; larger objects and ranges a chunk at a time.
pub const STREAM_CHUNK: usize = 4 * 1024 * 1024;

/// Opens the blob store a storage URL names; `credentials` are for S3 (access key, secret).
pub fn open(
    url: &str,
    credentials: Option<(String, String)>,
    durability: Durability,
) -> Result<Arc<dyn BlobStore>, BlobError> {
    if let Some(path) = url.strip_prefix("file://") {
        return Ok(Arc::new(fs::FsBlobStore::new(path, durability)));
    }
    if url.starts_with("s3://") {
        let loc = s3::parse_url(url)?;
        let (a, s) = credentials.map(|(a, s)| (Some(a), Some(s))).unwrap_or((None, None));
        return Ok(Arc::new(s3::S3BlobStore::new(&loc, a, s)?));
    }
    Err(BlobError::UnsupportedUrl(url.to_string()))
}

/// Keys are generated by us, but validate anyway: no path tricks reach the filesystem.
pub fn check_key(key: &str) -> Result<(), BlobError> {
    let ok = !key.is_empty()
        && key.len() <= 200
        && !key.starts_with('.')
        && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !key.contains("..");
    if ok { Ok(()) } else { Err(BlobError::InvalidKey(key.to_string())) }
}
