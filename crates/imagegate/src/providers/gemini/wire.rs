//! Gemini `generateContent` request and response bodies (private serde types), per the
//! Gemini API reference: `contents[].parts[]`, `generationConfig.imageConfig`,
//! `candidates[].content.parts[]` with `inlineData` and `thought`, `promptFeedback`.

use serde::{Deserialize, Serialize};
use std::borrow::Cow;

use crate::domain::models::Family;
use crate::providers::{ProviderError, ProviderRequest};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateContentRequest<'a> {
    contents: [Content<'a>; 1],
    generation_config: GenerationConfig<'a>,
}

#[derive(Debug, Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: Vec<RequestPart<'a>>,
}

/// The prompt's text, then each input image inline (base64), in the order given.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum RequestPart<'a> {
    Text {
        text: &'a str,
    },
    Image {
        #[serde(rename = "inlineData")]
        inline_data: InlineInput<'a>,
    },
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

fn parts(req: &ProviderRequest) -> Vec<RequestPart<'_>> {
    let mut parts = Vec::with_capacity(1 + req.inputs.len());
    parts.push(RequestPart::Text { text: &req.prompt });
    for input in req.inputs.iter() {
        let data = base64_simd::STANDARD.encode_to_string(&input.bytes);
        parts.push(RequestPart::Image { inline_data: InlineInput { mime_type: &input.content_type, data } });
    }
    parts
}

pub fn build_request(req: &ProviderRequest) -> GenerateContentRequest<'_> {
    GenerateContentRequest {
        contents: [Content { role: "user", parts: parts(req) }],
        generation_config: GenerationConfig {
            response_modalities: ["TEXT", "IMAGE"],
            image_config: ImageConfig {
                aspect_ratio: &req.aspect_ratio,
                image_size: (req.family == Family::Pro).then(|| req.resolution.as_str()),
            },
        },
    }
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
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InlineData<'a> {
    mime_type: String,
    /// Megabytes of base64: borrowed from the response body (it has no JSON escapes), not copied.
    #[serde(borrow)]
    data: Cow<'a, str>,
}

/// The final image of a response, still base64 (borrowed from the response body).
#[derive(Debug)]
pub struct FinalImage<'a> {
    pub mime_type: String,
    pub data: Cow<'a, str>,
    pub text: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
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

/// Picks the final image: skips `thought: true` parts (Gemini 3 Pro sends up to two draft
/// images first) and takes the last non-thought `inlineData`. Blocks, refusal finish reasons
/// and text-only answers are content refusals.
pub fn parse_response(body: &[u8]) -> Result<FinalImage<'_>, ProviderError> {
    let resp: GenerateContentResponse = serde_json::from_slice(body)
        .map_err(|e| ProviderError::Malformed { message: format!("response is not a generateContent body: {e}") })?;
    if resp.candidates.is_empty() {
        if let Some(reason) = resp.prompt_feedback.as_ref().and_then(|f| f.block_reason.clone()) {
            let detail = resp
                .prompt_feedback
                .and_then(|f| f.block_reason_message)
                .map(|m| format!(" ({m})"))
                .unwrap_or_default();
            return Err(ProviderError::Rejected {
                message: format!("The prompt was blocked by the model's safety system: {reason}{detail}."),
                reason,
            });
        }
        return Err(ProviderError::Malformed { message: "response has no candidates".into() });
    }
    let usage = resp.usage_metadata.unwrap_or_default();
    let mut last_image = None;
    let mut texts = Vec::new();
    let mut finish = None;
    for cand in resp.candidates {
        if let Some(content) = cand.content {
            for part in content.parts {
                if part.thought {
                    continue;
                }
                if let Some(img) = part.inline_data {
                    last_image = Some(img);
                } else if let Some(t) = part.text {
                    texts.push(t);
                }
            }
        }
        if finish.is_none() {
            finish = cand.finish_reason.map(|r| (r, cand.finish_message));
        }
    }
    let text = (!texts.is_empty()).then(|| texts.join("\n"));
    if let Some(img) = last_image {
        return Ok(FinalImage {
            mime_type: img.mime_type,
            data: img.data,
            text,
            input_tokens: usage.prompt_token_count,
            output_tokens: usage.candidates_token_count + usage.thoughts_token_count,
        });
    }
    if let Some((reason, message)) = finish.as_ref()
        && REFUSAL_REASONS.contains(&reason.as_str())
    {
        let detail = message.as_ref().map(|m| format!(" ({m})")).unwrap_or_default();
        return Err(ProviderError::Rejected {
            reason: reason.clone(),
            message: format!("The model declined to generate this image: {reason}{detail}."),
        });
    }
    if let Some(t) = text {
        return Err(ProviderError::Rejected {
            reason: "TEXT_ONLY".into(),
            message: format!("The model answered with text instead of an image: {t}"),
        });
    }
    Err(ProviderError::Malformed {
        message: format!(
            "response has no image (finishReason {})",
            finish.map(|(r, _)| r).unwrap_or_else(|| "missing".into())
        ),
    })
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
        assert_eq!(img.mime_type, "image/jpeg");
        let v: serde_json::Value = serde_json::from_slice(&fixture("pro-image-with-thoughts.json")).unwrap();
        let parts = v["candidates"][0]["content"]["parts"].as_array().unwrap();
        assert_eq!(img.data, parts[3]["inlineData"]["data"].as_str().unwrap());
        assert_ne!(img.data, parts[1]["inlineData"]["data"].as_str().unwrap());
        assert_eq!(img.text.as_deref(), Some("Here is the image you asked for."));
        assert_eq!((img.input_tokens, img.output_tokens), (14, 1120 + 812));
    }

    #[test]
    fn flash_returns_png() {
        assert_eq!(parse_response(&fixture("flash-image-png.json")).unwrap().mime_type, "image/png");
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
        };
        let got = serde_json::to_value(build_request(&req)).unwrap();
        let want: serde_json::Value = serde_json::from_slice(&fixture("request-pro-16x9-2k.json")).unwrap();
        assert_eq!(got, want);
        let flash = ProviderRequest { family: Family::Flash, ..req };
        let got = serde_json::to_value(build_request(&flash)).unwrap();
        assert!(got["generationConfig"]["imageConfig"].get("imageSize").is_none());
    }

    #[test]
    fn input_images_follow_the_text_as_inline_data_in_order() {
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
            inputs: std::sync::Arc::new(vec![image("image/png", b"cat"), image("image/jpeg", b"sofa")]),
        };
        let got = serde_json::to_value(build_request(&req)).unwrap();
        let parts = &got["contents"][0]["parts"];
        assert_eq!(parts[0], serde_json::json!({"text": "put the cat on the sofa"}));
        assert_eq!(parts[1], serde_json::json!({"inlineData": {"mimeType": "image/png", "data": "Y2F0"}}));
        assert_eq!(parts[2], serde_json::json!({"inlineData": {"mimeType": "image/jpeg", "data": "c29mYQ=="}}));
    }
}
