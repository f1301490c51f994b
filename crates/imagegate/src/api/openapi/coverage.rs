//! The spec's coverage of the router, checked: every route is in the document, and every
//! operation has what a reader needs.

/// The coverage rule: a route is registered with its documentation (`routes!` of handlers with
/// `#[utoipa::path]`), or it is one of these, each with where it is documented. The test
/// below reads the API's source for routes registered any other way.
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

mod scan {
    use super::UNDOCUMENTED_ROUTES;
    use std::path::Path;

    /// Every `.route("…"` (and `route_service`, `nest`, `nest_service`) in `src/api`, by file.
    fn plain_routes(dir: &Path, out: &mut Vec<(String, String)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                plain_routes(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("openapi/coverage.rs") {
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
            for op in crate::api::openapi::operations(item) {
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
