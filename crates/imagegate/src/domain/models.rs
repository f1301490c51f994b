//! The model catalogue: public ids, aliases and what each model can do. Pure data.

use super::sizes::Resolution;

/// Which Gemini image family a model belongs to (decides its size table and price).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Gemini 3 Pro Image ("Nano Banana Pro"): 1K/2K/4K, returns JPEG, drafts thoughts first.
    Pro,
    /// Gemini 2.5 Flash Image ("Nano Banana"): 1K only, returns PNG.
    Flash,
    /// OpenAI's image models (served by an OpenAI-compatible upstream): exact sizes, PNG.
    OpenAi,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Model {
    /// The name sent upstream.
    pub upstream: &'static str,
    pub family: Family,
    pub aliases: &'static [&'static str],
}

impl Model {
    pub fn max_resolution(&self) -> Resolution {
        match self.family {
            Family::Pro => Resolution::K4,
            Family::Flash | Family::OpenAi => Resolution::K1,
        }
    }
}

pub const CATALOG: [Model; 4] = [
    Model {
        upstream: "gemini-3-pro-image-preview",
        family: Family::Pro,
        aliases: &["nano-banana-pro", "gemini-3-pro-image"],
    },
    Model {
        upstream: "gemini-2.5-flash-image",
        family: Family::Flash,
        aliases: &["nano-banana", "gemini-2.5-flash-image-preview"],
    },
    Model { upstream: "gpt-image-1", family: Family::OpenAi, aliases: &[] },
    Model { upstream: "gpt-image-1-mini", family: Family::OpenAi, aliases: &[] },
];

/// Finds a model by its upstream name or any alias.
pub fn resolve(id: &str) -> Option<&'static Model> {
    CATALOG.iter().find(|m| m.upstream == id || m.aliases.contains(&id))
}

/// Every public id (aliases first, as users know them), for `GET /v1/models`.
pub fn public_ids() -> impl Iterator<Item = &'static str> {
    CATALOG.iter().flat_map(|m| m.aliases.iter().copied().chain(std::iter::once(m.upstream)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_resolve_to_their_upstream_model() {
        assert_eq!(resolve("nano-banana-pro").unwrap().upstream, "gemini-3-pro-image-preview");
        assert_eq!(resolve("gemini-3-pro-image").unwrap().upstream, "gemini-3-pro-image-preview");
        assert_eq!(resolve("nano-banana").unwrap().upstream, "gemini-2.5-flash-image");
        assert!(resolve("dall-e-3").is_none());
        assert!(public_ids().any(|id| id == "gemini-3-pro-image-preview"));
    }
}
