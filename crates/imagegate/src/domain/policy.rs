//! A key's policy: limits and retention set by the operator (`PATCH /admin/v1/keys/{id}`).
//! Every field is optional; absent means the configured default (unlimited out of the box).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::time::Duration;

use super::{duration, models};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyPolicy {
    /// How long this key's images are kept, e.g. "30d".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<String>,
    /// Requests per minute on the generation routes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u32>,
    /// Tasks queued or running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Images per UTC day (reserved at submit, given back when a task fails).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_images: Option<u32>,
    /// Total spend allowed, in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_usd: Option<f64>,
    /// Models this key may use (ids or aliases); absent: all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

pub const FIELDS: [&str; 6] = ["retention", "rpm", "max_concurrency", "daily_images", "budget_usd", "models"];

impl KeyPolicy {
    pub fn retention(&self) -> Option<Duration> {
        self.retention.as_deref().and_then(|r| duration::parse(r).ok())
    }

    /// Whether the key may use `model` (compared by the upstream model an id resolves to, so an
    /// alias allows its canonical id and the other way round).
    pub fn allows_model(&self, model: &str) -> bool {
        let Some(list) = &self.models else { return true };
        let target = models::resolve(model).map(|m| m.upstream).unwrap_or(model);
        list.iter().any(|m| m == model || models::resolve(m).map(|x| x.upstream).unwrap_or(m) == target)
    }

    /// Applies a PATCH body: each given field is set, `null` clears it. Errors name the field.
    pub fn apply(&mut self, patch: &Map<String, Value>) -> Result<(), (String, String)> {
        let bad = |f: &str, m: &str| Err((f.to_string(), m.to_string()));
        for (k, v) in patch {
            match k.as_str() {
                "retention" => match v {
                    Value::Null => self.retention = None,
                    Value::String(s) => match duration::parse(s) {
                        Ok(d) if d >= Duration::from_secs(1) => self.retention = Some(s.clone()),
                        _ => {
                            return bad(
                                k,
                                "'retention' must be a duration such as \"7d\", \"30d\" or \"12h\" (at least 1s).",
                            );
                        }
                    },
                    _ => return bad(k, "'retention' must be a duration string such as \"30d\"."),
                },
                "rpm" | "max_concurrency" | "daily_images" => {
                    let n = match v {
                        Value::Null => None,
                        Value::Number(n) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
                            Some(n) if n >= 1 => Some(n),
                            _ => return bad(k, &format!("'{k}' must be a positive integer or null.")),
                        },
                        _ => return bad(k, &format!("'{k}' must be a positive integer or null.")),
                    };
                    match k.as_str() {
                        "rpm" => self.rpm = n,
                        "max_concurrency" => self.max_concurrency = n,
                        _ => self.daily_images = n,
                    }
                }
                "budget_usd" => match v {
                    Value::Null => self.budget_usd = None,
                    Value::Number(n) => match n.as_f64() {
                        Some(b) if b.is_finite() && b >= 0.0 => self.budget_usd = Some(b),
                        _ => return bad(k, "'budget_usd' must be a non-negative number or null."),
                    },
                    _ => return bad(k, "'budget_usd' must be a non-negative number or null."),
                },
                "models" => match v {
                    Value::Null => self.models = None,
                    Value::Array(items) => {
                        let mut list = Vec::new();
                        for item in items {
                            match item.as_str() {
                                Some(m) if models::resolve(m).is_some() => list.push(m.to_string()),
                                _ => return bad(k, "'models' must list known model ids (see GET /v1/models)."),
                            }
                        }
                        self.models = Some(list);
                    }
                    _ => return bad(k, "'models' must be an array of model ids or null."),
                },
                other => return bad(other, &format!("Unrecognized argument: {other}")),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patch(p: &mut KeyPolicy, v: Value) -> Result<(), (String, String)> {
        p.apply(v.as_object().unwrap())
    }

    #[test]
    fn fields_set_and_null_clears() {
        let mut p = KeyPolicy::default();
        patch(
            &mut p,
            json!({"retention": "30d", "rpm": 60, "max_concurrency": 4, "daily_images": 500,
                            "budget_usd": 25.0, "models": ["nano-banana-pro"]}),
        )
        .unwrap();
        assert_eq!(p.retention(), Some(Duration::from_secs(30 * 86400)));
        assert_eq!((p.rpm, p.max_concurrency, p.daily_images), (Some(60), Some(4), Some(500)));
        assert!(p.allows_model("gemini-3-pro-image-preview"), "aliases match their canonical id");
        assert!(!p.allows_model("nano-banana"));
        patch(&mut p, json!({"rpm": null, "models": null})).unwrap();
        assert_eq!(p.rpm, None);
        assert!(p.allows_model("nano-banana"));
        assert_eq!(p.max_concurrency, Some(4), "untouched fields stay");
    }

    #[test]
    fn bad_values_name_their_field() {
        let mut p = KeyPolicy::default();
        for (body, field) in [
            (json!({"retention": "forever"}), "retention"),
            (json!({"rpm": 0}), "rpm"),
            (json!({"rpm": -3}), "rpm"),
            (json!({"daily_images": "5"}), "daily_images"),
            (json!({"budget_usd": -1}), "budget_usd"),
            (json!({"models": ["dall-e-3"]}), "models"),
            (json!({"colour": 1}), "colour"),
        ] {
            assert_eq!(patch(&mut p, body.clone()).unwrap_err().0, field, "{body}");
        }
    }
}
