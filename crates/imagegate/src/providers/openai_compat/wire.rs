//! OpenAI images API bodies: the request we send and the answer we read (`data[0]` with
//! `b64_json` or `url`, `revised_prompt`, `usage`), as OpenAI's API reference documents them.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use crate::providers::{ProviderError, ProviderRequest};

#[derive(Debug, Serialize)]
pub struct ImagesRequest<'a> {
    model: &'a str,
    prompt: &'a str,
    n: u32,
    size: String,
}

/// One image per call (the gateway fans out `n`); size in OpenAI's `WxH` spelling.
pub fn build_request(req: &ProviderRequest) -> ImagesRequest<'_> {
    ImagesRequest { model: &req.model, prompt: &req.prompt, n: 1, size: format!("{}x{}", req.width, req.height) }
}

/// An edit as OpenAI's `POST /v1/images/edits` takes it: multipart `image[]` files (the stored
/// bytes, not copied), the `mask` as sent, and the text fields. One image per call.
pub fn edit_form(req: &ProviderRequest) -> Result<reqwest::multipart::Form, ProviderError> {
    let file = |name: String, input: &crate::providers::InputImage| {
        let ext = input.content_type.strip_prefix("image/").unwrap_or("png");
        let body = reqwest::Body::from(input.bytes.clone());
        reqwest::multipart::Part::stream_with_length(body, input.bytes.len() as u64)
            .file_name(format!("{name}.{ext}"))
            .mime_str(&input.content_type)
            .map_err(|e| ProviderError::Malformed { message: format!("an input's type cannot be sent: {e}") })
    };
    let mut form = reqwest::multipart::Form::new()
        .text("model", req.model.clone())
        .text("prompt", req.prompt.clone())
        .text("n", "1")
        .text("size", format!("{}x{}", req.width, req.height));
    let o = &req.options;
    if let Some(q) = o.quality.as_deref().filter(|q| ["low", "medium", "high", "auto"].contains(q)) {
        form = form.text("quality", q.to_string());
    }
    if let Some(b) = &o.background {
        form = form.text("background", b.clone());
    }
    if let Some(f) = &o.input_fidelity {
        form = form.text("input_fidelity", f.clone());
    }
    for (i, input) in req.inputs.images.iter().enumerate() {
        form = form.part("image[]", file(format!("image-{i}"), input)?);
    }
    if let Some(mask) = &req.inputs.mask {
        form = form.part("mask", file("mask".to_string(), mask)?);
    }
    Ok(form)
}

#[derive(Debug, Deserialize)]
struct ImagesResponse<'a> {
    #[serde(default, borrow)]
    data: Vec<ImageData<'a>>,
    usage: Option<Usage>,
}

#[derive(Debug, Deserialize)]
struct ImageData<'a> {
    /// Megabytes of base64: borrowed from the response body (it has no JSON escapes), not
    /// copied (through `Borrowed`: serde borrows a `Cow` only as a field's own type).
    #[serde(borrow, default)]
    b64_json: Option<Borrowed<'a>>,
    url: Option<String>,
    revised_prompt: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);

#[derive(Debug, Default, Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
}

#[derive(Debug)]
pub struct Answer<'a> {
    pub b64_json: Option<Cow<'a, str>>,
    pub url: Option<String>,
    pub revised_prompt: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

pub fn parse_response(body: &[u8]) -> Result<Answer<'_>, ProviderError> {
    let resp: ImagesResponse = serde_json::from_slice(body)
        .map_err(|e| ProviderError::Malformed { message: format!("answer is not an images response: {e}") })?;
    let usage = resp.usage.unwrap_or_default();
    let first = resp
        .data
        .into_iter()
        .next()
        .ok_or_else(|| ProviderError::Malformed { message: "answer has no data".into() })?;
    Ok(Answer {
        b64_json: first.b64_json.map(|b| b.0),
        url: first.url,
        revised_prompt: first.revised_prompt,
        input_tokens: usage.input_tokens,
        output_tokens: usage.output_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/../imagegate-fakes/fixtures/openai/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn reads_b64_and_url_answers() {
        let body = fixture("images-response-b64.json");
        let a = parse_response(&body).unwrap();
        assert!(matches!(a.b64_json, Some(Cow::Borrowed(_))) && a.url.is_none(), "borrowed, not copied");
        assert_eq!(a.revised_prompt.as_deref(), Some("a watercolor fox in a birch forest"));
        assert_eq!((a.input_tokens, a.output_tokens), (16, 4160));
        let body = fixture("images-response-url.json");
        let a = parse_response(&body).unwrap();
        assert_eq!(a.url.as_deref(), Some("https://images.example.com/img_01J9Z3.png"));
        assert!(matches!(parse_response(b"{\"data\": []}"), Err(ProviderError::Malformed { .. })));
    }
}
