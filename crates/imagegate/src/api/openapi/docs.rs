//! `/openapi.json` and `/docs`: the document (rendered once, at start) and a page that browses
//! it, with the RapiDoc bundle served from the binary (gzipped as vendored in `assets/docs/`).

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use std::io::Read;

const RAPIDOC_GZ: &[u8] = include_bytes!("../../../assets/docs/rapidoc-min.js.gz");

const PAGE: &str = r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imagegate API</title>
<script type="module" src="/docs/rapidoc-min.js"></script>
</head>
<body>
<rapi-doc spec-url="/openapi.json" render-style="read" load-fonts="false" show-header="false" allow-spec-url-load="false"
  allow-spec-file-load="false" allow-server-selection="false" allow-authentication="true"
  persist-auth="false" schema-description-expanded="true" regular-font="system-ui, sans-serif"
  mono-font="ui-monospace, monospace" primary-color="#2f6f5e"></rapi-doc>
</body>
</html>
"##;

/// Routes of the documentation, not of the API: they are not in the document themselves.
pub fn routes<S: Clone + Send + Sync + 'static>(spec: Bytes) -> Router<S> {
    Router::new()
        .route(
            "/openapi.json",
            get(move || {
                let spec = spec.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], spec) }
            }),
        )
        .route("/docs", get(page))
        .route("/docs/rapidoc-min.js", get(rapidoc))
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-cache")], PAGE).into_response()
}

async fn rapidoc(headers: HeaderMap) -> Response {
    let takes_gzip =
        crate::api::extract::header_tokens(&headers, "accept-encoding").any(|e| e.eq_ignore_ascii_case("gzip"));
    let mut resp = if takes_gzip {
        let mut r = Bytes::from_static(RAPIDOC_GZ).into_response();
        r.headers_mut().insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        // Inflated once, on the first such request, and kept (860 KB, shared by every answer):
        // a flood of them costs the sending, not a decompression each.
        static PLAIN: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
        let plain = PLAIN.get_or_init(|| {
            let mut out = Vec::with_capacity(RAPIDOC_GZ.len() * 4);
            // The vendored file is checked by a test; a failure would serve an empty script.
            let _ = flate2::read::GzDecoder::new(RAPIDOC_GZ).read_to_end(&mut out);
            Bytes::from(out)
        });
        plain.clone().into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    resp
}
