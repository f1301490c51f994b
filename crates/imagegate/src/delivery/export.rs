//! Export to the customer's bucket: copies every image of a key that has an export destination
//! to that bucket, with retries. The owed copies are rows written with the images (see the
//! store), claimed here with a lease, so a crash mid-copy means a repeat (same object key, same
//! bytes), never a loss.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::blobs::s3::{S3BlobStore, S3Location};
use crate::blobs::{BlobError, BlobStore};
use crate::domain::export::{ENV_PREFIX, ExportDestination};
use crate::domain::now_millis;
use crate::outbox::{self, Control, Outbox};
use crate::sealing::Sealer;
use crate::store::{ExportJob, ExportOutcome, Store, StoreError};

const CONCURRENCY: usize = 8;
const BATCH: u32 = 16;

/// Reads a credential: an `env::NAME` reference from the environment, a sealed value through
/// `sealer` (bound to the key id `owner`), anything else as is.
pub fn reveal(value: &str, sealer: Option<&Sealer>, owner: &str) -> Result<String, String> {
    if let Some(name) = value.strip_prefix(ENV_PREFIX) {
        return std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("the environment variable {name} is not set on the server"));
    }
    if Sealer::is_sealed(value) {
        let sealer =
            sealer.ok_or("no secret key is configured (IMAGEGATE_SECRET_KEY) to open the stored credentials")?;
        return sealer.open(value, owner).map_err(|e| e.to_string());
    }
    Ok(value.to_string())
}

/// The destination as a blob store rooted at its prefix.
pub fn open_destination(dest: &ExportDestination, sealer: Option<&Sealer>, owner: &str) -> Result<S3BlobStore, String> {
    let access = reveal(&dest.access_key_id, sealer, owner).map_err(|e| format!("access_key_id: {e}"))?;
    let secret = reveal(&dest.secret_access_key, sealer, owner).map_err(|e| format!("secret_access_key: {e}"))?;
    let loc = S3Location {
        bucket: dest.bucket.clone(),
        prefix: dest.prefix.clone(),
        endpoint: dest.endpoint.clone(),
        region: dest.region.clone(),
        virtual_host: dest.virtual_host,
    };
    S3BlobStore::new(&loc, Some(access), Some(secret)).map_err(|e| e.to_string())
}

pub struct Exporter {
    id: String,
    store: Arc<dyn Store>,
    blobs: Arc<dyn BlobStore>,
    sealer: Option<Arc<Sealer>>,
    schedule: Vec<Duration>,
    timeout: Duration,
    /// Destinations opened so far, by key id (re-opened when the key's destination changes).
    opened: Mutex<HashMap<String, (ExportDestination, Arc<S3BlobStore>)>>,
    control: Control,
}

impl Exporter {
    pub fn new(
        store: Arc<dyn Store>,
        blobs: Arc<dyn BlobStore>,
        sealer: Option<Arc<Sealer>>,
        schedule: Vec<Duration>,
        timeout: Duration,
    ) -> Arc<Exporter> {
        Arc::new(Exporter {
            id: format!("exp_{}", ulid::Ulid::new()),
            store,
            blobs,
            sealer,
            schedule,
            timeout,
            opened: Mutex::new(HashMap::new()),
            control: Control::new(CONCURRENCY),
        })
    }

    /// Images were completed: export without waiting for the next poll.
    pub fn notify(&self) {
        self.control.notify();
    }

    pub fn stop(&self) {
        self.control.stop();
    }

    pub fn start(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        outbox::start(self)
    }

    async fn export(&self, job: ExportJob) {
        let attempt = tokio::time::timeout(self.timeout, self.copy(&job))
            .await
            .unwrap_or_else(|_| Err(Failure::Retry(format!("the copy took longer than {}s", self.timeout.as_secs()))));
        let outcome = match attempt {
            Ok((bucket, object_key)) => ExportOutcome::Exported { bucket, object_key },
            Err(Failure::Final(error)) => ExportOutcome::GiveUp { error },
            Err(Failure::Retry(error)) => {
                let failures = job.attempts as usize + 1;
                match crate::webhooks::schedule::next_delay(&self.schedule, failures, None, rand::random::<f64>()) {
                    Some(d) => ExportOutcome::RetryAt { at_ms: now_millis() + d.as_millis() as i64, error },
                    None => ExportOutcome::GiveUp { error },
                }
            }
        };
        crate::stats::export_attempt(match &outcome {
            ExportOutcome::Exported { .. } => "exported",
            ExportOutcome::RetryAt { .. } => "retrying",
            ExportOutcome::GiveUp { .. } => "failed",
        });
        match &outcome {
            ExportOutcome::Exported { bucket, object_key } => {
                tracing::info!(image_id = job.image_id, task_id = job.task_id, bucket, object_key, "image exported")
            }
            other => {
                tracing::warn!(image_id = job.image_id, task_id = job.task_id, outcome = ?other, "export attempt failed")
            }
        }
        if let Err(e) = self.store.record_export(&job.image_id, &outcome, now_millis()).await {
            tracing::error!(image_id = job.image_id, error = %e, "recording an export failed; it will be retried");
        }
    }

    /// One copy: the bucket and full object key it landed under.
    async fn copy(&self, job: &ExportJob) -> Result<(String, String), Failure> {
        let key = self
            .store
            .get_key(&job.owner)
            .await
            .map_err(|e| Failure::Retry(format!("store: {e}")))?
            .ok_or_else(|| Failure::Final("the API key no longer exists".into()))?;
        let dest = key
            .export
            .ok_or_else(|| Failure::Final("the key's export destination was removed before the copy".into()))?;
        let target = self.destination(&job.owner, &dest)?;
        let bytes: Bytes = match self.blobs.get(&job.blob_key).await {
            Ok(b) => b,
            Err(BlobError::NotFound(_)) => {
                return Err(Failure::Final("the image expired before it could be exported".into()));
            }
            Err(e) => return Err(Failure::Retry(format!("reading the image: {e}"))),
        };
        target.put(&job.object_name, bytes, &job.content_type).await.map_err(|e| Failure::Retry(describe(&dest, e)))?;
        Ok((dest.bucket.clone(), dest.object_key(&job.object_name)))
    }

    fn destination(&self, owner: &str, dest: &ExportDestination) -> Result<Arc<S3BlobStore>, Failure> {
        let mut opened = self.opened.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((d, store)) = opened.get(owner)
            && d == dest
        {
            return Ok(store.clone());
        }
        // A credential missing from the environment may be set by a restart: keep retrying.
        let store = Arc::new(open_destination(dest, self.sealer.as_deref(), owner).map_err(Failure::Retry)?);
        opened.insert(owner.to_string(), (dest.clone(), store.clone()));
        Ok(store)
    }
}

/// A short, secret-free reason for a failed write (the task shows it).
fn describe(dest: &ExportDestination, e: BlobError) -> String {
    let bucket = &dest.bucket;
    match e {
        BlobError::Denied(_) => format!("the destination refused the credentials for bucket '{bucket}' (403)"),
        BlobError::MissingBucket(_) => {
            format!("bucket '{bucket}' does not exist at the destination")
        }
        other => {
            let mut m = other.to_string();
            crate::domain::truncate_text(&mut m, 300);
            m
        }
    }
}

#[async_trait::async_trait]
impl Outbox for Exporter {
    type Job = ExportJob;
    const NAME: &'static str = "exports";

    async fn claim(&self, now_ms: i64) -> Result<Vec<ExportJob>, StoreError> {
        // A claimed copy becomes claimable again this long after its attempt's timeout.
        let lease = self.timeout + Duration::from_secs(5);
        self.store.claim_exports(&self.id, now_ms, now_ms + lease.as_millis() as i64, BATCH).await
    }

    async fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.store.next_export_due().await
    }

    async fn run(self: Arc<Self>, job: ExportJob) {
        self.export(job).await;
    }

    fn control(&self) -> &Control {
        &self.control
    }
}

enum Failure {
    Retry(String),
    Final(String),
}
