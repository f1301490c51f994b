//! The API's OpenAPI 3.1 document, built from the handlers' `#[utoipa::path]` attributes as the
//! routes are registered (utoipa-axum: a route and its documentation are one declaration), and
//! `/docs`, a browsable page served from the binary (RapiDoc, vendored: nothing is fetched).
//!
//! utoipa over aide: it is the one DEPENDENCIES.md names, its axum router registers a handler
//! and its path item together, and it needs no change to the handlers' types (aide documents
//! through extractor and response types, which our handlers build in place as JSON).

pub mod docs;
pub mod schemas;

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{OpenApi, RefOr, Response, ResponseBuilder, Schema};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "imagegate",
        description = "Self-hostable image-generation gateway. OpenAI's images, files and batch APIs and Gemini's REST shape, where every request is a durable task: stored, retried, retrievable by its id, with its images served as URLs.\n\nAuthenticate with an API key (`Authorization: Bearer igk_…`; on the Gemini routes also `x-goog-api-key` or `?key=`). The `/admin` routes take the admin token instead.",
        license(name = "Apache-2.0")
    ),
    tags(
        (name = "Images", description = "Generate and edit (OpenAI's images API), and the stored images"),
        (name = "Tasks", description = "The durable record of every request"),
        (name = "Batches", description = "OpenAI's Files and Batch APIs: many prompts, half price where the upstream has a batch API"),
        (name = "Gemini", description = "Gemini's REST shape, for `google-genai`"),
        (name = "Models", description = "Models and aliases"),
        (name = "Webhooks", description = "The key's signing secret (Standard Webhooks)"),
        (name = "Usage", description = "Images and cost"),
        (name = "Admin", description = "Keys, policies, export buckets, channels (admin token)"),
        (name = "Operations", description = "Health and metrics"),
    ),
    components(schemas(schemas::common::Error, schemas::gemini::GeminiError))
)]
struct ApiDoc;

/// The routes' document completed: info, tags, security schemes and who needs which, and the
/// error shape as every operation's `default` answer.
pub fn complete(routes: OpenApi) -> OpenApi {
    let mut doc = <ApiDoc as utoipa::OpenApi>::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.merge(routes);
    let components = doc.components.get_or_insert_with(Default::default);
    let bearer = |what: &str| {
        SecurityScheme::Http(
            HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(what.to_string())).build(),
        )
    };
    components.add_security_scheme("api_key", bearer("An API key, `igk_…` (`imagegate keys create`)."));
    components.add_security_scheme("admin_token", bearer("The admin token (`IMAGEGATE_ADMIN_TOKEN`)."));
    components.add_security_scheme(
        "goog_api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-goog-api-key"))),
    );
    components.add_security_scheme("goog_key_query", SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("key"))));
    // The catalogue is fixed at build time: `model` lists it (aliases and upstream ids).
    let models: Vec<serde_json::Value> = crate::domain::models::public_ids().map(serde_json::Value::from).collect();
    for name in ["GenerationRequest", "EditForm", "EditJson"] {
        if let Some(RefOr::T(Schema::Object(obj))) = components.schemas.get_mut(name)
            && let Some(RefOr::T(Schema::Object(model))) = obj.properties.get_mut("model")
        {
            model.enum_values = Some(models.clone());
        }
    }
    for (path, item) in doc.paths.paths.iter_mut() {
        for op in operations(item) {
            let surface = Surface::of(path);
            op.security = surface.security();
            if !op.responses.responses.contains_key("default") {
                op.responses.responses.insert("default".to_string(), surface.default_error());
            }
        }
    }
    doc
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch, &mut item.head]
        .into_iter()
        .filter_map(|op| op.as_mut())
}

/// Who may call a path, and in which error shape it answers.
#[derive(Debug, PartialEq)]
enum Surface {
    Open,
    Key,
    Admin,
    Gemini,
}

impl Surface {
    fn of(path: &str) -> Surface {
        if path.starts_with("/admin/") {
            Surface::Admin
        } else if path.starts_with("/v1beta/")
            || path.contains(":generateContent")
            || path.contains(":streamGenerateContent")
        {
            Surface::Gemini
        } else if path.starts_with("/v1/") {
            Surface::Key
        } else {
            Surface::Open
        }
    }

    fn security(&self) -> Option<Vec<SecurityRequirement>> {
        let one = |name: &str| SecurityRequirement::new::<_, _, String>(name, []);
        match self {
            Surface::Open => None,
            Surface::Key => Some(vec![one("api_key")]),
            Surface::Admin => Some(vec![one("admin_token")]),
            Surface::Gemini => Some(vec![one("goog_api_key"), one("goog_key_query"), one("api_key")]),
        }
    }

    fn default_error(&self) -> RefOr<Response> {
        let (schema, text) = match self {
            Surface::Gemini => ("GeminiError", "Any other error, in Gemini's shape"),
            _ => (
                "Error",
                "Any other error (403 model not allowed, 409, 410, 413, 502 upstream failure, 504 deadline, …), in OpenAI's shape",
            ),
        };
        RefOr::T(
            ResponseBuilder::new()
                .description(text)
                .content(
                    "application/json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name(schema)))
                        .build(),
                )
                .build(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surfaces_by_path() {
        assert_eq!(Surface::of("/admin/v1/keys"), Surface::Admin);
        assert_eq!(Surface::of("/v1/models/{model}:generateContent"), Surface::Gemini);
        assert_eq!(Surface::of("/v1beta/models"), Surface::Gemini);
        assert_eq!(Surface::of("/v1/models/{id}"), Surface::Key);
        assert_eq!(Surface::of("/images/{file}"), Surface::Open);
    }

    #[test]
    fn model_lists_the_catalogue() {
        let json = crate::api::spec().to_json().unwrap();
        let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
        let models = &doc["components"]["schemas"]["GenerationRequest"]["properties"]["model"]["enum"];
        let models: Vec<&str> = models.as_array().unwrap().iter().filter_map(|m| m.as_str()).collect();
        assert!(models.contains(&"nano-banana-pro") && models.contains(&"gemini-3-pro-image-preview"), "{models:?}");
    }
}

/// The coverage rule: a route is registered with its documentation (`routes!` of handlers with
/// `#[utoipa::path]`), or it is one of these, each with where it is documented. The test
/// below reads the API's source for routes registered any other way.
#[cfg(test)]
const UNDOCUMENTED_ROUTES: &[(&str, Option<&str>)] = &[
    // One axum route serves `{model}:generateContent` and `{model}:streamGenerateContent`.
    ("/v1beta/models/{id}", Some("/v1beta/models/{model}:generateContent")),
    ("/v1/models/{id}", Some("/v1/models/{model}:generateContent")),
    // `[server] metrics_listen`: the documented `/metrics` on an address of its own.
    ("/metrics", Some("/metrics")),
    // The documentation itself, and the dashboard: pages, not API.
    ("/openapi.json", None),
    ("/docs", None),
    ("/docs/rapidoc-min.js", None),
    ("/ui", None),
    ("/ui/", None),
    ("/ui/{file}", None),
    ("/", None),
];

#[cfg(test)]
mod coverage {
    use super::UNDOCUMENTED_ROUTES;
    use std::path::Path;

    /// Every `.route("…"` (and `route_service`, `nest`, `nest_service`) in `src/api`, by file.
    fn plain_routes(dir: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                plain_routes(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("openapi/mod.rs") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for call in [".route(", ".route_service(", ".nest(", ".nest_service("] {
                    for (at, _) in text.match_indices(call) {
                        let rest = text[at + call.len()..].trim_start();
                        let literal = rest.strip_prefix('"').and_then(|r| r.split('"').next()).unwrap_or(rest);
                        out.push((path.display().to_string(), literal.chars().take(80).collect()));
                    }
                }
            }
        }
    }

    #[test]
    fn every_route_is_in_the_spec() {
        let spec = crate::api::spec();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/api");
        let mut found = Vec::new();
        plain_routes(&dir, &mut found);
        assert!(found.iter().any(|(_, p)| p == "/v1beta/models/{id}"), "the scan finds routes: {found:?}");
        for (file, path) in &found {
            let Some((_, documented_as)) = UNDOCUMENTED_ROUTES.iter().find(|(p, _)| p == path) else {
                panic!(
                    "{file} registers {path:?} without documentation: register it with utoipa_axum's routes!() and a \
                     #[utoipa::path] on its handler (or list it in UNDOCUMENTED_ROUTES with where it is documented)"
                );
            };
            if let Some(doc) = documented_as {
                assert!(spec.paths.paths.contains_key(*doc), "{path} is documented as {doc}, which the spec lacks");
            }
        }
    }

    #[test]
    fn every_operation_has_a_summary_a_tag_and_its_errors() {
        let mut spec = crate::api::spec();
        assert!(spec.paths.paths.len() >= 36, "{} paths", spec.paths.paths.len());
        let mut ids = std::collections::HashSet::new();
        for (path, item) in spec.paths.paths.iter_mut() {
            for op in super::operations(item) {
                let id = op.operation_id.clone().unwrap_or_default();
                assert!(ids.insert(id.clone()), "{path}: operation id {id:?} is not unique");
                assert!(op.summary.is_some(), "{path}: no summary");
                assert!(op.tags.as_ref().is_some_and(|t| !t.is_empty()), "{path}: no tag");
                assert!(op.responses.responses.contains_key("default"), "{path}: no default error");
                let open = ["/images/", "/healthz", "/readyz", "/metrics"].iter().any(|p| path.starts_with(p));
                assert_eq!(op.security.is_none(), open, "{path}: security");
            }
        }
    }
}
