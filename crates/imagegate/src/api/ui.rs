//! `/ui`: the web dashboard, three files embedded in the binary (`assets/ui/`), plain
//! JavaScript against this API (no framework, no build step, nothing fetched from elsewhere).
//! Chosen over server-rendered templates because every screen is the API's own JSON already;
//! over a bundled frontend because 30 KB of readable code needs no toolchain to change.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::Digest;
use std::sync::LazyLock;

struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

fn asset(body: &'static str, content_type: &'static str) -> Asset {
    let digest = sha2::Sha256::digest(body.as_bytes());
    let etag = format!("\"{}\"", digest.iter().take(12).map(|b| format!("{b:02x}")).collect::<String>());
    Asset { body, content_type, etag }
}

static INDEX: LazyLock<Asset> =
    LazyLock::new(|| asset(include_str!("../../assets/ui/index.html"), "text/html; charset=utf-8"));
static SCRIPT: LazyLock<Asset> =
    LazyLock::new(|| asset(include_str!("../../assets/ui/app.js"), "text/javascript; charset=utf-8"));
static STYLE: LazyLock<Asset> =
    LazyLock::new(|| asset(include_str!("../../assets/ui/app.css"), "text/css; charset=utf-8"));

/// Only this origin's scripts, styles and API; images also from elsewhere (a URL mode may serve
/// them from an S3 endpoint). No framing.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data: blob: https: http:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/ui", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route("/ui/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route("/ui/{file}", get(file))
        // A browser pointed at the gateway itself lands on the dashboard.
        .route("/", get(|| async { axum::response::Redirect::to("/ui") }))
}

async fn file(axum::extract::Path(name): axum::extract::Path<String>, headers: HeaderMap) -> Response {
    match name.as_str() {
        "app.js" => serve(&SCRIPT, &headers),
        "app.css" => serve(&STYLE, &headers),
        "index.html" => serve(&INDEX, &headers),
        _ => super::error::ApiError::not_found(format!("No dashboard file '{name}'.")).into_response(),
    }
}

fn serve(a: &Asset, headers: &HeaderMap) -> Response {
    let fresh = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| v == a.etag);
    let mut resp = if fresh { StatusCode::NOT_MODIFIED.into_response() } else { a.body.into_response() };
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(a.content_type));
    if let Ok(v) = HeaderValue::from_str(&a.etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}
