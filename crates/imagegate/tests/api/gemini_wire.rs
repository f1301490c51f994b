//! What goes over the wire to Gemini, and how its answers are read.

use imagegate_fakes::{Reply, gemini::fixture};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn every_size_form_reaches_gemini_as_the_documented_image_config() {
    let app = spawn_gemini_app().await;
    let cases: Vec<(Value, &str, &str, Option<&str>)> = vec![
        (json!({"model": "nano-banana-pro"}), "gemini-3-pro-image-preview", "1:1", Some("1K")),
        (
            json!({"model": "gemini-3-pro-image-preview", "size": "2048x2048"}),
            "gemini-3-pro-image-preview",
            "1:1",
            Some("2K"),
        ),
        (json!({"model": "nano-banana-pro", "size": "4096x4096"}), "gemini-3-pro-image-preview", "1:1", Some("4K")),
        (json!({"model": "nano-banana-pro", "size": "1536x1024"}), "gemini-3-pro-image-preview", "3:2", Some("1K")),
        (json!({"model": "nano-banana-pro", "size": "1024x1536"}), "gemini-3-pro-image-preview", "2:3", Some("1K")),
        (json!({"model": "nano-banana-pro", "size": "auto"}), "gemini-3-pro-image-preview", "1:1", Some("1K")),
        (json!({"model": "nano-banana-pro", "size": "2752x1536"}), "gemini-3-pro-image-preview", "16:9", Some("2K")),
        (json!({"model": "nano-banana-pro", "size": "6336x2688"}), "gemini-3-pro-image-preview", "21:9", Some("4K")),
        (
            json!({"model": "nano-banana-pro", "aspect_ratio": "9:16", "image_size": "2K"}),
            "gemini-3-pro-image-preview",
            "9:16",
            Some("2K"),
        ),
        (
            json!({"model": "nano-banana-pro", "size": "1024x1024", "aspect_ratio": "4:5"}),
            "gemini-3-pro-image-preview",
            "4:5",
            Some("1K"),
        ),
        (
            json!({"model": "nano-banana-pro", "size": "1024x1024", "image_size": "4k"}),
            "gemini-3-pro-image-preview",
            "1:1",
            Some("4K"),
        ),
        (json!({"model": "nano-banana", "aspect_ratio": "21:9"}), "gemini-2.5-flash-image", "21:9", None),
    ];
    for (i, (mut body, model, ratio, size)) in cases.into_iter().enumerate() {
        body["prompt"] = json!("a watercolor fox");
        let resp = app.generate(body.clone()).await;
        assert_eq!(resp.status(), 200, "{body}: {}", resp.text().await.unwrap());
        let calls = app.gemini().script.calls();
        let call = &calls[i];
        assert_eq!(call.path, format!("/v1beta/models/{model}:streamGenerateContent"), "{body}");
        assert_eq!(call.api_key.as_deref(), Some("test-gemini-key"));
        let config = &call.body["generationConfig"];
        assert_eq!(config["responseModalities"], json!(["TEXT", "IMAGE"]));
        assert_eq!(config["imageConfig"]["aspectRatio"], json!(ratio), "{body}");
        assert_eq!(config["imageConfig"]["imageSize"].as_str(), size, "{body}");
        assert_eq!(call.body["contents"][0]["parts"][0]["text"], "a watercolor fox");
    }
    // Every ratio × resolution of the table reaches Gemini as that pair.
    for ratio in ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"] {
        for size in ["1K", "2K", "4K"] {
            let resp = app
                .generate(json!({"model": "nano-banana-pro", "prompt": "p", "aspect_ratio": ratio, "image_size": size}))
                .await;
            assert_eq!(resp.status(), 200, "{ratio} {size}");
            let last = app.gemini().script.calls().pop().unwrap();
            assert_eq!(last.body["generationConfig"]["imageConfig"], json!({"aspectRatio": ratio, "imageSize": size}));
        }
    }
}

#[tokio::test]
async fn the_final_image_is_served_not_a_thought_draft() {
    let app = spawn_gemini_app().await;
    let resp = app.generate(pro("a fox in a birch forest")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let served = app.get(body["data"][0]["url"].as_str().unwrap()).await;
    assert_eq!(served.headers()["content-type"], "image/jpeg");
    let bytes = served.bytes().await.unwrap();
    let finals = app.gemini().finals.lock().unwrap().clone();
    use base64::Engine;
    let expected = base64::engine::general_purpose::STANDARD.decode(&finals[0]).unwrap();
    assert_eq!(bytes.to_vec(), expected, "the last non-thought image, byte for byte");
    assert_eq!(body["data"][0]["revised_prompt"], "Here is the image you asked for.");
}

#[tokio::test]
async fn a_safety_refusal_is_a_400_after_exactly_one_call() {
    let app = spawn_gemini_app().await;
    for (name, _) in [("finish-image-safety.json", 0), ("prompt-blocked.json", 1), ("text-only-refusal.json", 2)] {
        let before = app.upstream_calls();
        app.gemini().script.push(Reply::Json { status: 200, body: fixture(name) });
        let resp = app.generate(pro("something forbidden")).await;
        let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
        let body = assert_error(resp, StatusCode::BAD_REQUEST, "content_policy_violation").await;
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(app.upstream_calls() - before, 1, "{name}: refusals are never retried");
        let task: Value = app.get_task(&app.key, &task_id).await.json().await.unwrap();
        assert_eq!(task["status"], "failed");
        assert_eq!(task["error"]["code"], "content_policy_violation");
    }
}

#[tokio::test]
async fn upstream_errors_map_to_the_documented_statuses() {
    let app = spawn_gemini_app().await;
    let cases = [
        (429, "error-429-quota.json", StatusCode::TOO_MANY_REQUESTS, "upstream_rate_limited"),
        (503, "error-503-overloaded.json", StatusCode::BAD_GATEWAY, "upstream_error"),
        (400, "error-400-invalid.json", StatusCode::BAD_REQUEST, "upstream_invalid_request"),
        // Last: a refused credential disables the (only) channel.
        (403, "error-403-key.json", StatusCode::BAD_GATEWAY, "upstream_auth_failed"),
    ];
    for (status, name, want, code) in cases {
        // Enough answers to exhaust the retries (3 tries in tests).
        for _ in 0..3 {
            app.gemini().script.push(Reply::Json { status, body: fixture(name) });
        }
        let before = app.upstream_calls();
        let resp = app.generate(pro("x")).await;
        let retry_after = resp.headers().get("retry-after").cloned();
        let body = assert_error(resp, want, code).await;
        if want == StatusCode::TOO_MANY_REQUESTS {
            assert!(retry_after.is_some(), "429 carries Retry-After");
        }
        if want.is_server_error() {
            let msg = body["error"]["message"].as_str().unwrap();
            assert!(
                !msg.contains("test-gemini-key") && !msg.contains("unregistered callers"),
                "5xx stays generic: {msg}"
            );
        }
        let tries = app.upstream_calls() - before;
        // 429 with a 19 s retryDelay (over the tests' 5 s cap), 403 and 400 are not retried.
        let expected = if status == 503 { 3 } else { 1 };
        assert_eq!(tries, expected, "{name}");
        while app.gemini().script.drop_scripted() {}
        if status == 400 {
            for _ in 0..3 {
                app.gemini().script.push(Reply::Raw { status: 200, body: "<html>not json</html>".into() });
            }
            assert_error(app.generate(pro("x")).await, StatusCode::BAD_GATEWAY, "upstream_error").await;
        }
    }
    // The channel whose key was refused is disabled and reported; nothing else can serve.
    let before = app.upstream_calls();
    assert_error(app.generate(pro("x")).await, StatusCode::SERVICE_UNAVAILABLE, "no_healthy_channel").await;
    assert_eq!(app.upstream_calls(), before);
    let channels: Value = app.admin(reqwest::Method::GET, "/admin/v1/channels", None).await.json().await.unwrap();
    assert_eq!(channels["data"][0]["state"], "disabled");
    assert!(channels["data"][0]["disabled_reason"].as_str().unwrap().contains("unregistered callers"));
}
