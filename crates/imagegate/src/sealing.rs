//! Secrets the gateway must store and later use (a customer's bucket credentials): sealed with
//! AES-256-GCM under the server's secret key, bound to the row they belong to.
//!
//! The key comes from `IMAGEGATE_SECRET_KEY` (32 random bytes, base64: `openssl rand -base64 32`)
//! or, on the embedded default, from `secret.key` in the data folder, created on first start with
//! mode 0600. Several replicas must share `IMAGEGATE_SECRET_KEY`. ring's AEAD is used directly: it
//! is already in the tree through rustls, and sealing is two calls.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;

const PREFIX: &str = "sealed:v1:";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("IMAGEGATE_SECRET_KEY must be 32 bytes, base64-encoded (openssl rand -base64 32)")]
    BadKey,
    #[error("reading or creating the secret key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the stored secret cannot be opened: it was sealed under another secret key, or altered")]
    Open,
    #[error("sealing failed")]
    Seal,
}

pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(<key>)")
    }
}

impl Sealer {
    /// A sealer from 32 key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Sealer, SealError> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes).map_err(|_| SealError::BadKey)?;
        Ok(Sealer { key: LessSafeKey::new(unbound) })
    }

    /// A sealer from a base64 key (`IMAGEGATE_SECRET_KEY`).
    pub fn from_base64(text: &str) -> Result<Sealer, SealError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| SealError::BadKey)?;
        if bytes.len() != 32 {
            return Err(SealError::BadKey);
        }
        Sealer::from_bytes(&bytes)
    }

    /// The key in `path`, creating it (32 random bytes, base64, mode 0600) when absent.
    pub fn load_or_create(path: &Path) -> Result<Sealer, SealError> {
        let io = |source| SealError::KeyFile { path: path.display().to_string(), source };
        match std::fs::read_to_string(path) {
            Ok(text) => Sealer::from_base64(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                SystemRandom::new().fill(&mut bytes).map_err(|_| SealError::Seal)?;
                let text = STANDARD.encode(bytes);
                write_private(path, text.as_bytes()).map_err(io)?;
                // Another process may have won the race to create it: use what is on disk.
                Sealer::from_base64(&std::fs::read_to_string(path).map_err(io)?)
            }
            Err(e) => Err(io(e)),
        }
    }

    /// Seals `plain`, bound to `context` (e.g. the key id it belongs to): opening it under any
    /// other context fails.
    pub fn seal(&self, plain: &str, context: &str) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new().fill(&mut nonce).map_err(|_| SealError::Seal)?;
        let mut buf = plain.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(context.as_bytes()), &mut buf)
            .map_err(|_| SealError::Seal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(format!("{PREFIX}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<String, SealError> {
        let raw = sealed.strip_prefix(PREFIX).ok_or(SealError::Open)?;
        let bytes = STANDARD.decode(raw).map_err(|_| SealError::Open)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Open);
        }
        let (nonce, body) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Open)?;
        let mut body = body.to_vec();
        let plain =
            self.key.open_in_place(nonce, Aad::from(context.as_bytes()), &mut body).map_err(|_| SealError::Open)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SealError::Open)
    }

    pub fn is_sealed(text: &str) -> bool {
        text.starts_with(PREFIX)
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(bytes)?;
            f.sync_all()
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_binding() {
        let s = Sealer::from_bytes(&[7u8; 32]).unwrap();
        let sealed = s.seal("wJalrXUtnFEMI/K7MDENG", "key_1").unwrap();
        assert!(Sealer::is_sealed(&sealed));
        assert!(!sealed.contains("wJalr"), "the secret does not show through");
        assert_eq!(s.open(&sealed, "key_1").unwrap(), "wJalrXUtnFEMI/K7MDENG");
        assert!(s.open(&sealed, "key_2").is_err(), "bound to its row");
        let other = Sealer::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open(&sealed, "key_1").is_err(), "another server key cannot open it");
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push('A');
        assert!(s.open(&tampered, "key_1").is_err());
        assert_ne!(s.seal("x", "k").unwrap(), s.seal("x", "k").unwrap(), "fresh nonce each time");
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret.key");
        let a = Sealer::load_or_create(&path).unwrap();
        let sealed = a.seal("s", "c").unwrap();
        let b = Sealer::load_or_create(&path).unwrap();
        assert_eq!(b.open(&sealed, "c").unwrap(), "s");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert!(Sealer::from_base64("c2hvcnQ=").is_err());
    }
}
