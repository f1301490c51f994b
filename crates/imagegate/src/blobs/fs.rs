//! Local-folder blob store (the embedded default). Written on tokio::fs directly: a folder
//! needs no client library, and this keeps the default build free of object-store machinery.

use async_trait::async_trait;
use bytes::Bytes;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{BlobError, BlobStore, check_key};

pub struct FsBlobStore {
    root: PathBuf,
}

impl FsBlobStore {
    pub fn new(root: impl AsRef<Path>) -> FsBlobStore {
        FsBlobStore { root: root.as_ref().to_path_buf() }
    }

    /// `root/<2 chars>/<key>`: the two characters come from the key's random tail, so folders
    /// stay small and evenly filled.
    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        check_key(key)?;
        let stem = key.split('.').next().unwrap_or(key);
        let shard = if stem.len() >= 2 { &stem[stem.len() - 2..] } else { "00" };
        Ok(self.root.join(shard).join(key))
    }
}

fn io(key: &str) -> impl FnOnce(std::io::Error) -> BlobError + '_ {
    move |source| {
        if source.kind() == ErrorKind::NotFound {
            BlobError::NotFound(key.to_string())
        } else {
            BlobError::Io { key: key.to_string(), source }
        }
    }
}

/// Writes to a temporary name, fsyncs, then renames: a reader never sees half a file and a
/// crash never leaves one under the final name.
fn write_durably(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        // One trip to the blocking pool for the whole write (each tokio::fs call is a trip).
        let written = tokio::task::spawn_blocking(move || write_durably(&path, &bytes))
            .await
            .map_err(|e| BlobError::Io { key: key.to_string(), source: std::io::Error::other(e) })?;
        written.map_err(io(key))
    }

    async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        let path = self.path(key)?;
        Ok(Bytes::from(tokio::fs::read(&path).await.map_err(io(key))?))
    }

    async fn head(&self, key: &str) -> Result<u64, BlobError> {
        let path = self.path(key)?;
        Ok(tokio::fs::metadata(&path).await.map_err(io(key))?.len())
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io(key)(e)),
            _ => Ok(()),
        }
    }

    async fn probe(&self) -> Result<(), BlobError> {
        let key = format!("probe_{}.bin", rand::random::<u64>());
        self.put(&key, Bytes::from_static(b"imagegate probe"), "application/octet-stream").await?;
        let back = self.get(&key).await?;
        self.delete(&key).await?;
        if &back[..] != b"imagegate probe" {
            return Err(BlobError::Io { key, source: std::io::Error::other("probe read back different bytes") });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn put_get_head_delete_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path());
        store.probe().await.unwrap();
        store.put("img_abc.png", Bytes::from_static(b"12345"), "image/png").await.unwrap();
        assert_eq!(&store.get("img_abc.png").await.unwrap()[..], b"12345");
        assert_eq!(store.head("img_abc.png").await.unwrap(), 5);
        store.delete("img_abc.png").await.unwrap();
        store.delete("img_abc.png").await.unwrap();
        assert!(store.get("img_abc.png").await.unwrap_err().is_not_found());
        assert!(store.head("img_abc.png").await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn path_tricks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path());
        for key in ["../x", "a/b", ".hidden", "", "a..b"] {
            assert!(matches!(store.get(key).await, Err(BlobError::InvalidKey(_))), "{key}");
        }
    }
}
