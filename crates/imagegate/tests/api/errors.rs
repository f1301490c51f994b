//! API.md's error table: each bad input gets its status and OpenAI-style body, and costs nothing
//! upstream.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn each_bad_input_gets_its_status_and_makes_no_upstream_call() {
    let app = spawn_gemini_app().await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"prompt": "x"}), "model", "missing_required_parameter"),
        (json!({"model": "nano-banana-pro"}), "prompt", "missing_required_parameter"),
        (json!({"model": "dall-e-3", "prompt": "x"}), "model", "model_not_found"),
        (json!({"model": "nano-banana-pro", "prompt": ""}), "prompt", "invalid_value"),
        (json!({"model": "nano-banana-pro", "prompt": "x".repeat(32_001)}), "prompt", "string_above_max_length"),
        (json!({"model": "nano-banana-pro", "prompt": "x", "n": 0}), "n", "invalid_value"),
        (json!({"model": "nano-banana-pro", "prompt": "x", "n": 11}), "n", "invalid_value"),
        (json!({"model": "nano-banana-pro", "prompt": "x", "n": "3"}), "n", "invalid_type"),
        (json!({"model": "nano-banana-pro", "prompt": "x", "size": "13x7"}), "size", "invalid_size"),
        (json!({"model": "nano-banana-pro", "prompt": "x", "size": 1024}), "size", "invalid_type"),
        (json!({"model": "nano-banana-pro", "prompt": "x", "aspect_ratio": "5:3"}), "aspect_ratio", "invalid_value"),
        (json!({"model": "nano-banana-pro", "prompt": "x", "image_size": "8K"}), "image_size", "invalid_value"),
        (json!({"model": "nano-banana", "prompt": "x", "size": "4096x4096"}), "size", "invalid_size"),
        (
            json!({"model": "nano-banana-pro", "prompt": "x", "response_format": "png"}),
            "response_format",
            "invalid_value",
        ),
        (json!({"model": "nano-banana-pro", "prompt": "x", "output_format": "gif"}), "output_format", "invalid_value"),
        (
            json!({"model": "nano-banana-pro", "prompt": "x", "output_format": "webp", "output_compression": 500}),
            "output_compression",
            "invalid_value",
        ),
        (
            json!({"model": "nano-banana-pro", "prompt": "x", "unknown_field": true}),
            "unknown_field",
            "unknown_parameter",
        ),
        (json!({"model": "nano-banana-pro", "prompt": "x", "stream": true, "n": 3}), "n", "invalid_value"),
    ];
    for (body, param, code) in cases {
        let resp = app.generate(body.clone()).await;
        let err = assert_error(resp, StatusCode::BAD_REQUEST, code).await;
        assert_eq!(err["error"]["param"], json!(param), "{body}");
        assert_eq!(err["error"]["type"], "invalid_request_error");
    }
    assert_eq!(app.upstream_calls(), 0, "bad input never reaches the upstream");
}

#[tokio::test]
async fn malformed_bodies_get_clear_errors_not_500s() {
    let app = spawn_app().await;
    let post = |body: &'static str, ct: &'static str| {
        app.client
            .post(app.url("/v1/images/generations"))
            .bearer_auth(&app.key)
            .header("content-type", ct)
            .body(body)
            .send()
    };
    assert_error(post("{not json", "application/json").await.unwrap(), StatusCode::BAD_REQUEST, "invalid_json").await;
    assert_error(post("[1,2]", "application/json").await.unwrap(), StatusCode::BAD_REQUEST, "invalid_json").await;
    assert_error(post("", "application/json").await.unwrap(), StatusCode::BAD_REQUEST, "invalid_json").await;
    assert_error(
        post("model=x", "application/x-www-form-urlencoded").await.unwrap(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let app = spawn_app().await;
    // Routes without input images keep the 1 MB limit.
    let big = json!({"name": "x".repeat(2 * 1024 * 1024)});
    let resp = app.admin(reqwest::Method::POST, "/admin/v1/keys", Some(big)).await;
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large").await;
    // The image routes take bodies sized for their input images: a 2 MB prompt is read, and
    // refused for its length.
    let long = json!({"model": "nano-banana-pro", "prompt": "x".repeat(2 * 1024 * 1024)});
    let err = assert_error(app.generate(long).await, StatusCode::BAD_REQUEST, "string_above_max_length").await;
    assert_eq!(err["error"]["param"], "prompt");
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_json() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/v1/nothing-here")).bearer_auth(&app.key).send().await.unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "unknown_route").await;
    let resp = app.client.delete(app.url("/v1/images/generations")).bearer_auth(&app.key).send().await.unwrap();
    assert_error(resp, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
}

#[tokio::test]
async fn a_declared_oversized_body_is_refused_before_it_is_sent() {
    let app = spawn_app().await;
    // Past the image routes' limit (140 MiB by default), and past the 1 MB of the others.
    refused_before_sent(&app, "/v1/images/edits", 200 * 1024 * 1024).await;
    refused_before_sent(&app, "/v1/images/generations", 200 * 1024 * 1024).await;
    refused_before_sent(&app, "/admin/v1/keys", 2 * 1024 * 1024).await;
}

async fn refused_before_sent(app: &TestApp, path: &str, length: usize) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = app.base.trim_start_matches("http://").to_string();
    let mut conn = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n",
        app.key
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&[b' '; 4096]).await.unwrap();
    // The other 50 MB never come: the answer must not wait for them.
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("answered without the rest of the body")
        .unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("request_too_large"), "{text}");
}

#[tokio::test]
async fn query_and_path_rejections_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let body: Value = app.generate(pro("q")).await.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap();
    let err = assert_error(app.get(&format!("{url}?w=1&w=2")).await, StatusCode::BAD_REQUEST, "invalid_query").await;
    assert_eq!(err["error"]["type"], "invalid_request_error");
    let resp = app.client.get(app.url("/v1/tasks?limit=5&limit=6")).bearer_auth(&app.key).send().await.unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_query").await;
    let resp = app.client.get(app.url("/v1/tasks/%FF%FE")).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert!(resp.status().is_client_error());
}
