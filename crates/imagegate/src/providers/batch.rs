//! The batch capability of a provider: many requests in one upstream job, at the batch price,
//! answered within a day. Optional (`Provider::batch`): an adapter without it is never asked.
//! The gateway records a job before each step that cannot be taken back (see
//! `crate::batches::upstream`), so the calls here are plain: no retries, no bookkeeping.

use async_trait::async_trait;
use bytes::Bytes;

use super::{GeneratedImage, ProviderError, ProviderRequest};

/// An upstream job's state, as the gateway needs it.
#[derive(Debug, Clone, PartialEq)]
pub enum JobState {
    /// Queued or running upstream.
    Running,
    /// Done; its results are in this upstream file.
    Succeeded {
        results: String,
    },
    /// The upstream gave up on the whole job.
    Failed {
        message: String,
    },
    /// Not run within the upstream's window.
    Expired,
    Cancelled,
}

/// One line of a job's results: the request's key and its image, or why there is none.
pub type ResultLine = (String, Result<GeneratedImage, ProviderError>);

#[async_trait]
pub trait BatchProvider: Send + Sync {
    /// One line of a job's input file for `req`, named `key` (without the newline).
    fn request_line(&self, key: &str, req: &ProviderRequest) -> Result<Vec<u8>, ProviderError>;
    /// Uploads a job's input file; returns the upstream's name for it.
    async fn upload(&self, display_name: &str, body: Bytes) -> Result<String, ProviderError>;
    /// Creates a job over an uploaded file; returns the job's upstream name. Not idempotent
    /// upstream: the caller records the job before calling, and uses `find` after a crash.
    async fn create(&self, model: &str, display_name: &str, file: &str) -> Result<String, ProviderError>;
    /// The job created with `display_name`, if the upstream has one (after a crash between
    /// `create` and recording its answer).
    async fn find(&self, display_name: &str) -> Result<Option<String>, ProviderError>;
    async fn state(&self, job: &str) -> Result<JobState, ProviderError>;
    /// The results file, as a stream (it holds every image of the job).
    async fn results(&self, file: &str) -> Result<crate::blobs::ByteStream, ProviderError>;
    /// Parses one line of a results file.
    fn result_line(&self, line: &[u8]) -> Result<ResultLine, ProviderError>;
    /// Asks the upstream to cancel the job (idempotent).
    async fn cancel(&self, job: &str) -> Result<(), ProviderError>;
}
