//! JSON bodies that carry input images, read in place: the fields as a `Value`, and the input
//! lists (megabytes of `data:` URLs) borrowed from the body's bytes rather than copied into it.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;

use crate::api::error::ApiError;
use crate::api::extract::json_error;

/// A body split into its plain fields and the raw values of its input fields.
pub struct Split<'b> {
    pub fields: Value,
    pub inputs: HashMap<String, &'b RawValue>,
}

/// Splits a JSON object body; `input_fields` are kept raw, every other field parsed.
pub fn split<'b>(bytes: &'b [u8], input_fields: &[&str]) -> Result<Split<'b>, ApiError> {
    let top: HashMap<String, &'b RawValue> = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_data() {
            ApiError::bad_request("invalid_json", "The request body must be a JSON object.")
        } else {
            json_error(e)
        }
    })?;
    let mut fields = Map::new();
    let mut inputs = HashMap::new();
    for (name, raw) in top {
        if input_fields.contains(&name.as_str()) {
            if raw.get() != "null" {
                inputs.insert(name, raw);
            }
        } else {
            let value: Value = serde_json::from_str(raw.get()).map_err(json_error)?;
            fields.insert(name, value);
        }
    }
    Ok(Split { fields: Value::Object(fields), inputs })
}

/// A string borrowed from the body when it has no escapes.
#[derive(Deserialize)]
struct Text<'b>(#[serde(borrow)] Cow<'b, str>);

/// `{"image_url": "…"}` or `{"image_id": "img_…"}` (the JSON form of OpenAI's edits). The
/// strings are `Text`, not `Option<Cow>`: serde borrows a `Cow` only when it is the field's
/// own type, and would copy every `data:` URL here otherwise.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageRef<'b> {
    #[serde(borrow, default)]
    image_url: Option<Text<'b>>,
    #[serde(borrow, default)]
    image_id: Option<Text<'b>>,
}

fn type_error(param: &str, expected: &str) -> ApiError {
    ApiError::bad_request("invalid_type", format!("Invalid type for '{param}': expected {expected}.")).with_param(param)
}

/// An array of reference strings (`reference_images`), each paired with its `param`.
pub fn string_list<'b>(raw: &'b RawValue, name: &str) -> Result<Vec<(String, Cow<'b, str>)>, ApiError> {
    let items: Vec<&'b RawValue> =
        serde_json::from_str(raw.get()).map_err(|_| type_error(name, "an array of strings"))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let param = format!("{name}[{i}]");
        let Text(text) = serde_json::from_str(item.get()).map_err(|_| type_error(&param, "a string"))?;
        out.push((param, text));
    }
    Ok(out)
}

/// One `{"image_url"}` / `{"image_id"}` object, as a reference string.
pub fn image_ref<'b>(raw: &'b RawValue, param: &str) -> Result<Cow<'b, str>, ApiError> {
    let expected = "an object with 'image_url' (an https or data: URL) or 'image_id' (img_…)";
    let r: ImageRef<'b> = serde_json::from_str(raw.get()).map_err(|_| type_error(param, expected))?;
    match (r.image_url.map(|t| t.0), r.image_id.map(|t| t.0)) {
        (Some(url), None) => Ok(url),
        (None, Some(id)) if id.starts_with("img_") => Ok(id),
        (None, Some(_)) => {
            Err(ApiError::bad_request("invalid_image_reference", "'image_id' must be an image id (img_…).")
                .with_param(param))
        }
        _ => Err(type_error(param, expected)),
    }
}

/// An array of image objects (`images`), each paired with its `param`.
pub fn image_list<'b>(raw: &'b RawValue, name: &str) -> Result<Vec<(String, Cow<'b, str>)>, ApiError> {
    let items: Vec<&'b RawValue> =
        serde_json::from_str(raw.get()).map_err(|_| type_error(name, "an array of image objects"))?;
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let param = format!("{name}[{i}]");
        out.push((param.clone(), image_ref(item, &param)?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_stay_raw_and_data_urls_are_borrowed() {
        let body = br#"{"model":"m","n":2,"reference_images":["data:image/png;base64,AAAA","img_1"],"images":null}"#;
        let s = split(body, &["reference_images", "images"]).unwrap();
        assert_eq!(s.fields, serde_json::json!({"model": "m", "n": 2}));
        assert!(!s.inputs.contains_key("images"), "null is absent");
        let list = string_list(s.inputs["reference_images"], "reference_images").unwrap();
        assert_eq!(list[1], ("reference_images[1]".to_string(), Cow::Borrowed("img_1")));
        assert!(matches!(list[0].1, Cow::Borrowed(_)));
    }

    #[test]
    fn image_objects_borrow_their_urls() {
        let raw: &RawValue = serde_json::from_str(r#"[{"image_url":"data:image/png;base64,AAAA"}]"#).unwrap();
        let list = image_list(raw, "images").unwrap();
        assert!(matches!(list[0].1, Cow::Borrowed("data:image/png;base64,AAAA")), "not copied");
    }

    #[test]
    fn wrong_shapes_name_their_param() {
        assert!(split(b"[1]", &[]).is_err());
        let raw: &RawValue = serde_json::from_str(r#"[{"image_url":"https://x/a.png"},{"file_id":"f"}]"#).unwrap();
        let err = image_list(raw, "images").unwrap_err();
        assert_eq!(err.param.as_deref(), Some("images[1]"));
        let raw: &RawValue = serde_json::from_str(r#"["ok", 3]"#).unwrap();
        assert_eq!(string_list(raw, "reference_images").unwrap_err().param.as_deref(), Some("reference_images[1]"));
    }
}
