//! Per-key policy: rate, concurrency, daily images, budget with refunds, models, retention.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

use crate::support::*;

/// A key made through the admin API with `policy`; returns (id, secret).
async fn key_with(app: &TestApp, policy: Value) -> (String, String) {
    let resp = app.admin(Method::POST, "/admin/v1/keys", Some(policy)).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let k: Value = resp.json().await.unwrap();
    (k["id"].as_str().unwrap().to_string(), k["key"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn rpm_limits_answer_429_with_retry_after_and_spare_other_keys() {
    let app = spawn_app().await;
    let (_, limited) = key_with(&app, json!({"name": "slow", "rpm": 2})).await;
    for _ in 0..2 {
        assert_eq!(app.generate_with(&limited, pro("x"), &[]).await.status(), 200);
    }
    let resp = app.generate_with(&limited, pro("x"), &[]).await;
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body = assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "rate_limit_exceeded").await;
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(app.generate(pro("x")).await.status(), 200, "another key is unaffected");
}

#[tokio::test]
async fn concurrency_limits_count_queued_work_across_sync_and_async() {
    let app = spawn_app().await;
    let (_, limited) = key_with(&app, json!({"max_concurrency": 1})).await;
    let first = app.submit_async(&limited, pro("slow [sim:delay:800ms]")).await;
    let resp = app.generate_with(&limited, pro("sync too"), &[]).await;
    assert!(resp.headers().contains_key("retry-after"));
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "concurrency_limit_exceeded").await;
    let resp = app
        .client
        .post(app.url("/v1/images/generations/async"))
        .bearer_auth(&limited)
        .json(&pro("async too"))
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "concurrency_limit_exceeded").await;
    assert_eq!(app.generate(pro("other key")).await.status(), 200);
    // Once the first task ends, the key has room again.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let t: Value = app.get_task(&limited, first["id"].as_str().unwrap()).await.json().await.unwrap();
        if t["status"] == "completed" {
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.generate_with(&limited, pro("after"), &[]).await.status(), 200);
}

#[tokio::test]
async fn budgets_reserve_at_submit_and_refund_failures() {
    let app = spawn_app().await;
    let (id, key) = key_with(&app, json!({"budget_usd": 0.3})).await;
    // A failure is refunded: the budget still has room for two images afterwards.
    let resp = app.generate_with(&key, pro("fails [sim:error:500]"), &[]).await;
    assert_eq!(resp.status(), StatusCode::BAD_GATEWAY);
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let failed: Value = app.get_task(&key, &task_id).await.json().await.unwrap();
    assert_eq!(failed["cost_usd"], 0.0);
    for _ in 0..2 {
        let resp = app.generate_with(&key, pro("paid"), &[]).await;
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["usage"]["cost_usd"], 0.134);
    }
    let resp = app.generate_with(&key, pro("one too many"), &[]).await;
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "insufficient_quota").await;

    let usage: Value =
        app.client.get(app.url("/v1/usage")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
    assert_eq!(usage["total_images"], 2);
    assert_eq!(usage["total_cost_usd"], 0.268);
    assert_eq!(usage["spent_usd"], 0.268);
    assert_eq!(usage["reserved_usd"], 0.0);
    assert_eq!(usage["data"][0]["model"], "nano-banana-pro");
    let admin: Value = app.admin(Method::GET, "/admin/v1/usage", None).await.json().await.unwrap();
    assert!(admin["data"].as_array().unwrap().iter().any(|r| r["key_id"] == json!(id) && r["images"] == 2));
    let k: Value = app.admin(Method::GET, &format!("/admin/v1/keys/{id}"), None).await.json().await.unwrap();
    assert_eq!(k["spent_usd"], 0.268);
}

#[tokio::test]
async fn daily_image_limits_count_n() {
    let app = spawn_app().await;
    let (_, key) = key_with(&app, json!({"daily_images": 3})).await;
    let body = json!({"model": "nano-banana", "prompt": "x", "n": 2});
    assert_eq!(app.generate_with(&key, body.clone(), &[]).await.status(), 200);
    let resp = app.generate_with(&key, body, &[]).await;
    assert_error(resp, StatusCode::TOO_MANY_REQUESTS, "daily_image_limit_exceeded").await;
    assert_eq!(app.generate_with(&key, json!({"model": "nano-banana", "prompt": "x"}), &[]).await.status(), 200);
}

#[tokio::test]
async fn patch_sets_and_clears_policy_fields() {
    let app = spawn_app().await;
    let (id, key) = key_with(&app, json!({"name": "tenant"})).await;
    let path = format!("/admin/v1/keys/{id}");
    let resp = app.admin(Method::PATCH, &path, Some(json!({"models": ["nano-banana"], "retention": "2s"}))).await;
    assert_eq!(resp.status(), 200);
    let k: Value = resp.json().await.unwrap();
    assert_eq!(k["models"], json!(["nano-banana"]));
    assert_eq!(k["retention"], "2s");

    let resp = app.generate_with(&key, pro("not allowed"), &[]).await;
    let body = assert_error(resp, StatusCode::FORBIDDEN, "model_not_allowed").await;
    assert_eq!(body["error"]["type"], "permission_error");
    let resp = app.generate_with(&key, json!({"model": "nano-banana", "prompt": "short-lived"}), &[]).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let expires = body["data"][0]["expires_at"].as_i64().unwrap();
    assert!(expires - body["created"].as_i64().unwrap() <= 3, "the key's 2 s retention");
    let url = body["data"][0]["url"].as_str().unwrap().to_string();
    let gone = crate::image_serving::until_not_200(&app, &url).await;
    assert_error(gone, StatusCode::GONE, "image_expired").await;

    let resp = app.admin(Method::PATCH, &path, Some(json!({"models": null, "retention": null}))).await;
    let k: Value = resp.json().await.unwrap();
    assert_eq!(k["models"], Value::Null);
    assert_eq!(app.generate_with(&key, pro("allowed again"), &[]).await.status(), 200);

    for (body, param) in [
        (json!({"rpm": 0}), "rpm"),
        (json!({"budget_usd": "lots"}), "budget_usd"),
        (json!({"retention": "soon"}), "retention"),
        (json!({"models": ["dall-e-3"]}), "models"),
        (json!({"color": "red"}), "color"),
    ] {
        let err = app.admin(Method::PATCH, &path, Some(body.clone())).await;
        let e = assert_error(
            err,
            StatusCode::BAD_REQUEST,
            if param == "color" { "unknown_parameter" } else { "invalid_value" },
        )
        .await;
        assert_eq!(e["error"]["param"], json!(param), "{body}");
    }
    let resp =
        app.admin(Method::PATCH, "/admin/v1/keys/key_01NOSUCHKEY0000000000000000", Some(json!({"rpm": 5}))).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
}
