//! `Idempotency-Key`: a retried request never pays twice.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn the_same_key_twice_makes_one_upstream_call_and_returns_the_same_images() {
    let app = spawn_gemini_app().await;
    let body = pro("a paid image");
    let first = app.generate_with(&app.key, body.clone(), &[("Idempotency-Key", "order-42")]).await;
    assert_eq!(first.status(), 200);
    let first_task = first.headers()["imagegate-task-id"].clone();
    let first: Value = first.json().await.unwrap();
    let second = app.generate_with(&app.key, body.clone(), &[("Idempotency-Key", "order-42")]).await;
    assert_eq!(second.status(), 200);
    assert_eq!(second.headers()["imagegate-task-id"], first_task);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["data"][0]["url"], second["data"][0]["url"]);
    assert_eq!(app.upstream_calls(), 1);

    let other = app
        .generate_with(
            &app.key,
            json!({"model": "nano-banana-pro", "prompt": "another"}),
            &[("Idempotency-Key", "order-42")],
        )
        .await;
    assert_error(other, StatusCode::CONFLICT, "idempotency_key_reused").await;
    assert_eq!(app.upstream_calls(), 1);

    // Keys are per API key: another tenant's identical key is a different request.
    let other_key = app.new_key().await;
    let theirs = app.generate_with(&other_key, body, &[("Idempotency-Key", "order-42")]).await;
    assert_eq!(theirs.status(), 200);
    assert_ne!(theirs.headers()["imagegate-task-id"], first_task);
    assert_eq!(app.upstream_calls(), 2);
}

#[tokio::test]
async fn concurrent_retries_with_one_key_make_one_task() {
    let app = spawn_gemini_app().await;
    app.gemini().script.set_delay(std::time::Duration::from_millis(300));
    let body = pro("raced");
    let (a, b) = tokio::join!(
        app.generate_with(&app.key, body.clone(), &[("Idempotency-Key", "race")]),
        app.generate_with(&app.key, body.clone(), &[("Idempotency-Key", "race")]),
    );
    assert_eq!(a.status(), 200);
    assert_eq!(b.status(), 200);
    assert_eq!(a.headers()["imagegate-task-id"], b.headers()["imagegate-task-id"]);
    assert_eq!(app.upstream_calls(), 1);
}

#[tokio::test]
async fn a_retry_gets_its_task_even_when_the_key_is_at_its_limits_and_spends_no_rate_token() {
    let app = spawn_app().await;
    let resp = app.admin(reqwest::Method::POST, "/admin/v1/keys", Some(json!({"name": "tight", "rpm": 2}))).await;
    let created: Value = resp.json().await.unwrap();
    let (id, key) = (created["id"].as_str().unwrap().to_string(), created["key"].as_str().unwrap().to_string());
    let body = pro("retried after a dropped connection");
    let first = app.generate_with(&key, body.clone(), &[("Idempotency-Key", "retry-me")]).await;
    assert_eq!(first.status(), 200);
    let task = first.headers()["imagegate-task-id"].clone();
    for _ in 0..3 {
        let again = app.generate_with(&key, body.clone(), &[("Idempotency-Key", "retry-me")]).await;
        assert_eq!(again.status(), 200, "a retry is answered with its task, not a 429");
        assert_eq!(again.headers()["imagegate-task-id"], task);
    }
    // The retries spent nothing: the second of the two requests a minute is still there.
    assert_eq!(app.generate_with(&key, pro("second"), &[]).await.status(), 200);
    assert_error(
        app.generate_with(&key, pro("third"), &[]).await,
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limit_exceeded",
    )
    .await;
    // Nor does a policy change since the first request refuse its retry.
    let patch = json!({"models": ["nano-banana"]});
    assert_eq!(app.admin(reqwest::Method::PATCH, &format!("/admin/v1/keys/{id}"), Some(patch)).await.status(), 200);
    let again = app.generate_with(&key, body.clone(), &[("Idempotency-Key", "retry-me")]).await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["imagegate-task-id"], task);
}
