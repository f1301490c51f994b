//! Gemini `generateContent` request and response bodies (private serde types), per the
//! Gemini API reference: `contents[].parts[]`, `generationConfig.imageConfig`,
//! `candidates[].content.parts[]` with `inlineData` and `thought`, `promptFeedback`.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use crate::domain::models::Family;
use bytes::Bytes;

use crate::providers::{GeneratedImage, InputImage, ProviderError, ProviderRequest, decode_image};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest<'a> {
    contents: Vec<Content<'a>>,
    generation_config: GenerationConfig<'a>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    safety_settings: &'a [crate::domain::conversation::SafetySetting],
}

#[derive(Debug, Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: Vec<RequestPart<'a>>,
}

/// Text or an input image inline (base64); `thought` and `thoughtSignature` as the model
/// marked its own parts in an earlier turn.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum RequestPart<'a> {
    Text {
        text: Cow<'a, str>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        thought: bool,
        #[serde(rename = "thoughtSignature", skip_serializing_if = "Option::is_none")]
        thought_signature: Option<&'a str>,
    },
    Image {
        #[serde(rename = "inlineData")]
        inline_data: InlineInput<'a>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        thought: bool,
        #[serde(rename = "thoughtSignature", skip_serializing_if = "Option::is_none")]
        thought_signature: Option<&'a str>,
    },
}

impl<'a> RequestPart<'a> {
    fn text(text: Cow<'a, str>) -> RequestPart<'a> {
        RequestPart::Text { text, thought: false, thought_signature: None }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct InlineInput<'a> {
    mime_type: &'a str,
    data: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    response_modalities: [&'static str; 2],
    image_config: ImageConfig<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ImageConfig<'a> {
    aspect_ratio: &'a str,
    /// Only Gemini 3 Pro Image takes a size; uppercase K.
    #[serde(skip_serializing_if = "Option::is_none")]
    image_size: Option<&'static str>,
}

/// What the prompt says about an edit's mask, which Gemini has no parameter for: the mask goes
/// as the last image, and this sentence after the prompt tells the model what it is (OpenAI's
/// meaning: the mask's transparent pixels mark what may change).
pub const MASK_INSTRUCTION: &str = "\n\nThe last image is a mask for the first image: change only the areas \
where the mask is transparent, and keep everything else exactly as it is.";

/// The prompt's text, then each input image (and an edit's mask, last); `data` gives an
/// image's `data` field.
fn parts<'a>(req: &'a ProviderRequest, data: impl Fn(usize, &InputImage) -> String) -> Vec<RequestPart<'a>> {
    let inputs = &req.inputs;
    let mut parts = Vec::with_capacity(2 + inputs.images.len());
    let text = match inputs.mask {
        Some(_) => Cow::Owned(format!("{}{MASK_INSTRUCTION}", req.prompt)),
        None => Cow::Borrowed(req.prompt.as_str()),
    };
    parts.push(RequestPart::text(text));
    for (i, input) in inputs.images.iter().chain(&inputs.mask).enumerate() {
        parts.push(RequestPart::Image {
            inline_data: InlineInput { mime_type: &input.content_type, data: data(i, input) },
            thought: false,
            thought_signature: None,
        });
    }
    parts
}

/// The conversation as the client gave it (its images are the inputs, by position), or else
/// one user turn: the prompt, then the images.
fn contents<'a>(req: &'a ProviderRequest, data: impl Fn(usize, &InputImage) -> String) -> Vec<Content<'a>> {
    use crate::domain::conversation::TurnPart;
    let turns = &req.options.turns;
    if turns.is_empty() {
        return vec![Content { role: "user", parts: parts(req, data) }];
    }
    let images = &req.inputs.images;
    turns
        .iter()
        .map(|turn| Content {
            role: turn.role.as_str(),
            parts: turn
                .parts
                .iter()
                .filter_map(|part| match part {
                    TurnPart::Text { text, thought, signature } => Some(RequestPart::Text {
                        text: Cow::Borrowed(text),
                        thought: *thought,
                        thought_signature: signature.as_deref(),
                    }),
                    TurnPart::Input { input, thought, signature } => {
                        let i = *input as usize;
                        images.get(i).map(|image| RequestPart::Image {
                            inline_data: InlineInput { mime_type: &image.content_type, data: data(i, image) },
                            thought: *thought,
                            thought_signature: signature.as_deref(),
                        })
                    }
                })
                .collect(),
        })
        .collect()
}

fn request_with<'a>(
    req: &'a ProviderRequest,
    data: impl Fn(usize, &InputImage) -> String,
) -> GenerateContentRequest<'a> {
    GenerateContentRequest {
        contents: contents(req, data),
        safety_settings: &req.options.safety,
        generation_config: GenerationConfig {
            response_modalities: ["TEXT", "IMAGE"],
            image_config: ImageConfig {
                aspect_ratio: &req.aspect_ratio,
                image_size: (req.family == Family::Pro).then(|| req.resolution.as_str()),
            },
        },
    }
}

/// The request with its images inline (what `body` streams).
pub fn build_request(req: &ProviderRequest) -> GenerateContentRequest<'_> {
    request_with(req, |_, input| base64_simd::STANDARD.encode_to_string(&input.bytes))
}

/// Raw bytes encoded per body chunk (a multiple of 3: no padding until an image's end).
const ENCODE_CHUNK: usize = 3 * 128 * 1024;

/// The request body and its length. Input images are base64-encoded as the body is sent, a
/// chunk at a time: a call holds its inputs once (the stored bytes, shared by every try) and
/// not again as megabytes of base64 text (14 inputs at 7 MB would be 130 MB more per call).
pub fn body(req: &ProviderRequest) -> Result<(reqwest::Body, u64), ProviderError> {
    let nonce: u64 = rand::random();
    let placeholder = |k: usize| format!("imagegate-input-{nonce:016x}-{k}");
    // Which input each placeholder stands for, in the order they are written.
    let order = std::cell::RefCell::new(Vec::new());
    let request = request_with(req, |i, _| {
        let mut order = order.borrow_mut();
        order.push(i);
        placeholder(order.len() - 1)
    });
    let skeleton = serde_json::to_vec(&request)
        .map_err(|e| ProviderError::Malformed { message: format!("the request could not be encoded: {e}") })?;
    let skeleton = Bytes::from(skeleton);
    let mut pieces = Vec::new();
    let mut length = 0u64;
    let mut at = 0;
    let inputs: Vec<&InputImage> = req.inputs.images.iter().chain(&req.inputs.mask).collect();
    for (k, i) in order.into_inner().into_iter().enumerate() {
        let Some(input) = inputs.get(i) else {
            return Err(ProviderError::Malformed { message: format!("the request names input {i}, which it lacks") });
        };
        let token = placeholder(k);
        let Some(found) = skeleton[at..].windows(token.len()).position(|w| w == token.as_bytes()) else {
            return Err(ProviderError::Malformed { message: "the request's input placeholder is missing".into() });
        };
        pieces.push(Piece::Text(skeleton.slice(at..at + found)));
        pieces.push(Piece::Image(input.bytes.clone()));
        length += (found + base64_simd::STANDARD.encoded_length(input.bytes.len())) as u64;
        at += found + token.len();
    }
    pieces.push(Piece::Text(skeleton.slice(at..)));
    length += (skeleton.len() - at) as u64;
    let chunks = pieces.into_iter().flat_map(|piece| -> Box<dyn Iterator<Item = Bytes> + Send> {
        match piece {
            Piece::Text(t) => Box::new(std::iter::once(t)),
            Piece::Image(raw) => {
                let n = raw.len().div_ceil(ENCODE_CHUNK);
                Box::new((0..n).map(move |k| {
                    let part = &raw[k * ENCODE_CHUNK..((k + 1) * ENCODE_CHUNK).min(raw.len())];
                    Bytes::from(base64_simd::STANDARD.encode_to_string(part))
                }))
            }
        }
    });
    let stream = futures_util::stream::iter(chunks.map(Ok::<Bytes, std::io::Error>));
    Ok((reqwest::Body::wrap_stream(stream), length))
}

enum Piece {
    Text(Bytes),
    Image(Bytes),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateContentResponse<'a> {
    #[serde(default, borrow)]
    candidates: Vec<Candidate<'a>>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
    block_reason_message: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate<'a> {
    #[serde(borrow)]
    content: Option<CandidateContent<'a>>,
    finish_reason: Option<String>,
    finish_message: Option<String>,
}

#[derive(Debug, Deserialize)]
struct CandidateContent<'a> {
    #[serde(default, borrow)]
    parts: Vec<Part<'a>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Part<'a> {
    text: Option<String>,
    #[serde(borrow)]
    inline_data: Option<InlineData<'a>>,
    #[serde(default)]
    thought: bool,
    thought_signature: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InlineData<'a> {
    mime_type: String,
    /// Megabytes of base64: borrowed from the response body (it has no JSON escapes), not copied.
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// Finish reasons that mean "the model would not make this image".
const REFUSAL_REASONS: &[&str] = &[
    "SAFETY",
    "PROHIBITED_CONTENT",
    "BLOCKLIST",
    "SPII",
    "RECITATION",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "IMAGE_RECITATION",
    "IMAGE_OTHER",
    "NO_IMAGE",
];

/// What an answer's events have said so far: one event for `generateContent`, one per part or
/// so when streamed. Drafts (`thought: true` images; Gemini 3 Pro sends up to two) go to the
/// caller as they come; the final image is the last non-thought `inlineData`.
#[derive(Debug, Default)]
pub struct Answer {
    image: Option<(String, Bytes)>,
    signature: Option<String>,
    texts: Vec<String>,
    finish: Option<(String, Option<String>)>,
    block: Option<(String, Option<String>)>,
    input_tokens: u64,
    output_tokens: u64,
    events: usize,
}

impl Answer {
    /// Takes one `GenerateContentResponse` (an event, or a whole answer); `draft` gets each
    /// thought image it carries, decoded.
    pub fn feed(&mut self, event: &[u8], mut draft: impl FnMut(String, Bytes)) -> Result<(), ProviderError> {
        let resp: GenerateContentResponse = serde_json::from_slice(event).map_err(|e| ProviderError::Malformed {
            message: format!("response is not a generateContent body: {e}"),
        })?;
        self.events += 1;
        if let Some(f) = resp.prompt_feedback
            && let Some(reason) = f.block_reason
        {
            self.block = Some((reason, f.block_reason_message));
        }
        if let Some(u) = resp.usage_metadata {
            self.input_tokens = u.prompt_token_count;
            self.output_tokens = u.candidates_token_count + u.thoughts_token_count;
        }
        for cand in resp.candidates {
            if let Some(content) = cand.content {
                for part in content.parts {
                    match (part.inline_data, part.thought) {
                        (Some(img), true) => draft(img.mime_type, decode_image(&img.data, "a draft image")?),
                        (Some(img), false) => {
                            self.image = Some((img.mime_type, decode_image(&img.data, "image data")?));
                            self.signature = part.thought_signature;
                        }
                        (None, false) => self.texts.extend(part.text),
                        (None, true) => {}
                    }
                }
            }
            if let Some(r) = cand.finish_reason {
                self.finish = Some((r, cand.finish_message));
            }
        }
        Ok(())
    }

    /// The final image, or why there is none: a blocked prompt, a refusal finish reason and a
    /// text-only answer are content refusals; anything else is a malformed answer.
    pub fn finish(self) -> Result<GeneratedImage, ProviderError> {
        if self.events == 0 {
            return Err(ProviderError::Malformed { message: "the answer is empty".into() });
        }
        let text = (!self.texts.is_empty()).then(|| self.texts.join("\n"));
        if let Some((mime, bytes)) = self.image {
            return Ok(GeneratedImage {
                bytes,
                mime,
                text,
                input_tokens: self.input_tokens,
                output_tokens: self.output_tokens,
                signature: self.signature,
            });
        }
        if let Some((reason, message)) = self.block {
            let detail = message.map(|m| format!(" ({m})")).unwrap_or_default();
            return Err(ProviderError::Rejected {
                message: format!("The prompt was blocked by the model's safety system: {reason}{detail}."),
                reason,
                prompt: true,
            });
        }
        if let Some((reason, message)) = self.finish.as_ref()
            && REFUSAL_REASONS.contains(&reason.as_str())
        {
            let detail = message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default();
            return Err(ProviderError::Rejected {
                reason: reason.clone(),
                message: format!("The model declined to generate this image: {reason}{detail}."),
                prompt: false,
            });
        }
        if let Some(t) = text {
            return Err(ProviderError::Rejected {
                reason: "TEXT_ONLY".into(),
                message: format!("The model answered with text instead of an image: {t}"),
                prompt: false,
            });
        }
        Err(ProviderError::Malformed {
            message: format!(
                "response has no image (finishReason {})",
                self.finish.map(|(r, _)| r).unwrap_or_else(|| "missing".into())
            ),
        })
    }
}

/// A whole (unstreamed) answer's final image.
pub fn parse_response(body: &[u8]) -> Result<GeneratedImage, ProviderError> {
    let mut answer = Answer::default();
    answer.feed(body, |_, _| {})?;
    answer.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::sizes::Resolution;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/../imagegate-fakes/fixtures/gemini/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(path).unwrap()
    }

    #[test]
    fn the_final_image_is_taken_not_a_thought_draft() {
        let body = fixture("pro-image-with-thoughts.json");
        let img = parse_response(&body).unwrap();
        assert_eq!(img.mime, "image/jpeg");
        let v: serde_json::Value = serde_json::from_slice(&fixture("pro-image-with-thoughts.json")).unwrap();
        let parts = v["candidates"][0]["content"]["parts"].as_array().unwrap();
        let b64 =
            |i: usize| base64_simd::STANDARD.decode_to_vec(parts[i]["inlineData"]["data"].as_str().unwrap()).unwrap();
        assert_eq!(img.bytes.to_vec(), b64(3));
        assert_ne!(img.bytes.to_vec(), b64(1));
        assert_eq!(img.text.as_deref(), Some("Here is the image you asked for."));
        let mut drafts = Vec::new();
        let mut answer = Answer::default();
        answer.feed(&body, |mime, bytes| drafts.push((mime, bytes))).unwrap();
        assert_eq!(drafts.len(), 1, "the fixture's one thought image");
        assert_eq!(drafts[0].1.to_vec(), b64(1));
        assert_eq!((img.input_tokens, img.output_tokens), (14, 1120 + 812));
    }

    #[test]
    fn flash_returns_png() {
        assert_eq!(parse_response(&fixture("flash-image-png.json")).unwrap().mime, "image/png");
    }

    #[test]
    fn blocks_refusals_and_text_only_answers_are_rejections() {
        for name in ["prompt-blocked.json", "finish-image-safety.json", "text-only-refusal.json"] {
            match parse_response(&fixture(name)) {
                Err(ProviderError::Rejected { .. }) => {}
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn garbage_is_malformed() {
        assert!(matches!(parse_response(b"<html>"), Err(ProviderError::Malformed { .. })));
        assert!(matches!(parse_response(b"{}"), Err(ProviderError::Malformed { .. })));
    }

    #[test]
    fn the_request_matches_the_documented_shape() {
        let req = ProviderRequest {
            model: "gemini-3-pro-image-preview".into(),
            family: Family::Pro,
            prompt: "a watercolor fox in a birch forest".into(),
            aspect_ratio: "16:9".into(),
            resolution: Resolution::K2,
            width: 2752,
            height: 1536,
            index: 0,
            deadline: std::time::Duration::from_secs(1),
            inputs: Default::default(),
            options: Default::default(),
            previews: None,
        };
        let got = serde_json::to_value(build_request(&req)).unwrap();
        let want: serde_json::Value = serde_json::from_slice(&fixture("request-pro-16x9-2k.json")).unwrap();
        assert_eq!(got, want);
        let flash = ProviderRequest { family: Family::Flash, ..req };
        let got = serde_json::to_value(build_request(&flash)).unwrap();
        assert!(got["generationConfig"]["imageConfig"].get("imageSize").is_none());
    }

    #[tokio::test]
    async fn input_images_follow_the_text_as_inline_data_in_order() {
        let image = |t: &str, b: &'static [u8]| crate::providers::InputImage {
            content_type: t.into(),
            bytes: bytes::Bytes::from_static(b),
        };
        let req = ProviderRequest {
            model: "gemini-3-pro-image-preview".into(),
            family: Family::Pro,
            prompt: "put the cat on the sofa".into(),
            aspect_ratio: "1:1".into(),
            resolution: Resolution::K1,
            width: 1024,
            height: 1024,
            index: 0,
            deadline: std::time::Duration::from_secs(1),
            inputs: std::sync::Arc::new(crate::providers::Inputs {
                images: vec![image("image/png", b"cat"), image("image/jpeg", b"sofa")],
                mask: None,
            }),
            options: Default::default(),
            previews: None,
        };
        let got = serde_json::to_value(build_request(&req)).unwrap();
        let parts = &got["contents"][0]["parts"];
        assert_eq!(parts[0], serde_json::json!({"text": "put the cat on the sofa"}));
        assert_eq!(parts[1], serde_json::json!({"inlineData": {"mimeType": "image/png", "data": "Y2F0"}}));
        assert_eq!(parts[2], serde_json::json!({"inlineData": {"mimeType": "image/jpeg", "data": "c29mYQ=="}}));

        // The streamed body is the same JSON, its length told beforehand; a mask goes last,
        // the prompt saying what it is.
        let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let edit = ProviderRequest {
            inputs: std::sync::Arc::new(crate::providers::Inputs {
                images: vec![crate::providers::InputImage { content_type: "image/png".into(), bytes: big.into() }],
                mask: Some(image("image/png", b"mask")),
            }),
            ..req
        };
        let (body, length) = body(&edit).unwrap();
        let sent = collect(body).await;
        assert_eq!(sent.len() as u64, length);
        let sent: serde_json::Value = serde_json::from_slice(&sent).unwrap();
        assert_eq!(sent, serde_json::to_value(build_request(&edit)).unwrap());
        let parts = &sent["contents"][0]["parts"];
        assert_eq!(parts[0]["text"], format!("put the cat on the sofa{MASK_INSTRUCTION}"));
        assert_eq!(parts[2], serde_json::json!({"inlineData": {"mimeType": "image/png", "data": "bWFzaw=="}}));
    }

    async fn collect(body: reqwest::Body) -> Vec<u8> {
        use http_body_util::BodyExt;
        body.collect().await.unwrap().to_bytes().to_vec()
    }
}
