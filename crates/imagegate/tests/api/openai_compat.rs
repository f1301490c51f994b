//! The OpenAI-compatible upstream adapter against a fake OpenAI images API.

use imagegate::config::Secret;
use imagegate_fakes::{FakeOpenAi, Reply};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

async fn app_with(fake: &FakeOpenAi, extra_models: &[&str]) -> TestApp {
    let base = fake.base_url();
    let extra: Vec<String> = extra_models.iter().map(|s| s.to_string()).collect();
    spawn_with(
        move |rt| {
            rt.openai_keys = vec![Secret::new("sk-test-openai")];
            rt.openai_base_url = base;
            rt.openai_models.extend(extra);
        },
        false,
    )
    .await
}

fn gpt(size: &str) -> Value {
    json!({"model": "gpt-image-1", "prompt": "a paper boat", "size": size})
}

#[tokio::test]
async fn b64_answers_are_stored_and_served_at_the_requested_size() {
    let fake = FakeOpenAi::start().await.unwrap();
    let app = app_with(&fake, &[]).await;
    let resp = app.generate(gpt("1536x1024")).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let served = app.get(body["data"][0]["url"].as_str().unwrap()).await;
    assert_eq!(served.headers()["content-type"], "image/png");
    let bytes = served.bytes().await.unwrap();
    assert_eq!(bytes.to_vec(), fake.images.lock().unwrap()[0], "the upstream's bytes, untouched");
    let calls = fake.script.calls();
    assert_eq!(calls[0].path, "/v1/images/generations");
    assert_eq!(calls[0].api_key.as_deref(), Some("sk-test-openai"));
    assert_eq!(calls[0].body["model"], "gpt-image-1");
    assert_eq!(calls[0].body["size"], "1536x1024");
    assert_eq!(calls[0].body["n"], 1);
    assert_eq!(body["data"][0]["revised_prompt"], "a paper boat");
    let models: Value =
        app.client.get(app.url("/v1/models")).bearer_auth(&app.key).send().await.unwrap().json().await.unwrap();
    let owner =
        |id: &str| models["data"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap()["owned_by"].clone();
    assert_eq!(owner("gpt-image-1"), "openai_compat");
    assert_eq!(owner("nano-banana-pro"), "simulated");
}

#[tokio::test]
async fn url_answers_are_fetched_into_our_storage() {
    let fake = FakeOpenAi::start().await.unwrap();
    fake.answer_with_urls(true);
    let app = app_with(&fake, &[]).await;
    let body: Value = app.generate(gpt("1024x1536")).await.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&app.base), "served by the gateway, not the upstream: {url}");
    let bytes = app.get(url).await.bytes().await.unwrap();
    assert_eq!(bytes.to_vec(), fake.images.lock().unwrap()[0]);
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (1024, 1536));
}

#[tokio::test]
async fn openai_errors_are_mapped() {
    let fake = FakeOpenAi::start().await.unwrap();
    let app = app_with(&fake, &[]).await;
    let fixture = |name: &str| -> Value {
        serde_json::from_str(
            &std::fs::read_to_string(format!(
                "{}/../imagegate-fakes/fixtures/openai/{name}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap(),
        )
        .unwrap()
    };
    fake.script.push(Reply::Json { status: 400, body: fixture("error-moderation.json") });
    assert_error(app.generate(gpt("1024x1024")).await, StatusCode::BAD_REQUEST, "content_policy_violation").await;
    assert_eq!(fake.script.call_count(), 1, "refusals are not retried");

    fake.script.push(Reply::Json {
        status: 429,
        body: json!({"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}),
    });
    assert_eq!(app.generate(gpt("1024x1024")).await.status(), 200, "a 429 is retried");
    assert_eq!(fake.script.call_count(), 3);

    for _ in 0..3 {
        fake.script.push(Reply::Json {
            status: 500,
            body: json!({"error": {"message": "boom", "type": "server_error", "param": null, "code": null}}),
        });
    }
    assert_error(app.generate(gpt("1024x1024")).await, StatusCode::BAD_GATEWAY, "upstream_error").await;

    fake.script.push(Reply::Json { status: 401, body: json!({"error": {"message": "Incorrect API key provided: sk-tes***", "type": "invalid_request_error", "param": null, "code": "invalid_api_key"}}) });
    let body =
        assert_error(app.generate(gpt("1024x1024")).await, StatusCode::BAD_GATEWAY, "upstream_auth_failed").await;
    assert!(!body.to_string().contains("sk-tes"), "the upstream's words about our key stay in the log");
}

#[tokio::test]
async fn gpt_image_sizes_are_openai_sizes() {
    let fake = FakeOpenAi::start().await.unwrap();
    let app = app_with(&fake, &[]).await;
    assert_error(app.generate(gpt("2048x2048")).await, StatusCode::BAD_REQUEST, "invalid_size").await;
    let mut body = gpt("1024x1024");
    body["aspect_ratio"] = json!("16:9");
    assert_error(app.generate(body).await, StatusCode::BAD_REQUEST, "unsupported_parameter").await;
    assert_eq!(fake.script.call_count(), 0);
}

#[tokio::test]
async fn a_gemini_model_can_be_routed_through_an_openai_compatible_reseller() {
    let fake = FakeOpenAi::start().await.unwrap();
    let app = app_with(&fake, &["nano-banana-pro"]).await;
    // The reseller takes OpenAI sizes; a 1:1 1K request goes as 1024x1024.
    let resp = app.generate(json!({"model": "nano-banana-pro", "prompt": "via the reseller"})).await;
    assert_eq!(resp.status(), 200);
    let call = &fake.script.calls()[0];
    assert_eq!(call.body["model"], "gemini-3-pro-image-preview");
    assert_eq!(call.body["size"], "1024x1024");
}

#[tokio::test]
async fn http2_prior_knowledge_speaks_h2c_to_an_http_upstream() {
    let fake = FakeOpenAi::start().await.unwrap();
    let plain = app_with(&fake, &[]).await;
    assert_eq!(plain.generate(gpt("1024x1024")).await.status(), 200);
    let base = fake.base_url();
    let h2c = spawn_with(
        move |rt| {
            rt.openai_keys = vec![Secret::new("sk-test-openai")];
            rt.openai_base_url = base;
            rt.openai_http2_prior_knowledge = true;
        },
        false,
    )
    .await;
    let (a, b, c) =
        tokio::join!(h2c.generate(gpt("1024x1024")), h2c.generate(gpt("1024x1024")), h2c.generate(gpt("1024x1024")));
    assert!([a.status(), b.status(), c.status()].iter().all(|s| *s == 200));
    let versions: Vec<String> = fake.script.calls().iter().map(|c| c.http_version.clone()).collect();
    assert_eq!(versions, ["HTTP/1.1", "HTTP/2.0", "HTTP/2.0", "HTTP/2.0"], "default HTTP/1.1, then h2c");
}

/// A listener standing for an internal service: counts the connections it gets.
async fn internal_service() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    (format!("http://{addr}"), hits)
}

#[tokio::test]
async fn an_answer_pointing_at_an_internal_address_is_never_fetched() {
    let fake = FakeOpenAi::start().await.unwrap();
    let app = app_with(&fake, &[]).await;
    let (internal, hits) = internal_service().await;
    // Three tries per request here: every try of both requests gets such an answer.
    for target in [format!("{internal}/secret.png"), "http://169.254.169.254/latest/meta-data/".to_string()] {
        for _ in 0..3 {
            fake.script.push(Reply::Json { status: 200, body: json!({"created": 1, "data": [{"url": target}]}) });
        }
    }
    for _ in 0..2 {
        let resp = app.generate(gpt("1024x1024")).await;
        assert!(resp.status().is_server_error(), "{}", resp.status());
    }
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0, "the internal service was never reached");
}

#[tokio::test]
async fn an_answer_larger_than_the_cap_is_refused_not_buffered() {
    let fake = FakeOpenAi::start().await.unwrap();
    let base = fake.base_url();
    let app = spawn_with(
        move |rt| {
            rt.openai_keys = vec![Secret::new("sk-test-openai")];
            rt.openai_base_url = base;
            rt.upstream_max_answer_bytes = 4096;
        },
        false,
    )
    .await;
    let resp = app.generate(gpt("1024x1024")).await;
    assert_error(resp, StatusCode::BAD_GATEWAY, "upstream_error").await;
    // The same cap holds for an image fetched from a url answer.
    fake.answer_with_urls(true);
    let resp = app.generate(gpt("1024x1024")).await;
    assert_error(resp, StatusCode::BAD_GATEWAY, "upstream_error").await;
}

#[tokio::test]
async fn edits_reach_an_openai_compatible_upstream_as_multipart_with_the_mask_as_sent() {
    let fake = FakeOpenAi::start().await.unwrap();
    let app = app_with(&fake, &[]).await;
    let photo = imagegate_fakes::images::picture(16, 16, 3, true);
    let second = imagegate_fakes::images::picture(8, 8, 4, true);
    let mask = {
        let img = image::RgbaImage::from_fn(16, 16, |x, _| image::Rgba([0, 0, 0, if x < 8 { 0 } else { 255 }]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let part = |b: &[u8], n: &str| reqwest::multipart::Part::bytes(b.to_vec()).file_name(n.to_string());
    let form = reqwest::multipart::Form::new()
        .text("model", "gpt-image-1")
        .text("prompt", "a flamingo in the pool")
        .text("size", "1024x1536")
        .text("input_fidelity", "high")
        .text("quality", "low")
        .part("image[]", part(&photo, "a.png"))
        .part("image[]", part(&second, "b.png"))
        .part("mask", part(&mask, "mask.png"));
    let resp = app.client.post(app.url("/v1/images/edits")).bearer_auth(&app.key).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let served = app.get(body["data"][0]["url"].as_str().unwrap()).await.bytes().await.unwrap();
    assert_eq!(served.to_vec(), fake.images.lock().unwrap()[0]);
    let calls = fake.script.calls();
    assert_eq!(calls.len(), 1);
    let sent = &calls[0].body;
    assert_eq!(calls[0].path, "/v1/images/edits");
    assert_eq!(calls[0].api_key.as_deref(), Some("sk-test-openai"));
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    assert_eq!(sent["image"][0]["data"], b64(&photo));
    assert_eq!(sent["image"][1]["data"], b64(&second));
    assert_eq!(sent["image"][0]["content_type"], "image/png");
    assert_eq!(sent["mask"]["data"], b64(&mask), "the mask as sent");
    assert_eq!(
        (sent["model"].as_str(), sent["size"].as_str(), sent["n"].as_str()),
        (Some("gpt-image-1"), Some("1024x1536"), Some("1"))
    );
    assert_eq!((sent["input_fidelity"].as_str(), sent["quality"].as_str()), (Some("high"), Some("low")));
    assert_eq!(sent["prompt"], "a flamingo in the pool", "no mask sentence: the upstream takes the mask itself");

    // A generation without inputs stays a JSON generation.
    assert_eq!(app.generate(gpt("1024x1024")).await.status(), 200);
    assert_eq!(fake.script.calls()[1].path, "/v1/images/generations");
}
