//! Validation of the image-generation request body into a normalized [`ImageRequest`].
//!
//! The body is checked field by field from a JSON object (not through a derived struct) so that
//! every error names its `param` and a stable `code`, as OpenAI's API does.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::models::{self, Family};
use super::sizes::{self, ImageShape, Resolution};

pub const MAX_PROMPT_CHARS: usize = 32_000;
pub const MAX_N: u64 = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseFormat {
    Url,
    B64Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputFormat {
    Png,
    Jpeg,
    Webp,
}

impl OutputFormat {
    pub fn parse(s: &str) -> Option<OutputFormat> {
        match s {
            "png" => Some(OutputFormat::Png),
            "jpeg" | "jpg" => Some(OutputFormat::Jpeg),
            "webp" => Some(OutputFormat::Webp),
            _ => None,
        }
    }

    pub fn from_mime(mime: &str) -> Option<OutputFormat> {
        match mime {
            "image/png" => Some(OutputFormat::Png),
            "image/jpeg" | "image/jpg" => Some(OutputFormat::Jpeg),
            "image/webp" => Some(OutputFormat::Webp),
            _ => None,
        }
    }

    pub fn ext(self) -> &'static str {
        match self {
            OutputFormat::Png => "png",
            OutputFormat::Jpeg => "jpeg",
            OutputFormat::Webp => "webp",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            OutputFormat::Png => "image/png",
            OutputFormat::Jpeg => "image/jpeg",
            OutputFormat::Webp => "image/webp",
        }
    }
}

/// A validated request, as stored in the task and handed to the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRequest {
    /// The model id as the client wrote it (an alias stays an alias in responses).
    pub model: String,
    /// The upstream model name the alias resolves to.
    pub upstream_model: String,
    pub prompt: String,
    pub n: u32,
    /// `size` as the client sent it (`auto` when absent).
    pub size: String,
    pub aspect_ratio: String,
    pub image_size: String,
    pub response_format: ResponseFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_format: Option<OutputFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_compression: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Input images, in order: as the stored task keeps them, the `img_…` ids the client named,
    /// and for anything sent or fetched (`data:` and `https` URLs, uploaded files) the id of the
    /// input it became (`inp_…`). On a validated body before storing, what the client sent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reference_images: Vec<String>,
    /// An edit's mask (the id of its input, stored after the images).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mask: Option<String>,
    /// `transparent`, `opaque` or `auto` (OpenAI-compatible upstreams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<String>,
    /// An edit's `input_fidelity` (`high`, `low`; OpenAI-compatible upstreams).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_fidelity: Option<String>,
    /// The request as a conversation, when it came as one (the Gemini surface): sent whole to
    /// upstreams that take one; `prompt` and `reference_images` are its last prompt and images.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<super::conversation::Turn>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub safety: Vec<super::conversation::SafetySetting>,
    /// The API surface the request came through when not OpenAI's (`gemini`), to render its
    /// answer again in that surface's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surface: Option<String>,
    /// Answer as server-sent events (`image_generation.partial_image` events for up to
    /// `partial_images` drafts, then `image_generation.completed`), as OpenAI streams images.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stream: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_images: Option<u8>,
    /// `flex`: the gateway may serve the task through a provider batch job (at the batch
    /// price) as long as it ends by `deadline_at` (Unix seconds); set by the async routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_at: Option<i64>,
    /// Set on the worker's copy when a fallback model serves the request (never stored).
    #[serde(skip)]
    pub served_by_fallback: bool,
}

impl ImageRequest {
    pub fn family(&self) -> Family {
        models::resolve(&self.upstream_model).map(|m| m.family).unwrap_or(Family::Pro)
    }

    pub fn shape(&self) -> ImageShape {
        let family = self.family();
        let exact = (family == Family::OpenAi)
            .then(|| sizes::OPENAI_SIZES.iter().find(|(s, _, _)| *s == self.size).map(|(_, wh, _)| *wh))
            .flatten();
        ImageShape {
            aspect_ratio: sizes::ratio(&self.aspect_ratio).unwrap_or("1:1"),
            resolution: Resolution::parse(&self.image_size).unwrap_or(Resolution::K1),
            flash: family == Family::Flash,
            exact,
        }
    }

    /// This request served by a fallback `model` (an upstream name): the resolution is capped at
    /// what that model makes; the client's model id stays, and `model_served` names the fallback.
    pub fn with_fallback(&self, model: &str) -> ImageRequest {
        let mut r = self.clone();
        r.upstream_model = model.to_string();
        if let Some(m) = models::resolve(model)
            && self.resolution() > m.max_resolution()
        {
            r.image_size = m.max_resolution().as_str().to_string();
        }
        r.served_by_fallback = true;
        r
    }

    /// The upstream model that served this request, when it was a fallback.
    pub fn model_served(&self) -> Option<&str> {
        self.served_by_fallback.then_some(self.upstream_model.as_str())
    }

    pub fn resolution(&self) -> Resolution {
        Resolution::parse(&self.image_size).unwrap_or(Resolution::K1)
    }

    /// Whether the task has input images (reference images, an edit's images or mask).
    pub fn has_inputs(&self) -> bool {
        !self.reference_images.is_empty() || self.mask.is_some()
    }
}

/// A field-level validation failure: renders as a 400 with `param` and `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub message: String,
    pub param: Option<String>,
    pub code: &'static str,
}

fn invalid(param: &str, code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid { message: message.into(), param: Some(param.to_string()), code }
}

/// Fields OpenAI's images API defines that we accept; anything else is refused as OpenAI does.
const KNOWN_FIELDS: &[&str] = &[
    "model",
    "prompt",
    "n",
    "size",
    "aspect_ratio",
    "image_size",
    "response_format",
    "output_format",
    "output_compression",
    "quality",
    "style",
    "background",
    "moderation",
    "user",
    "stream",
    "partial_images",
    "reference_images",
];

/// Input images a model takes at most (Gemini 3 Pro Image: 14; 2.5 Flash Image works best
/// with up to 3; OpenAI's gpt-image-1 edits take 16).
pub fn max_reference_images(family: Family) -> usize {
    match family {
        Family::Pro => 14,
        Family::Flash => 3,
        Family::OpenAi => 16,
    }
}

/// Checks how many input images a request carries against its model; `param` names the list
/// (`reference_images`, `image`, `images`).
pub fn check_input_count(family: Family, model_id: &str, count: usize, param: &str) -> Result<(), Invalid> {
    let max = max_reference_images(family);
    if count > max {
        return Err(invalid(
            &format!("{param}[{max}]"),
            "too_many_images",
            format!("The model '{model_id}' takes at most {max} input images; {count} were given."),
        ));
    }
    Ok(())
}

/// One input named by reference: an `img_…` id of the same key, a `data:` URL or an `https` URL.
pub fn check_reference(text: &str, param: &str) -> Result<(), Invalid> {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    if text.starts_with("img_")
        || text.starts_with("data:")
        || lower.starts_with("https://")
        || lower.starts_with("http://")
    {
        return Ok(());
    }
    Err(invalid(
        param,
        "invalid_image_reference",
        "An input image is an image id of this key (img_…), an https URL, or a data: URL (data:image/png;base64,…).",
    ))
}

/// `reference_images`: strings, each an `img_…` id, an `https` URL or a `data:` URL, at most as
/// many as the model takes.
fn reference_images(obj: &Map<String, Value>, family: Family, model_id: &str) -> Result<Vec<String>, Invalid> {
    let list = match obj.get("reference_images") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(wrong_type("reference_images", "an array of strings", other)),
    };
    check_input_count(family, model_id, list.len(), "reference_images")?;
    let mut out = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let param = format!("reference_images[{i}]");
        let Some(text) = item.as_str() else { return Err(wrong_type(&param, "a string", item)) };
        check_reference(text, &param)?;
        out.push(text.to_string());
    }
    Ok(out)
}

/// Extra fields a route accepts on top of the image fields (e.g. `webhook_url` on the async route).
pub fn validate(body: &Value, extra_fields: &[&str]) -> Result<ImageRequest, Invalid> {
    let Some(obj) = body.as_object() else {
        return Err(Invalid {
            message: "The request body must be a JSON object.".into(),
            param: None,
            code: "invalid_json",
        });
    };
    for key in obj.keys() {
        if !KNOWN_FIELDS.contains(&key.as_str()) && !extra_fields.contains(&key.as_str()) {
            return Err(invalid(key, "unknown_parameter", format!("Unrecognized request argument supplied: {key}")));
        }
    }

    let model_id = required_string(obj, "model")?;
    let model = models::resolve(model_id).ok_or_else(|| {
        let known: Vec<&str> = models::public_ids().collect();
        invalid(
            "model",
            "model_not_found",
            format!("The model '{model_id}' does not exist. Available models: {}.", known.join(", ")),
        )
    })?;

    let prompt = required_string(obj, "prompt")?;
    let chars = prompt.chars().count();
    if prompt.trim().is_empty() {
        return Err(invalid("prompt", "invalid_value", "'prompt' must not be empty."));
    }
    if chars > MAX_PROMPT_CHARS {
        return Err(invalid(
            "prompt",
            "string_above_max_length",
            format!("'prompt' is {chars} characters long; the maximum is {MAX_PROMPT_CHARS}."),
        ));
    }

    let n = match obj.get("n") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(num)) => match num.as_u64() {
            Some(n) if (1..=MAX_N).contains(&n) => n as u32,
            _ => {
                return Err(invalid(
                    "n",
                    "invalid_value",
                    format!("'n' must be an integer from 1 to {MAX_N}; got {num}."),
                ));
            }
        },
        Some(other) => return Err(wrong_type("n", "an integer", other)),
    };

    let size = optional_string(obj, "size")?.unwrap_or("auto");
    if model.family == Family::OpenAi {
        return validate_openai(obj, model_id, model, prompt, n, size);
    }
    let hint = sizes::parse_size(size).ok_or_else(|| {
        invalid(
            "size",
            "invalid_size",
            format!("Invalid value: '{size}'. Supported values are: {}.", sizes::SUPPORTED_SIZES),
        )
    })?;

    let aspect_ratio = match optional_string(obj, "aspect_ratio")? {
        Some(r) => sizes::ratio(r).ok_or_else(|| {
            let all: Vec<&str> = sizes::TABLE.iter().map(|(r, _)| *r).collect();
            invalid(
                "aspect_ratio",
                "invalid_value",
                format!("Invalid aspect_ratio '{r}'. Supported: {}.", all.join(", ")),
            )
        })?,
        None => hint.aspect_ratio.unwrap_or("1:1"),
    };
    let resolution = match optional_string(obj, "image_size")? {
        Some(s) => Resolution::parse(s).ok_or_else(|| {
            invalid("image_size", "invalid_value", format!("Invalid image_size '{s}'. Supported: 1K, 2K, 4K."))
        })?,
        None => hint.resolution.unwrap_or(Resolution::K1),
    };
    if resolution > model.max_resolution() {
        let param = if obj.contains_key("image_size") { "image_size" } else { "size" };
        return Err(invalid(
            param,
            "invalid_size",
            format!(
                "The model '{model_id}' supports resolutions up to {}; {resolution} was requested.",
                model.max_resolution()
            ),
        ));
    }

    let response_format = match optional_string(obj, "response_format")? {
        None | Some("url") => ResponseFormat::Url,
        Some("b64_json") => ResponseFormat::B64Json,
        Some(other) => {
            return Err(invalid(
                "response_format",
                "invalid_value",
                format!("Invalid response_format '{other}'. Supported: url, b64_json."),
            ));
        }
    };

    let output_format = match optional_string(obj, "output_format")? {
        None => None,
        Some(s) => Some(OutputFormat::parse(s).ok_or_else(|| {
            invalid(
                "output_format",
                "invalid_value",
                format!("Invalid output_format '{s}'. Supported: png, jpeg, webp."),
            )
        })?),
    };

    let output_compression = match obj.get("output_compression") {
        None | Some(Value::Null) => None,
        Some(Value::Number(num)) => match num.as_u64() {
            Some(q) if q <= 100 => Some(q as u8),
            _ => {
                return Err(invalid(
                    "output_compression",
                    "invalid_value",
                    format!("'output_compression' must be an integer from 0 to 100; got {num}."),
                ));
            }
        },
        Some(other) => return Err(wrong_type("output_compression", "an integer", other)),
    };
    if output_compression.is_some() && !matches!(output_format, Some(OutputFormat::Jpeg | OutputFormat::Webp)) {
        return Err(invalid(
            "output_compression",
            "invalid_value",
            "'output_compression' applies only with output_format 'jpeg' or 'webp'.",
        ));
    }

    let quality = optional_string(obj, "quality")?;
    if let Some(q) = quality
        && !["auto", "low", "medium", "high", "standard", "hd"].contains(&q)
    {
        return Err(invalid(
            "quality",
            "invalid_value",
            format!("Invalid quality '{q}'. Supported: auto, low, medium, high, standard, hd."),
        ));
    }
    for field in ["style", "moderation"] {
        optional_string(obj, field)?;
    }
    let background = one_of(obj, "background", &["transparent", "opaque", "auto"])?;
    let input_fidelity = one_of(obj, "input_fidelity", &["high", "low"])?;
    let stream = match obj.get("stream") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(other) => return Err(wrong_type("stream", "a boolean", other)),
    };
    let partial_images = match obj.get("partial_images") {
        None | Some(Value::Null) => None,
        Some(Value::Number(num)) => match num.as_u64() {
            Some(p) if p <= 3 => Some(p as u8),
            _ => {
                return Err(invalid(
                    "partial_images",
                    "invalid_value",
                    format!("'partial_images' must be an integer from 0 to 3; got {num}."),
                ));
            }
        },
        Some(other) => return Err(wrong_type("partial_images", "an integer", other)),
    };
    if stream && n > 1 {
        return Err(invalid("n", "invalid_value", "A streamed request makes one image: 'n' must be 1."));
    }
    let user = optional_string(obj, "user")?;
    if user.is_some_and(|u| u.len() > 256) {
        return Err(invalid("user", "string_above_max_length", "'user' is longer than 256 bytes."));
    }

    let reference_images = reference_images(obj, model.family, model_id)?;

    Ok(ImageRequest {
        model: model_id.to_string(),
        upstream_model: model.upstream.to_string(),
        prompt: prompt.to_string(),
        n,
        size: size.to_string(),
        aspect_ratio: aspect_ratio.to_string(),
        image_size: resolution.as_str().to_string(),
        // A stream ends with the image inline, as OpenAI's does.
        response_format: if stream { ResponseFormat::B64Json } else { response_format },
        output_format,
        output_compression,
        quality: quality.map(str::to_string),
        user: user.map(str::to_string),
        reference_images,
        mask: None,
        background: background.map(str::to_string),
        input_fidelity: input_fidelity.map(str::to_string),
        turns: Vec::new(),
        safety: Vec::new(),
        surface: None,
        stream,
        partial_images: if stream { partial_images } else { None },
        service_tier: None,
        deadline_at: None,
        served_by_fallback: false,
    })
}

/// The rest of a request for an OpenAI-sized model: exact OpenAI sizes, no Gemini extensions.
fn validate_openai(
    obj: &Map<String, Value>,
    model_id: &str,
    model: &models::Model,
    prompt: &str,
    n: u32,
    size: &str,
) -> Result<ImageRequest, Invalid> {
    let Some((_, _, ratio)) = sizes::OPENAI_SIZES.iter().find(|(s, _, _)| *s == size) else {
        let all: Vec<&str> = sizes::OPENAI_SIZES.iter().map(|(s, _, _)| *s).collect();
        return Err(invalid(
            "size",
            "invalid_size",
            format!("Invalid value: '{size}'. Supported values for {model_id} are: {}.", all.join(", ")),
        ));
    };
    for field in ["aspect_ratio", "image_size"] {
        if obj.get(field).is_some_and(|v| !v.is_null()) {
            return Err(invalid(
                field,
                "unsupported_parameter",
                format!("'{field}' is not supported by {model_id}; use 'size'."),
            ));
        }
    }
    let reference_images = reference_images(obj, model.family, model_id)?;
    // The common fields are checked by the Gemini path too; reuse it on a square 1K stand-in.
    let mut probe = obj.clone();
    probe.remove("reference_images");
    probe.insert("model".into(), Value::String("nano-banana-pro".into()));
    probe.insert("size".into(), Value::String("auto".into()));
    let common = validate(&Value::Object(probe), &obj.keys().map(String::as_str).collect::<Vec<_>>())?;
    Ok(ImageRequest {
        model: model_id.to_string(),
        upstream_model: model.upstream.to_string(),
        prompt: prompt.to_string(),
        n,
        size: size.to_string(),
        aspect_ratio: ratio.to_string(),
        image_size: "1K".into(),
        reference_images,
        ..common
    })
}

fn required_string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, Invalid> {
    match obj.get(field) {
        None | Some(Value::Null) => {
            Err(invalid(field, "missing_required_parameter", format!("Missing required parameter: '{field}'.")))
        }
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

/// An optional string field that must be one of `allowed`.
fn one_of<'a>(obj: &'a Map<String, Value>, field: &str, allowed: &[&str]) -> Result<Option<&'a str>, Invalid> {
    let value = optional_string(obj, field)?;
    if let Some(v) = value
        && !allowed.contains(&v)
    {
        return Err(invalid(
            field,
            "invalid_value",
            format!("Invalid {field} '{v}'. Supported: {}.", allowed.join(", ")),
        ));
    }
    Ok(value)
}

fn optional_string<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, Invalid> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

fn wrong_type(field: &str, expected: &str, got: &Value) -> Invalid {
    let kind = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    invalid(field, "invalid_type", format!("Invalid type for '{field}': expected {expected}, but got {kind}."))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(v: Value) -> ImageRequest {
        validate(&v, &[]).unwrap()
    }
    fn err(v: Value) -> Invalid {
        validate(&v, &[]).unwrap_err()
    }

    #[test]
    fn defaults_are_one_square_1k_url_image() {
        let r = ok(json!({"model": "nano-banana-pro", "prompt": "a fox"}));
        assert_eq!(r.n, 1);
        assert_eq!(r.aspect_ratio, "1:1");
        assert_eq!(r.image_size, "1K");
        assert_eq!(r.response_format, ResponseFormat::Url);
        assert_eq!(r.upstream_model, "gemini-3-pro-image-preview");
        assert_eq!(r.shape().pixels(), (1024, 1024));
    }

    #[test]
    fn size_then_extension_fields_decide_the_shape() {
        let r = ok(json!({"model": "nano-banana-pro", "prompt": "x", "size": "2048x2048"}));
        assert_eq!((r.aspect_ratio.as_str(), r.image_size.as_str()), ("1:1", "2K"));
        let r = ok(json!({"model": "nano-banana-pro", "prompt": "x", "size": "2048x2048", "aspect_ratio": "16:9"}));
        assert_eq!(r.shape().pixels(), (2752, 1536));
        let r = ok(json!({"model": "nano-banana-pro", "prompt": "x", "image_size": "4k"}));
        assert_eq!(r.image_size, "4K");
        let r = ok(json!({"model": "nano-banana", "prompt": "x", "aspect_ratio": "16:9"}));
        assert_eq!(r.shape().pixels(), (1344, 768));
    }

    #[test]
    fn each_bad_field_names_its_param_and_code() {
        let base = json!({"model": "nano-banana-pro", "prompt": "x"});
        let cases: Vec<(Value, &str, &str)> = vec![
            (json!({"prompt": "x"}), "model", "missing_required_parameter"),
            (json!({"model": "nano-banana-pro"}), "prompt", "missing_required_parameter"),
            (json!({"model": "dall-e-9", "prompt": "x"}), "model", "model_not_found"),
            (json!({"model": 3, "prompt": "x"}), "model", "invalid_type"),
            (json!({"model": "nano-banana-pro", "prompt": ""}), "prompt", "invalid_value"),
            (json!({"model": "nano-banana-pro", "prompt": "x".repeat(32_001)}), "prompt", "string_above_max_length"),
            (json!({"model": "nano-banana-pro", "prompt": "x", "n": 0}), "n", "invalid_value"),
            (json!({"model": "nano-banana-pro", "prompt": "x", "n": 11}), "n", "invalid_value"),
            (json!({"model": "nano-banana-pro", "prompt": "x", "n": 1.5}), "n", "invalid_value"),
            (json!({"model": "nano-banana-pro", "prompt": "x", "n": "2"}), "n", "invalid_type"),
            (json!({"model": "nano-banana-pro", "prompt": "x", "size": "13x7"}), "size", "invalid_size"),
            (
                json!({"model": "nano-banana-pro", "prompt": "x", "aspect_ratio": "7:3"}),
                "aspect_ratio",
                "invalid_value",
            ),
            (json!({"model": "nano-banana-pro", "prompt": "x", "image_size": "8K"}), "image_size", "invalid_value"),
            (json!({"model": "nano-banana", "prompt": "x", "size": "2048x2048"}), "size", "invalid_size"),
            (
                json!({"model": "nano-banana-pro", "prompt": "x", "response_format": "png"}),
                "response_format",
                "invalid_value",
            ),
            (
                json!({"model": "nano-banana-pro", "prompt": "x", "output_format": "gif"}),
                "output_format",
                "invalid_value",
            ),
            (
                json!({"model": "nano-banana-pro", "prompt": "x", "output_format": "jpeg", "output_compression": 101}),
                "output_compression",
                "invalid_value",
            ),
            (
                json!({"model": "nano-banana-pro", "prompt": "x", "output_compression": 50}),
                "output_compression",
                "invalid_value",
            ),
            (json!({"model": "nano-banana-pro", "prompt": "x", "colour": "red"}), "colour", "unknown_parameter"),
            (json!({"model": "nano-banana-pro", "prompt": "x", "stream": "yes"}), "stream", "invalid_type"),
            (json!({"model": "nano-banana-pro", "prompt": "x", "stream": true, "n": 2}), "n", "invalid_value"),
            (
                json!({"model": "nano-banana-pro", "prompt": "x", "partial_images": 4}),
                "partial_images",
                "invalid_value",
            ),
        ];
        for (body, param, code) in cases {
            let e = err(body.clone());
            assert_eq!((e.param.as_deref(), e.code), (Some(param), code), "{body}: {}", e.message);
        }
        assert_eq!(err(json!([base])).code, "invalid_json");
    }

    #[test]
    fn extra_route_fields_are_accepted_only_when_named() {
        let body = json!({"model": "nano-banana-pro", "prompt": "x", "webhook_url": "https://example.com"});
        assert!(validate(&body, &[]).is_err());
        assert!(validate(&body, &["webhook_url"]).is_ok());
    }
}
