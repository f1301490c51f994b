//! The sync route end to end: URL and base64 answers, n images, transcoding.

use base64::Engine;
use serde_json::{Value, json};

use crate::support::*;

async fn fetch_image(app: &TestApp, url: &str) -> (String, Vec<u8>) {
    let resp = app.get(url).await;
    assert_eq!(resp.status(), 200, "{url}");
    let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
    (ct, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn a_2048_request_returns_a_url_serving_a_real_2048_image() {
    let app = spawn_app().await;
    let resp = app.generate(json!({"model": "nano-banana-pro", "prompt": "a red fox", "size": "2048x2048"})).await;
    assert_eq!(resp.status(), 200);
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    assert!(task_id.starts_with("task_"));
    let text = resp.text().await.unwrap();
    assert!(text.len() < 1024, "a one-image url response stays under 1 KB: {} bytes", text.len());
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(body["created"].as_i64().unwrap() > 1_700_000_000);
    let item = &body["data"][0];
    assert!(item["expires_at"].as_i64().unwrap() > body["created"].as_i64().unwrap() + 6 * 86400);
    let url = item["url"].as_str().unwrap();
    assert!(url.starts_with(&app.base), "{url}");
    let (ct, bytes) = fetch_image(&app, url).await;
    assert_eq!(ct, "image/jpeg");
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (2048, 2048));
}

#[tokio::test]
async fn b64_json_inlines_the_same_image_the_url_serves() {
    let app = spawn_app().await;
    let body = json!({"model": "nano-banana", "prompt": "a kite", "response_format": "b64_json"});
    let resp = app.generate_with(&app.key, body.clone(), &[("idempotency-key", "kite-1")]).await;
    assert_eq!(resp.status(), 200);
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let first: Value = resp.json().await.unwrap();
    let item = &first["data"][0];
    assert!(item.get("url").is_none());
    let bytes = base64::engine::general_purpose::STANDARD.decode(item["b64_json"].as_str().unwrap()).unwrap();
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (1024, 1024));
    assert_eq!(image::guess_format(&bytes).unwrap(), image::ImageFormat::Png, "Flash answers PNG");

    // The stored image is the same bytes: through the task's URL, and inlined again from
    // storage when the request is retried with its Idempotency-Key.
    let task: Value = app.get_task(&app.key, &task_id).await.json().await.unwrap();
    let (_, served) = fetch_image(&app, task["result"]["data"][0]["url"].as_str().unwrap()).await;
    assert_eq!(served, bytes, "the url serves what was inlined");
    let again = app.generate_with(&app.key, body, &[("idempotency-key", "kite-1")]).await;
    assert_eq!(again.headers()["imagegate-task-id"].to_str().unwrap(), task_id);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["data"][0]["b64_json"], item["b64_json"]);
}

#[tokio::test]
async fn n_3_gives_three_distinct_images() {
    let app = spawn_gemini_app().await;
    let resp = app.generate(json!({"model": "nano-banana-pro", "prompt": "three owls", "n": 3})).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    let mut seen = Vec::new();
    for item in data {
        let (_, bytes) = fetch_image(&app, item["url"].as_str().unwrap()).await;
        assert!(!seen.contains(&bytes), "images must differ");
        seen.push(bytes);
    }
    assert_eq!(app.upstream_calls(), 3, "Gemini gives one image per call: n calls");
    for call in app.gemini().script.calls() {
        assert!(call.body["generationConfig"].get("candidateCount").is_none());
    }
}

#[tokio::test]
async fn output_format_webp_and_png_are_transcoded() {
    let app = spawn_app().await;
    for (format, mime, magic) in [
        ("webp", "image/webp", image::ImageFormat::WebP),
        ("png", "image/png", image::ImageFormat::Png),
        ("jpeg", "image/jpeg", image::ImageFormat::Jpeg),
    ] {
        let resp = app
            .generate(json!({"model": "nano-banana-pro", "prompt": "a lighthouse", "aspect_ratio": "16:9", "output_format": format}))
            .await;
        assert_eq!(resp.status(), 200, "{format}");
        let body: Value = resp.json().await.unwrap();
        let url = body["data"][0]["url"].as_str().unwrap();
        assert!(url.ends_with(&format!(".{format}")), "{url}");
        let (ct, bytes) = fetch_image(&app, url).await;
        assert_eq!(ct, mime);
        assert_eq!(image::guess_format(&bytes).unwrap(), magic);
        let img = image::load_from_memory(&bytes).unwrap();
        assert_eq!((img.width(), img.height()), (1376, 768));
    }
}

#[tokio::test]
async fn models_are_listed_and_say_they_are_simulated() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/v1/models")).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    for id in ["nano-banana-pro", "gemini-3-pro-image-preview", "gemini-3-pro-image", "nano-banana"] {
        assert!(ids.contains(&id), "{id} in {ids:?}");
    }
    assert!(body["data"].as_array().unwrap().iter().all(|m| m["owned_by"] == "simulated"));
}
