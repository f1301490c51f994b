//! Retries, failover, breakers and channel limits against fake upstreams with scripted faults.

use imagegate::config::{GeminiChannel, Secret};
use imagegate_fakes::{FakeGemini, Reply};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::support::*;

fn quota_429(delay: &str) -> Reply {
    Reply::Json {
        status: 429,
        body: json!({"error": {"code": 429, "message": "Quota exceeded.", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}]}}),
    }
}

#[tokio::test]
async fn a_429_with_retry_delay_is_waited_out_then_succeeds() {
    let app = spawn_gemini_app().await;
    app.gemini().script.push(quota_429("1s"));
    let started = Instant::now();
    let resp = app.generate(pro("patience")).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 200);
    assert!(took >= Duration::from_millis(950) && took < Duration::from_secs(10), "waited {took:?}");
    assert_eq!(app.upstream_calls(), 2);
    let id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    assert_eq!(app.task(&id).await["attempts"], 2, "each try is counted");
}

#[tokio::test]
async fn transient_faults_are_each_retried() {
    let app = spawn_with(|rt| rt.retry.try_timeout = Some(Duration::from_millis(400)), true).await;
    let faults = [
        ("503", Reply::Json { status: 503, body: imagegate_fakes::gemini::fixture("error-503-overloaded.json") }),
        (
            "500",
            Reply::Json {
                status: 500,
                body: json!({"error": {"code": 500, "message": "Internal", "status": "INTERNAL"}}),
            },
        ),
        ("reset", Reply::Reset),
        ("garbage 200", Reply::Raw { status: 200, body: "{\"candidates\": [".into() }),
        ("timeout", Reply::Delay(Duration::from_secs(2), Box::new(Reply::Success))),
    ];
    for (name, fault) in faults {
        let before = app.upstream_calls();
        app.gemini().script.push(fault);
        let resp = app.generate(pro(name)).await;
        assert_eq!(resp.status(), 200, "{name}: {}", resp.text().await.unwrap());
        assert_eq!(app.upstream_calls() - before, 2, "{name}: one fault, one retry");
    }
    // Exhausted: every try times out → 504 with the deadline in the message.
    for _ in 0..3 {
        app.gemini().script.push(Reply::Delay(Duration::from_secs(2), Box::new(Reply::Success)));
    }
    let resp = app.generate(pro("hopeless")).await;
    assert_error(resp, StatusCode::GATEWAY_TIMEOUT, "upstream_timeout").await;
}

async fn two_channel_app(
    bad: &FakeGemini,
    good: &FakeGemini,
    tweak: impl FnOnce(&mut imagegate::config::Runtime),
) -> TestApp {
    let (bad_url, good_url) = (bad.base_url(), good.base_url());
    spawn_with(
        move |rt| {
            rt.gemini_keys.clear();
            rt.gemini_channels = vec![
                GeminiChannel {
                    name: "bad".into(),
                    key: Secret::new("k-bad"),
                    base_url: Some(bad_url),
                    weight: 1,
                    max_concurrency: 0,
                    rpm: 0,
                },
                GeminiChannel {
                    name: "good".into(),
                    key: Secret::new("k-good"),
                    base_url: Some(good_url),
                    weight: 1,
                    max_concurrency: 0,
                    rpm: 0,
                },
            ];
            rt.breaker.failures = 3;
            rt.breaker.cooldown = Duration::from_secs(60);
            tweak(rt);
        },
        false,
    )
    .await
}

fn channel_state(channels: &Value, name: &str) -> Value {
    channels["data"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap().clone()
}

/// Sends requests until the bad channel has been called `bad_calls` times and at least `min`
/// requests were sent; every one must succeed. Returns how many were sent.
async fn until_bad_called(app: &TestApp, bad: &FakeGemini, bad_calls: usize, min: usize) -> usize {
    let mut sent = 0;
    while bad.script.call_count() < bad_calls || sent < min {
        let resp = app.generate(pro(&format!("req {sent}"))).await;
        assert_eq!(resp.status(), 200, "request {sent}");
        sent += 1;
        assert!(sent < 200, "the bad channel was never tried {bad_calls} times");
    }
    sent
}

#[tokio::test]
async fn with_one_channel_always_503_every_request_succeeds_through_the_other_and_the_bad_one_opens() {
    let bad = FakeGemini::start().await.unwrap();
    let good = FakeGemini::start().await.unwrap();
    for _ in 0..100 {
        bad.script
            .push(Reply::Json { status: 503, body: imagegate_fakes::gemini::fixture("error-503-overloaded.json") });
    }
    let app = two_channel_app(&bad, &good, |_| {}).await;
    // Channels are picked at random by weight: go on until the bad one has been tried 3 times
    // (its breaker's threshold), then a few more; every request succeeds all along.
    let sent = until_bad_called(&app, &bad, 3, 12).await;
    assert_eq!(good.script.call_count(), sent, "every image came from the good channel");
    assert_eq!(bad.script.call_count(), 3, "the bad channel was opened after 3 failures and left alone");
    let channels: Value = app.admin(reqwest::Method::GET, "/admin/v1/channels", None).await.json().await.unwrap();
    assert_eq!(channel_state(&channels, "bad")["state"], "open");
    assert_eq!(channel_state(&channels, "good")["state"], "healthy");
    assert_eq!(channel_state(&channels, "bad")["recent_error_rate"], 1.0);
    assert_eq!(channel_state(&channels, "good")["recent_error_rate"], 0.0);
}

#[tokio::test]
async fn a_429_with_a_retry_delay_rests_its_channel_at_once() {
    let bad = FakeGemini::start().await.unwrap();
    let good = FakeGemini::start().await.unwrap();
    for _ in 0..100 {
        bad.script.push(quota_429("30s"));
    }
    let app = two_channel_app(&bad, &good, |_| {}).await;
    let sent = until_bad_called(&app, &bad, 1, 8).await;
    assert_eq!(bad.script.call_count(), 1, "told to wait 30 s, the exhausted key is not tried again");
    assert_eq!(good.script.call_count(), sent);
    let channels: Value = app.admin(reqwest::Method::GET, "/admin/v1/channels", None).await.json().await.unwrap();
    let ch = channel_state(&channels, "bad");
    assert_eq!(ch["state"], "rate_limited");
    let secs = ch["rate_limited_for_secs"].as_u64().unwrap();
    assert!((1..=30).contains(&secs), "{ch}");
}

#[tokio::test]
async fn a_refused_key_disables_its_channel_until_an_admin_enables_it() {
    let bad = FakeGemini::start().await.unwrap();
    let good = FakeGemini::start().await.unwrap();
    // As Google answers a wrong key: 400 INVALID_ARGUMENT with ErrorInfo API_KEY_INVALID.
    bad.invalidate_key("k-bad");
    let app = two_channel_app(&bad, &good, |_| {}).await;
    let sent = until_bad_called(&app, &bad, 1, 8).await;
    assert_eq!(bad.script.call_count(), 1, "a refused key is set aside at once");
    assert_eq!(good.script.call_count(), sent, "and its call failed over");
    let channels: Value = app.admin(reqwest::Method::GET, "/admin/v1/channels", None).await.json().await.unwrap();
    let ch = channel_state(&channels, "bad");
    assert_eq!(ch["state"], "disabled");
    assert!(ch["disabled_reason"].as_str().unwrap().contains("API key not valid"), "{ch}");

    bad.restore_key("k-bad");
    let resp = app.admin(reqwest::Method::POST, "/admin/v1/channels/bad/enable", None).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.json::<Value>().await.unwrap()["state"], "healthy");
    until_bad_called(&app, &bad, 2, 0).await;
    let resp = app.admin(reqwest::Method::POST, "/admin/v1/channels/nope/enable", None).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_refused_key_on_the_only_channel_is_an_upstream_auth_failure_not_a_bad_request() {
    let app = spawn_gemini_app().await;
    app.gemini().invalidate_key("test-gemini-key");
    let resp = app.generate(pro("wrong key")).await;
    assert_error(resp, StatusCode::BAD_GATEWAY, "upstream_auth_failed").await;
    assert_eq!(app.upstream_calls(), 1, "never retried with the same refused key");
}

#[tokio::test]
async fn a_channel_with_max_concurrency_2_never_sees_more_than_2_calls_at_once() {
    let app = spawn_with(|rt| rt.gemini_max_concurrency = 2, true).await;
    app.gemini().script.set_delay(Duration::from_millis(200));
    let reqs: Vec<_> = (0..10).map(|i| app.generate(pro(&format!("parallel {i}")))).collect();
    let results = futures_util::future::join_all(reqs).await;
    assert!(results.iter().all(|r| r.status() == 200));
    assert_eq!(app.upstream_calls(), 10);
    assert_eq!(app.gemini().script.max_in_flight(), 2);
}

#[tokio::test]
async fn soak_500_requests_with_30_percent_faults() {
    let app = spawn_with(
        |rt| {
            rt.retry.max_attempts = 6;
            rt.deadline_1k = Duration::from_secs(20);
            rt.worker_concurrency = 32;
        },
        true,
    )
    .await;
    app.gemini().script.set_fault_rate(0.3, 42);
    let deadline = Duration::from_secs(20);
    let mut ok = 0;
    let mut failed = 0;
    let mut slowest = Duration::ZERO;
    let mut latencies = Vec::new();
    let body = json!({"model": "nano-banana-pro", "prompt": "soak", "aspect_ratio": "21:9"});
    for chunk in 0..20 {
        let batch: Vec<_> = (0..25)
            .map(|i| {
                let mut b = body.clone();
                b["prompt"] = json!(format!("soak {chunk}-{i}"));
                let app = &app;
                async move {
                    let started = Instant::now();
                    let resp = app.generate(b).await;
                    (resp.status(), resp.json::<Value>().await.unwrap(), started.elapsed())
                }
            })
            .collect();
        for (status, body, took) in futures_util::future::join_all(batch).await {
            slowest = slowest.max(took);
            latencies.push(took);
            if status == 200 {
                ok += 1;
            } else {
                failed += 1;
                assert!(status.is_server_error() || status == 429, "clean failure: {status} {body}");
                assert!(body["error"]["code"].as_str().is_some(), "{body}");
            }
        }
    }
    assert_eq!(ok + failed, 500);
    assert!(ok >= 495, "{ok} of 500 succeeded");
    assert!(slowest < deadline + Duration::from_secs(2), "slowest request took {slowest:?}");
    latencies.sort();
    eprintln!(
        "soak: {ok}/500 succeeded, p50 {:?}, p99 {:?}, slowest {slowest:?}, upstream calls {}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() * 99 / 100],
        app.upstream_calls()
    );
}

#[tokio::test]
async fn a_configured_fallback_model_serves_when_the_primary_keeps_failing() {
    let app = spawn_with(
        |rt| {
            rt.fallbacks.insert("gemini-3-pro-image-preview".into(), vec!["gemini-2.5-flash-image".into()]);
        },
        true,
    )
    .await;
    for _ in 0..3 {
        app.gemini()
            .script
            .push(Reply::Json { status: 503, body: imagegate_fakes::gemini::fixture("error-503-overloaded.json") });
    }
    let resp = app.generate(json!({"model": "nano-banana-pro", "prompt": "fall back", "size": "2048x2048"})).await;
    assert_eq!(resp.status(), 200);
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"][0]["model"], "gemini-2.5-flash-image");
    assert_eq!(body["usage"]["cost_usd"], 0.039, "charged at the fallback's price");
    let calls = app.gemini().script.calls();
    assert_eq!(calls.len(), 4);
    assert_eq!(calls[3].path, "/v1beta/models/gemini-2.5-flash-image:streamGenerateContent");
    let img = app.get(body["data"][0]["url"].as_str().unwrap()).await.bytes().await.unwrap();
    let img = image::load_from_memory(&img).unwrap();
    assert_eq!((img.width(), img.height()), (1024, 1024), "Flash's 1K");
    let task = app.task(&task_id).await;
    assert_eq!(task["cost_usd"], 0.039);
    assert_eq!(task["attempts"], 4);

    // Without the fallback configured, the same failures end the task.
    let plain = spawn_gemini_app().await;
    for _ in 0..3 {
        plain
            .gemini()
            .script
            .push(Reply::Json { status: 503, body: imagegate_fakes::gemini::fixture("error-503-overloaded.json") });
    }
    assert_error(plain.generate(pro("no fallback")).await, StatusCode::BAD_GATEWAY, "upstream_error").await;
}

/// A PNG whose header claims 60000×60000 pixels (10.8 GB decoded), with no pixel data.
fn png_bomb() -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR".to_vec();
    png.extend_from_slice(&60_000u32.to_be_bytes());
    png.extend_from_slice(&60_000u32.to_be_bytes());
    png.extend_from_slice(&[8, 2, 0, 0, 0, 0, 0, 0, 0]);
    png
}

#[tokio::test]
async fn an_upstream_image_claiming_billions_of_pixels_is_refused_without_decoding() {
    use base64::Engine;
    let app = spawn_gemini_app().await;
    let data = base64::engine::general_purpose::STANDARD.encode(png_bomb());
    let answer = json!({"candidates": [{"content": {"role": "model", "parts": [
        {"inlineData": {"mimeType": "image/png", "data": data}}]}, "finishReason": "STOP"}]});
    app.gemini().script.push(Reply::Json { status: 200, body: answer });
    let body = json!({"model": "nano-banana-pro", "prompt": "bomb", "output_format": "webp"});
    assert_error(app.generate(body).await, StatusCode::BAD_GATEWAY, "upstream_error").await;
    assert_eq!(app.generate(pro("the gateway is still fine")).await.status(), 200);
}
