//! Local-folder blob store (the embedded default). Written on std::fs directly: a folder
//! needs no client library, and this keeps the default build free of object-store machinery.
//!
//! Every image is written under a temporary name and renamed, so a reader never sees half a
//! file. How it reaches the disk follows the durability level (see `crate::domain::durability`; the flush loop is `crate::flush`):
//! `power` fsyncs each file (and its folder) before `put` returns; `process` leaves that to
//! `flush`, which the flush loop calls for all recent images at once, before each database
//! checkpoint.

use async_trait::async_trait;
use bytes::Bytes;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{BlobError, BlobStore, ByteStream, STREAM_CHUNK, check_key};
use crate::domain::durability::Durability;

pub struct FsBlobStore {
    root: PathBuf,
    durability: Durability,
    /// Files written since the last flush, with their sizes (`process` durability).
    unflushed: Mutex<Vec<(PathBuf, u64)>>,
}

impl FsBlobStore {
    pub fn new(root: impl AsRef<Path>, durability: Durability) -> FsBlobStore {
        FsBlobStore { root: root.as_ref().to_path_buf(), durability, unflushed: Mutex::new(Vec::new()) }
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

/// Writes to a temporary name, then renames: a reader never sees half a file and a crash never
/// leaves one under the final name. With `sync`, the file is fsynced before the rename and its
/// folder after it, so the file is on the disk when this returns.
fn write_file(path: &Path, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
    let written = (|| {
        // The shard folder nearly always exists: make it only when the create says it is missing.
        let mut f = match std::fs::File::create(&tmp) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                std::fs::File::create(&tmp)?
            }
            other => other?,
        };
        f.write_all(bytes)?;
        if sync {
            f.sync_data()?;
        }
        std::fs::rename(&tmp, path)?;
        if sync && let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Images at least this large are dropped from the page cache once flushed.
#[cfg(target_os = "linux")]
const EVICT_AFTER_FLUSH: u64 = 1 << 20;

/// Puts `files` (written, renamed, not yet synced; with their sizes) and their folders on the
/// disk.
fn sync_files(root: &Path, files: &[(PathBuf, u64)]) -> std::io::Result<()> {
    // Linux: one syncfs(2) of the folder's filesystem writes them all back with one journal
    // commit, where an fsync per file would commit the journal once per file.
    #[cfg(target_os = "linux")]
    {
        rustix::fs::syncfs(std::fs::File::open(root)?)?;
        // Large images leave the page cache once they are on disk: written once, read rarely
        // after the first download, and new page-cache pages are the dearest part of storing
        // them (measured in bench/RESULTS.md). Their pages are reused for the next ones.
        for (f, _) in files.iter().filter(|(_, len)| *len >= EVICT_AFTER_FLUSH) {
            if let Ok(file) = std::fs::File::open(f) {
                let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let mut folders = std::collections::BTreeSet::new();
        for (f, _) in files {
            match std::fs::File::open(f) {
                Ok(file) => file.sync_data()?,
                // Deleted since (an expired image): nothing to keep.
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            folders.extend(f.parent().map(Path::to_path_buf));
        }
        for d in folders {
            std::fs::File::open(&d)?.sync_all()?;
        }
        let _ = root;
    }
    Ok(())
}

#[async_trait]
impl BlobStore for FsBlobStore {
    async fn put(&self, key: &str, bytes: Bytes, _content_type: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        let sync = self.durability == Durability::Power;
        let len = bytes.len() as u64;
        // One trip to the blocking pool for the whole write (each tokio::fs call is a trip).
        let written = tokio::task::spawn_blocking(move || write_file(&path, &bytes, sync).map(|()| path))
            .await
            .map_err(|e| BlobError::Io { key: key.to_string(), source: std::io::Error::other(e) })?;
        let path = written.map_err(io(key))?;
        if !sync && let Ok(mut pending) = self.unflushed.lock() {
            pending.push((path, len));
        }
        Ok(())
    }

    async fn put_stream<'a>(
        &self,
        key: &str,
        mut stream: super::InStream<'a>,
        _content_type: &str,
    ) -> Result<u64, BlobError> {
        use futures_util::StreamExt;
        use tokio::io::AsyncWriteExt;
        let path = self.path(key)?;
        let tmp = path.with_extension(format!("tmp{}", rand::random::<u32>()));
        let sync = self.durability == Durability::Power;
        let written = async {
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await?;
            }
            let mut f = tokio::fs::File::create(&tmp).await?;
            let mut n = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                f.write_all(&chunk).await?;
                n += chunk.len() as u64;
            }
            f.flush().await?;
            if sync {
                f.sync_data().await?;
            }
            drop(f);
            tokio::fs::rename(&tmp, &path).await?;
            Ok::<u64, std::io::Error>(n)
        }
        .await;
        match written {
            Ok(n) => {
                if !sync && let Ok(mut pending) = self.unflushed.lock() {
                    pending.push((path, n));
                }
                Ok(n)
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(io(key)(e))
            }
        }
    }

    fn flush(&self) -> Result<usize, BlobError> {
        let files = match self.unflushed.lock() {
            Ok(mut pending) => std::mem::take(&mut *pending),
            Err(_) => return Err(BlobError::Io { key: String::new(), source: std::io::Error::other("poisoned") }),
        };
        if files.is_empty() {
            return Ok(0);
        }
        sync_files(&self.root, &files).map(|()| files.len()).map_err(|source| {
            // Put them back: the next flush tries again, and no checkpoint runs before it.
            if let Ok(mut pending) = self.unflushed.lock() {
                pending.extend(files.iter().cloned());
            }
            BlobError::Io { key: format!("{} images", files.len()), source }
        })
    }

    async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        let path = self.path(key)?;
        Ok(Bytes::from(tokio::fs::read(&path).await.map_err(io(key))?))
    }

    /// The first chunk (the whole of an image up to `STREAM_CHUNK`, which is nearly every one)
    /// is read in one trip to the blocking pool, exactly the bytes asked for; a larger object
    /// streams the rest a chunk at a time.
    async fn stream(&self, key: &str, range: Option<std::ops::Range<u64>>) -> Result<ByteStream, BlobError> {
        use std::io::{Read, Seek};
        let path = self.path(key)?;
        let first = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let mut file = std::fs::File::open(&path)?;
            let total = file.metadata()?.len();
            let range = range.unwrap_or(0..total);
            let end = range.end.min(total);
            file.seek(std::io::SeekFrom::Start(range.start))?;
            let first_len = end.saturating_sub(range.start).min(STREAM_CHUNK as u64);
            let mut buf = vec![0u8; first_len as usize];
            file.read_exact(&mut buf)?;
            Ok((Bytes::from(buf), file, end.saturating_sub(range.start + first_len)))
        })
        .await
        .map_err(|e| BlobError::Io { key: key.to_string(), source: std::io::Error::other(e) })?;
        let (first, file, rest) = first.map_err(io(key))?;
        let head = futures_util::stream::once(async move { Ok::<_, std::io::Error>(first) });
        if rest == 0 {
            return Ok(Box::pin(head));
        }
        use futures_util::StreamExt;
        use tokio::io::AsyncReadExt;
        let tail = tokio::fs::File::from_std(file).take(rest);
        Ok(Box::pin(head.chain(tokio_util::io::ReaderStream::with_capacity(tail, STREAM_CHUNK))))
    }

    /// A page is one shard folder; the cursor names the next one.
    async fn list_page(&self, cursor: Option<String>) -> Result<(Vec<(String, i64)>, Option<String>), BlobError> {
        let root = self.root.clone();
        let listed = tokio::task::spawn_blocking(move || -> std::io::Result<_> {
            let mut shards: Vec<String> = match std::fs::read_dir(&root) {
                Ok(entries) => entries
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect(),
                Err(e) if e.kind() == ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(e),
            };
            shards.sort();
            let at = match &cursor {
                Some(c) => shards.partition_point(|s| s < c),
                None => 0,
            };
            let Some(shard) = shards.get(at) else { return Ok((Vec::new(), None)) };
            let mut page = Vec::new();
            for entry in std::fs::read_dir(root.join(shard))?.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let modified = meta
                    .modified()
                    .ok()
                    .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_secs() as i64);
                page.push((entry.file_name().to_string_lossy().into_owned(), modified));
            }
            Ok((page, shards.get(at + 1).cloned()))
        })
        .await
        .map_err(|e| BlobError::Io { key: String::new(), source: std::io::Error::other(e) })?;
        listed.map_err(|source| BlobError::Io { key: String::new(), source })
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
        let store = FsBlobStore::new(dir.path(), Durability::Process);
        store.probe().await.unwrap();
        store.put("img_abc.png", Bytes::from_static(b"12345"), "image/png").await.unwrap();
        assert_eq!(&store.get("img_abc.png").await.unwrap()[..], b"12345");
        let collect = |s: ByteStream| async move {
            use futures_util::TryStreamExt;
            s.try_fold(Vec::new(), |mut v, c| async move {
                v.extend_from_slice(&c);
                Ok(v)
            })
            .await
            .unwrap()
        };
        assert_eq!(collect(store.stream("img_abc.png", None).await.unwrap()).await, b"12345");
        assert_eq!(collect(store.stream("img_abc.png", Some(1..3)).await.unwrap()).await, b"23");
        assert!(store.stream("img_nope.png", None).await.err().is_some_and(|e| e.is_not_found()));
        assert_eq!(store.head("img_abc.png").await.unwrap(), 5);
        store.delete("img_abc.png").await.unwrap();
        store.delete("img_abc.png").await.unwrap();
        assert!(store.get("img_abc.png").await.unwrap_err().is_not_found());
        assert!(store.head("img_abc.png").await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn objects_larger_than_a_chunk_stream_in_chunks() {
        use futures_util::TryStreamExt;
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path(), Durability::Process);
        let big: Vec<u8> = (0..STREAM_CHUNK + 1_000_000).map(|i| (i % 251) as u8).collect();
        store.put("img_big.png", Bytes::from(big.clone()), "image/png").await.unwrap();
        let chunks: Vec<Bytes> = store.stream("img_big.png", None).await.unwrap().try_collect().await.unwrap();
        assert!(chunks.len() >= 2 && chunks.iter().all(|c| c.len() <= STREAM_CHUNK));
        assert_eq!(chunks.concat(), big);
        let (a, b) = (STREAM_CHUNK as u64 - 10, STREAM_CHUNK as u64 + 10);
        let part: Vec<Bytes> = store.stream("img_big.png", Some(a..b)).await.unwrap().try_collect().await.unwrap();
        assert_eq!(part.concat(), big[a as usize..b as usize]);
    }

    #[tokio::test]
    async fn path_tricks_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FsBlobStore::new(dir.path(), Durability::Process);
        for key in ["../x", "a/b", ".hidden", "", "a..b"] {
            assert!(matches!(store.get(key).await, Err(BlobError::InvalidKey(_))), "{key}");
        }
    }
}
