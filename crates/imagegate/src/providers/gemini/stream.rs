//! Reading a streamed answer: server-sent events (`data: {…}` lines, an empty line between
//! events), each handed over as it completes. An answer that is plain JSON instead (an object,
//! or an array of them, as `streamGenerateContent` answers without `alt=sse`) is handed over
//! whole. The whole stream is capped like any upstream answer.

use bytes::BytesMut;
use serde_json::value::RawValue;

use crate::providers::ProviderError;

pub async fn read(
    mut resp: reqwest::Response,
    max: usize,
    mut event: impl FnMut(&[u8]) -> Result<(), ProviderError>,
) -> Result<(), ProviderError> {
    let sse = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("text/event-stream"));
    let mut buf = BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = resp.chunk().await.map_err(ProviderError::Network)? {
        total += chunk.len();
        if total > max {
            return Err(ProviderError::Malformed { message: format!("the answer is larger than the {max}-byte cap") });
        }
        buf.extend_from_slice(&chunk);
        if sse {
            while let Some((end, skip)) = boundary(&buf) {
                let block = buf.split_to(end + skip);
                dispatch(&block[..end], &mut event)?;
            }
        }
    }
    if sse {
        if !buf.iter().all(u8::is_ascii_whitespace) {
            dispatch(&buf, &mut event)?;
        }
        return Ok(());
    }
    let text = std::str::from_utf8(&buf)
        .map_err(|_| ProviderError::Malformed { message: "the answer is not UTF-8".into() })?;
    if text.trim_start().starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text)
            .map_err(|e| ProviderError::Malformed { message: format!("the answer is not a JSON array: {e}") })?;
        for item in items {
            event(item.get().as_bytes())?;
        }
        return Ok(());
    }
    event(&buf)
}

/// The end of the first complete event and the length of the blank line after it.
fn boundary(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// One event's `data:` lines, joined, to `event`; comments and other fields are skipped.
fn dispatch(block: &[u8], event: &mut impl FnMut(&[u8]) -> Result<(), ProviderError>) -> Result<(), ProviderError> {
    let mut data = Vec::new();
    for line in block.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(rest) = line.strip_prefix(b"data:") {
            if !data.is_empty() {
                data.push(b'\n');
            }
            data.extend_from_slice(rest.strip_prefix(b" ").unwrap_or(rest));
        }
    }
    if data.is_empty() { Ok(()) } else { event(&data) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_of_either_kind() {
        let mut seen = Vec::new();
        let mut buf: &[u8] = b"data: {\"a\":1}\r\n\r\n: comment\n\ndata: {\"b\":\ndata: 2}\n\n";
        while let Some((end, skip)) = boundary(buf) {
            dispatch(&buf[..end], &mut |e: &[u8]| {
                seen.push(String::from_utf8_lossy(e).into_owned());
                Ok(())
            })
            .unwrap();
            buf = &buf[end + skip..];
        }
        assert_eq!(seen, vec!["{\"a\":1}", "{\"b\":\n2}"]);
    }
}
