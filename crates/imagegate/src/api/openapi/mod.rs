//! The API's OpenAPI 3.1 document, built from the handlers' `#[utoipa::path]` attributes as the
//! routes are registered (utoipa-axum: a route and its documentation are one declaration), and
//! `/docs`, a browsable page served from the binary (RapiDoc, vendored: nothing is fetched).
//!
//! utoipa over aide: it is the one DEPENDENCIES.md names, its axum router registers a handler
//! and its path item together, and it needs no change to the handlers' types (aide documents
//! through extractor and response types, which our handlers build in place as JSON).

#[cfg(test)]
mod coverage;
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
