//! `GET /images/{id}.{ext}`: caching headers, conditional GET, HEAD, unknown ids.

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

#[tokio::test]
async fn images_are_served_with_strong_etags_and_immutable_caching() {
    let app = spawn_app().await;
    let body: Value = app.generate(pro("cached")).await.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap().to_string();
    let resp = app.get(&url).await;
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    assert_eq!(h["content-type"], "image/jpeg");
    assert_eq!(h["content-length"].to_str().unwrap(), bytes.len().to_string());
    let etag = h["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "strong etag: {etag}");
    let cc = h["cache-control"].to_str().unwrap();
    assert!(cc.starts_with("public, max-age=") && cc.ends_with(", immutable"), "{cc}");
    let max_age: i64 = cc["public, max-age=".len()..cc.len() - ", immutable".len()].parse().unwrap();
    assert!((7 * 86400 - 60..=7 * 86400).contains(&max_age), "max-age runs to expiry: {max_age}");
    assert!(h.contains_key("last-modified"));

    let resp = app.client.get(&url).header("If-None-Match", &etag).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag);
    assert!(resp.bytes().await.unwrap().is_empty());
    let resp = app.client.get(&url).header("If-None-Match", "\"other\"").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let lm = h["last-modified"].to_str().unwrap();
    let resp = app.client.get(&url).header("If-Modified-Since", lm).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);

    let resp = app.client.head(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"].to_str().unwrap(), bytes.len().to_string());
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    assert!(resp.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn unknown_or_mismatched_image_ids_are_404() {
    let app = spawn_app().await;
    let body: Value = app.generate(pro("x")).await.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap();
    let wrong_ext = url.replace(".jpeg", ".png");
    for u in [
        app.url("/images/img_01ABCDEFGHJKMNPQRSTVWXYZ0123456789ABCDEF.png"),
        app.url("/images/nothing"),
        app.url("/images/..%2F..%2Fimagegate.db"),
        wrong_ext,
    ] {
        assert_error(app.get(&u).await, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn an_expired_image_answers_410() {
    let app = spawn_with(|rt| rt.retention = std::time::Duration::from_secs(1), false).await;
    let body: Value = app.generate(pro("short-lived")).await.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap().to_string();
    assert_eq!(app.get(&url).await.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert_error(app.get(&url).await, StatusCode::GONE, "image_expired").await;
}
