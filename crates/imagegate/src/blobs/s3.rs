//! S3-compatible blob store (AWS S3, MinIO, Cloudflare R2, Aliyun OSS in S3 mode, SeaweedFS),
//! through Apache OpenDAL. Configured by URL:
//! `s3://BUCKET[/PREFIX]?endpoint=http://127.0.0.1:8333&region=us-east-1[&virtual_host=true]`,
//! credentials from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`. Path-style addressing unless
//! `virtual_host=true`; no ambient credential discovery (no instance-metadata calls at boot).

use async_trait::async_trait;
use bytes::Bytes;
use opendal::{ErrorKind, Operator};

use super::{BlobError, BlobStore, ByteStream, check_key};

pub struct S3BlobStore {
    op: Operator,
    bucket: String,
}

/// What an `s3://` URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    pub prefix: String,
    pub endpoint: Option<String>,
    pub region: String,
    pub virtual_host: bool,
}

pub fn parse_url(raw: &str) -> Result<S3Location, BlobError> {
    let bad = || BlobError::UnsupportedUrl(raw.to_string());
    let url = url::Url::parse(raw).map_err(|_| bad())?;
    if url.scheme() != "s3" {
        return Err(bad());
    }
    let bucket = url.host_str().filter(|b| !b.is_empty()).ok_or_else(bad)?.to_string();
    let mut loc = S3Location {
        bucket,
        prefix: url.path().trim_matches('/').to_string(),
        endpoint: None,
        region: "us-east-1".into(),
        virtual_host: false,
    };
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "endpoint" => loc.endpoint = Some(v.trim_end_matches('/').to_string()),
            "region" => loc.region = v.to_string(),
            "virtual_host" => loc.virtual_host = v == "true" || v == "1",
            _ => return Err(bad()),
        }
    }
    Ok(loc)
}

impl S3BlobStore {
    pub fn new(
        loc: &S3Location,
        access_key: Option<String>,
        secret_key: Option<String>,
    ) -> Result<S3BlobStore, BlobError> {
        crate::install_crypto_provider();
        opendal::install_default();
        let mut b = opendal::services::S3::default()
            .bucket(&loc.bucket)
            .region(&loc.region)
            .root(&format!("/{}", loc.prefix))
            .disable_config_load()
            .disable_ec2_metadata();
        if let Some(e) = &loc.endpoint {
            b = b.endpoint(e);
        }
        if loc.virtual_host {
            b = b.enable_virtual_host_style();
        }
        match (access_key, secret_key) {
            (Some(a), Some(s)) => b = b.access_key_id(&a).secret_access_key(&s),
            _ => b = b.skip_signature(),
        }
        let op = Operator::new(b).map_err(|e| BlobError::Backend { key: String::new(), message: e.to_string() })?;
        Ok(S3BlobStore { op, bucket: loc.bucket.clone() })
    }
}

fn map(key: &str, bucket: &str, e: opendal::Error) -> BlobError {
    match e.kind() {
        ErrorKind::NotFound => BlobError::NotFound(key.to_string()),
        ErrorKind::PermissionDenied => BlobError::Denied(e.to_string()),
        // S3 says so in the error body; OpenDAL passes it on as an unexpected error.
        _ if e.to_string().contains("NoSuchBucket") => BlobError::MissingBucket(bucket.to_string()),
        _ => BlobError::Backend { key: key.to_string(), message: e.to_string() },
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), BlobError> {
        check_key(key)?;
        self.op.write_with(key, bytes).content_type(content_type).await.map_err(|e| map(key, &self.bucket, e))?;
        Ok(())
    }

    /// A multipart upload as the stream comes (aborted if the stream fails).
    async fn put_stream<'a>(
        &self,
        key: &str,
        mut stream: super::InStream<'a>,
        content_type: &str,
    ) -> Result<u64, BlobError> {
        use futures_util::StreamExt;
        check_key(key)?;
        let mut w = self.op.writer_with(key).content_type(content_type).await.map_err(|e| map(key, &self.bucket, e))?;
        let mut n = 0u64;
        while let Some(chunk) = stream.next().await {
            let written = match chunk {
                Ok(c) => {
                    n += c.len() as u64;
                    w.write(c).await.map_err(|e| map(key, &self.bucket, e))
                }
                Err(e) => Err(BlobError::Io { key: key.to_string(), source: e }),
            };
            if let Err(e) = written {
                let _ = w.abort().await;
                return Err(e);
            }
        }
        w.close().await.map_err(|e| map(key, &self.bucket, e))?;
        Ok(n)
    }

    async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        check_key(key)?;
        Ok(self.op.read(key).await.map_err(|e| map(key, &self.bucket, e))?.to_bytes())
    }

    async fn stream(&self, key: &str, range: Option<std::ops::Range<u64>>) -> Result<ByteStream, BlobError> {
        check_key(key)?;
        let bucket = self.bucket.clone();
        let reader = self.op.reader_with(key).chunk(super::STREAM_CHUNK).await.map_err(|e| map(key, &bucket, e))?;
        let stream = match range {
            Some(r) => reader.into_bytes_stream(r).await,
            None => reader.into_bytes_stream(..).await,
        }
        .map_err(|e| map(key, &bucket, e))?;
        // The first chunk is read now, so that a missing object is `NotFound` here rather than
        // an error in the middle of a response already begun.
        use futures_util::StreamExt;
        let mut stream = Box::pin(stream);
        let first = match stream.next().await {
            None => return Ok(Box::pin(futures_util::stream::empty())),
            Some(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound(key.to_string()));
            }
            Some(first) => first,
        };
        Ok(Box::pin(futures_util::stream::once(async move { first }).chain(stream)))
    }

    /// Pages of up to 1000 keys in key order; the cursor is the last key seen.
    async fn list_page(&self, cursor: Option<String>) -> Result<(Vec<(String, i64)>, Option<String>), BlobError> {
        use futures_util::TryStreamExt;
        const PAGE: usize = 1000;
        let mut lister = self.op.lister_with("").recursive(true).limit(PAGE);
        if let Some(c) = &cursor {
            lister = lister.start_after(c);
        }
        let mut lister = lister.await.map_err(|e| map("", &self.bucket, e))?;
        let mut page = Vec::new();
        while page.len() < PAGE {
            let Some(entry) = lister.try_next().await.map_err(|e| map("", &self.bucket, e))? else { break };
            if entry.metadata().is_dir() {
                continue;
            }
            let modified = entry.metadata().last_modified().map_or(0, |t| t.into_inner().as_second());
            page.push((entry.path().to_string(), modified));
        }
        let next = if page.len() == PAGE { page.last().map(|(k, _)| k.clone()) } else { None };
        Ok((page, next))
    }

    async fn head(&self, key: &str) -> Result<u64, BlobError> {
        check_key(key)?;
        Ok(self.op.stat(key).await.map_err(|e| map(key, &self.bucket, e))?.content_length())
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        check_key(key)?;
        match self.op.delete(key).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(map(key, &self.bucket, e)),
            _ => Ok(()),
        }
    }

    async fn presign(&self, key: &str, ttl: std::time::Duration) -> Result<Option<String>, BlobError> {
        check_key(key)?;
        let req = self.op.presign_read(key, ttl).await.map_err(|e| map(key, &self.bucket, e))?;
        Ok(Some(req.uri().to_string()))
    }

    async fn probe(&self) -> Result<(), BlobError> {
        let key = format!("probe_{}.bin", rand::random::<u64>());
        let explain = |e: BlobError| match e {
            BlobError::Denied(m) => BlobError::Denied(format!(
                "the S3 credentials were refused for bucket '{}' (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY): {m}",
                self.bucket
            )),
            // A probe object that cannot be read back right after its write: no such bucket.
            BlobError::NotFound(_) => BlobError::MissingBucket(self.bucket.clone()),
            other => other,
        };
        self.put(&key, Bytes::from_static(b"imagegate probe"), "application/octet-stream").await.map_err(explain)?;
        let back = self.get(&key).await.map_err(explain)?;
        self.delete(&key).await.map_err(explain)?;
        if &back[..] != b"imagegate probe" {
            return Err(BlobError::Backend { key, message: "probe read back different bytes".into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_parse() {
        let l = parse_url("s3://images/gw?endpoint=http://127.0.0.1:8333/&region=eu-west-1").unwrap();
        assert_eq!(l.bucket, "images");
        assert_eq!(l.prefix, "gw");
        assert_eq!(l.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
        assert_eq!(l.region, "eu-west-1");
        assert!(!l.virtual_host);
        assert!(parse_url("s3://images?colour=red").is_err());
        assert!(parse_url("gs://images").is_err());
        assert!(parse_url("s3:///nobucket").is_err());
    }
}
