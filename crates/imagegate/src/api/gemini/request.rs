//! Gemini's `generateContent` body, translated into the one `ImageRequest` the domain knows:
//! `contents` (text, `inlineData` and `fileData` parts, earlier turns) become the prompt, the
//! task's inputs and its conversation; `generationConfig.imageConfig` the shape; `safetySettings`
//! are passed on. Images are borrowed from the body until they are stored.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use std::borrow::Cow;

use super::error::GeminiError;
use crate::api::openai::body;
use crate::api::openai::images::{Pending, Source, Submission};
use crate::domain::conversation::{Role, SafetySetting, Turn, TurnPart};
use crate::domain::request;

/// Top-level fields taken (camelCase, or the snake_case proto names).
const TOP_FIELDS: &[&str] = &["generationConfig", "generation_config", "safetySettings", "safety_settings"];

/// `generationConfig` fields that shape text generation: accepted, and of no use to an image.
const IGNORED_CONFIG: &[&str] = &[
    "temperature",
    "topP",
    "top_p",
    "topK",
    "top_k",
    "seed",
    "maxOutputTokens",
    "max_output_tokens",
    "stopSequences",
    "stop_sequences",
    "presencePenalty",
    "frequencyPenalty",
    "thinkingConfig",
    "thinking_config",
    "responseMimeType",
    "response_mime_type",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ContentIn<'b> {
    #[serde(default)]
    role: Option<String>,
    #[serde(borrow, default)]
    parts: Vec<PartIn<'b>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct PartIn<'b> {
    #[serde(default)]
    text: Option<String>,
    #[serde(borrow, default, alias = "inline_data")]
    inline_data: Option<InlineIn<'b>>,
    #[serde(default, alias = "file_data")]
    file_data: Option<FileIn>,
    #[serde(default)]
    thought: bool,
    #[serde(default, alias = "thought_signature")]
    thought_signature: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InlineIn<'b> {
    #[serde(default, alias = "mime_type")]
    #[allow(dead_code)]
    mime_type: Option<String>,
    #[serde(borrow)]
    data: Cow<'b, str>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileIn {
    #[serde(default, alias = "mime_type")]
    #[allow(dead_code)]
    mime_type: Option<String>,
    #[serde(alias = "file_uri")]
    file_uri: String,
}

/// Translates a body for `model` (the path's id) into a submission. `inline`: the answer
/// carries image bytes (Gemini's way) rather than URLs.
pub fn translate<'b>(bytes: &'b [u8], model: &str, inline: bool) -> Result<Submission<'b>, GeminiError> {
    let body::Split { fields, inputs } = body::split(bytes, &["contents"])?;
    let obj = fields.as_object().cloned().unwrap_or_default();
    if let Some(unknown) = obj.keys().find(|k| !TOP_FIELDS.contains(&k.as_str())) {
        return Err(GeminiError::invalid(format!(
            "Invalid JSON payload received. Unknown name \"{unknown}\": Cannot find field (imagegate takes contents, generationConfig and safetySettings)."
        )));
    }
    let config = obj.get("generationConfig").or_else(|| obj.get("generation_config")).cloned().unwrap_or(Value::Null);
    let safety = safety_settings(obj.get("safetySettings").or_else(|| obj.get("safety_settings")))?;
    let Some(raw) = inputs.get("contents") else {
        return Err(GeminiError::invalid("* GenerateContentRequest.contents: contents is not specified"));
    };
    let (turns, sources) = conversation(raw)?;

    // The prompt: the last user turn's text (or all user text, if that turn is images only).
    let texts = |only_last: bool| -> String {
        let users: Vec<&Turn> = turns.iter().filter(|t| t.role == Role::User).collect();
        let chosen: Vec<&Turn> = if only_last { users.last().copied().into_iter().collect() } else { users };
        chosen
            .iter()
            .flat_map(|t| t.parts.iter())
            .filter_map(|p| match p {
                TurnPart::Text { text, thought: false, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let mut prompt = texts(true);
    if prompt.trim().is_empty() {
        prompt = texts(false);
    }

    let mut plain = serde_json::Map::new();
    plain.insert("model".into(), json!(model));
    plain.insert("prompt".into(), json!(prompt));
    if inline {
        plain.insert("response_format".into(), json!("b64_json"));
    }
    image_config(&config, &mut plain)?;
    let mut req = request::validate(&Value::Object(plain), &[]).map_err(|e| {
        let param = e.param.as_deref().map(|p| match p {
            "aspect_ratio" => "generationConfig.imageConfig.aspectRatio",
            "image_size" | "size" => "generationConfig.imageConfig.imageSize",
            "n" => "generationConfig.candidateCount",
            "prompt" => "contents",
            other => other,
        });
        let message = match (e.param.as_deref(), e.code) {
            (Some("prompt"), "invalid_value" | "missing_required_parameter") => {
                "* GenerateContentRequest.contents: the request has no text prompt".to_string()
            }
            _ => e.message,
        };
        let mut err = crate::api::error::ApiError::bad_request(e.code, message);
        err.param = param.map(str::to_string);
        GeminiError(err)
    })?;
    request::check_input_count(req.family(), &req.model, sources.len(), "contents")
        .map_err(|e| GeminiError::invalid(e.message))?;
    for (param, source) in &sources {
        if let Source::Named(text) = source {
            request::check_reference(text, param).map_err(|e| {
                GeminiError::invalid(format!(
                    "{} ({param}: fileUri must be an https URL or an imagegate image URL)",
                    e.message
                ))
            })?;
        }
    }
    let hashed = json!({
        "model": model,
        "generationConfig": config,
        "safety": serde_json::to_value(&safety).unwrap_or(Value::Null),
        "turns": serde_json::to_value(&turns).unwrap_or(Value::Null),
        "inline": inline,
    });
    req.turns = turns;
    req.safety = safety;
    req.surface = Some("gemini".into());
    Ok(Submission { req, fields: hashed, inputs: Pending::References { images: sources, mask: None } })
}

/// `contents` → the turns, and the images in the order they appear (each named by its part).
#[allow(clippy::type_complexity)]
fn conversation<'b>(raw: &'b RawValue) -> Result<(Vec<Turn>, Vec<(String, Source<'b>)>), GeminiError> {
    let contents: Vec<ContentIn<'b>> = serde_json::from_str(raw.get()).map_err(|e| {
        GeminiError::invalid(format!(
            "Invalid JSON payload received in 'contents': {e} (parts take text, inlineData and fileData)."
        ))
    })?;
    if contents.is_empty() {
        return Err(GeminiError::invalid("* GenerateContentRequest.contents: contents is not specified"));
    }
    let mut turns = Vec::with_capacity(contents.len());
    let mut sources = Vec::new();
    for (c, content) in contents.into_iter().enumerate() {
        let role = match content.role.as_deref() {
            None | Some("user") | Some("") => Role::User,
            Some("model") => Role::Model,
            Some(other) => {
                return Err(GeminiError::invalid(format!(
                    "Please use a valid role: user, model (contents[{c}].role is \"{other}\")."
                )));
            }
        };
        let mut parts = Vec::with_capacity(content.parts.len());
        for (p, part) in content.parts.into_iter().enumerate() {
            // The model's own drafts in an earlier turn (its thought parts): not sent back, so
            // that a chat does not store and resend every draft; its answers stay.
            if role == Role::Model && part.thought {
                continue;
            }
            let param = format!("contents[{c}].parts[{p}]");
            let signature = part.thought_signature;
            let source = match (part.text, part.inline_data, part.file_data) {
                (Some(text), None, None) => {
                    parts.push(TurnPart::Text { text, thought: part.thought, signature });
                    continue;
                }
                (None, Some(inline), None) => Source::Inline(inline.data),
                (None, None, Some(file)) => Source::Named(Cow::Owned(image_id_of(&file.file_uri))),
                _ => {
                    return Err(GeminiError::invalid(format!(
                        "{param} must have exactly one of text, inlineData or fileData."
                    )));
                }
            };
            parts.push(TurnPart::Input { input: sources.len() as u32, thought: part.thought, signature });
            sources.push((param, source));
        }
        turns.push(Turn { role, parts });
    }
    Ok((turns, sources))
}

/// An imagegate image URL (`…/images/img_….png`, as this gateway answers with `fileData`)
/// names that image by id; any other URI is kept as given (fetched if https).
fn image_id_of(uri: &str) -> String {
    if let Ok(url) = url::Url::parse(uri)
        && let Some(name) = url.path().strip_prefix("/images/")
        && let Some((id, _ext)) = name.split_once('.')
        && id.starts_with("img_")
        && !id.contains('/')
    {
        return id.to_string();
    }
    uri.to_string()
}

/// `generationConfig` → the plain request's fields.
fn image_config(config: &Value, plain: &mut serde_json::Map<String, Value>) -> Result<(), GeminiError> {
    let Some(obj) = config.as_object() else {
        return if config.is_null() {
            Ok(())
        } else {
            Err(GeminiError::invalid("generationConfig must be an object."))
        };
    };
    for (k, v) in obj {
        match k.as_str() {
            "responseModalities" | "response_modalities" => {
                let list: Vec<String> = v
                    .as_array()
                    .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_ascii_uppercase)).collect())
                    .unwrap_or_default();
                if !list.iter().any(|m| m == "IMAGE") {
                    return Err(GeminiError::invalid(
                        "generationConfig.responseModalities must include IMAGE: imagegate serves image models.",
                    ));
                }
            }
            "imageConfig" | "image_config" => {
                for (field, name) in [("aspectRatio", "aspect_ratio"), ("imageSize", "image_size")] {
                    if let Some(value) = v.get(field).or_else(|| v.get(name)).filter(|x| !x.is_null()) {
                        plain.insert(name.to_string(), value.clone());
                    }
                }
            }
            "candidateCount" | "candidate_count" => {
                plain.insert("n".into(), v.clone());
            }
            other if IGNORED_CONFIG.contains(&other) => {}
            other => {
                return Err(GeminiError::invalid(format!(
                    "Invalid JSON payload received. Unknown name \"{other}\" at 'generation_config': Cannot find field."
                )));
            }
        }
    }
    Ok(())
}

fn safety_settings(value: Option<&Value>) -> Result<Vec<SafetySetting>, GeminiError> {
    let Some(v) = value.filter(|v| !v.is_null()) else { return Ok(Vec::new()) };
    let items = v.as_array().ok_or_else(|| GeminiError::invalid("safetySettings must be an array."))?;
    items
        .iter()
        .map(|s| match (s["category"].as_str(), s["threshold"].as_str()) {
            (Some(c), Some(t)) => Ok(SafetySetting { category: c.to_string(), threshold: t.to_string() }),
            _ => Err(GeminiError::invalid("Each safetySettings item needs a category and a threshold.")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_becomes_turns_whose_images_are_inputs_in_order() {
        let body = br#"{"contents": [
            {"role": "user", "parts": [{"inlineData": {"mimeType": "image/png", "data": "AAAA"}}, {"text": "a cat"}]},
            {"role": "model", "parts": [{"text": "Here."}, {"fileData": {"mimeType": "image/png", "fileUri": "http://gw/images/img_01ABC.png"}, "thoughtSignature": "c2ln"}]},
            {"role": "user", "parts": [{"text": "now in snow"}]}],
            "generationConfig": {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}, "temperature": 1},
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]}"#;
        let s = translate(body, "nano-banana-pro", true).unwrap();
        assert_eq!(s.req.prompt, "now in snow");
        assert_eq!((s.req.aspect_ratio.as_str(), s.req.image_size.as_str()), ("16:9", "2K"));
        assert_eq!(s.req.turns.len(), 3);
        assert_eq!(s.req.safety[0].threshold, "BLOCK_NONE");
        assert_eq!(s.req.surface.as_deref(), Some("gemini"));
        let Pending::References { images, .. } = &s.inputs else { panic!("references") };
        assert!(matches!(&images[0], (p, Source::Inline(d)) if p == "contents[0].parts[0]" && d == "AAAA"));
        assert!(matches!(&images[1], (_, Source::Named(id)) if id == "img_01ABC"), "an imagegate URL is its image");
        assert_eq!(
            s.req.turns[1].parts[1],
            TurnPart::Input { input: 1, thought: false, signature: Some("c2ln".into()) }
        );
    }

    #[test]
    fn bad_bodies_are_invalid_arguments() {
        for body in [
            &br#"{"contents": []}"#[..],
            br#"{"contents": [{"parts": [{"text": "x"}]}], "tools": []}"#,
            br#"{"contents": [{"role": "system", "parts": [{"text": "x"}]}]}"#,
            br#"{"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"responseModalities": ["TEXT"]}}"#,
            br#"{"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"imageConfig": {"aspectRatio": "7:3"}}}"#,
            br#"{"contents": [{"parts": [{"functionCall": {}}]}]}"#,
        ] {
            let err = translate(body, "nano-banana-pro", true).err().expect("refused");
            assert_eq!(err.0.status, 400, "{}", String::from_utf8_lossy(body));
        }
    }
}
