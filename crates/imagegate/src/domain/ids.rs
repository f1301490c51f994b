//! Prefixed, sortable ids (`task_<ULID>`, `key_<ULID>`) and unguessable image ids.

use rand::Rng;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const CROCKFORD: &[u8] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// `task_` + ULID: sortable by creation time.
/// An input image of a task.
pub fn input_id() -> String {
    format!("inp_{}", ulid::Ulid::new())
}

/// `file-` + ULID, in the shape of OpenAI's file ids.
pub fn file_id() -> String {
    format!("file-{}", ulid::Ulid::new())
}

pub fn task_id() -> String {
    format!("task_{}", ulid::Ulid::new())
}

/// `key_` + ULID.
pub fn key_id() -> String {
    format!("key_{}", ulid::Ulid::new())
}

/// `req_` + ULID, for `x-request-id`.
pub fn request_id() -> String {
    format!("req_{}", ulid::Ulid::new())
}

/// Whether a client's own `x-request-id` is kept: up to 128 characters of letters, digits and
/// `-_.:`. It is logged on every line of the request and stored with its task, so anything
/// longer or stranger is replaced by one of ours.
pub fn is_fit_request_id(id: &[u8]) -> bool {
    (1..=128).contains(&id.len()) && id.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b))
}

/// `img_` + ULID (80 random bits) + 16 more Crockford characters (80 random bits):
/// 160 random bits in all, so an image URL cannot be guessed, yet ids still sort by time.
pub fn image_id() -> String {
    let mut rng = rand::rng();
    let mut s = format!("img_{}", ulid::Ulid::new());
    for _ in 0..16 {
        s.push(CROCKFORD[rng.random_range(0..32)] as char);
    }
    s
}

/// A new API key: `igk_` + 40 base62 characters (~238 bits).
pub fn api_key() -> String {
    let mut rng = rand::rng();
    let mut s = String::from("igk_");
    for _ in 0..40 {
        s.push(BASE62[rng.random_range(0..62)] as char);
    }
    s
}

/// True when `s` has the shape of an id we issue with `prefix` (cheap check before a lookup).
pub fn looks_like(s: &str, prefix: &str) -> bool {
    s.len() > prefix.len() + 20
        && s.len() < 80
        && s.starts_with(prefix)
        && s[prefix.len()..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Lowercase hex of bytes (digests).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_request_id_is_kept_only_when_short_and_plain() {
        assert!(is_fit_request_id(b"trace-1234_ab.cd:9"));
        assert!(is_fit_request_id(request_id().as_bytes()));
        assert!(!is_fit_request_id(b""));
        assert!(!is_fit_request_id(&[b'a'; 129]));
        assert!(!is_fit_request_id(b"id with spaces"));
        assert!(!is_fit_request_id(b"id\"}"));
    }

    #[test]
    fn image_ids_are_long_unique_and_well_formed() {
        let a = image_id();
        let b = image_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 26 + 16);
        assert!(looks_like(&a, "img_"));
    }

    #[test]
    fn api_keys_have_the_documented_shape() {
        let k = api_key();
        assert!(k.starts_with("igk_"));
        assert_eq!(k.len(), 44);
        assert!(k[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
    }

    #[test]
    fn task_ids_sort_by_creation() {
        let a = task_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = task_id();
        assert!(a < b);
        assert!(!looks_like("task_../../etc", "task_"));
    }
}
