//! A dropped client never loses a paid image.

use serde_json::Value;
use std::time::Duration;

use crate::support::*;

#[tokio::test]
async fn sync_generation_survives_client_disconnect() {
    let app = spawn_gemini_app().await;
    app.gemini().script.set_delay(Duration::from_millis(1500));
    let short = reqwest::Client::builder().timeout(Duration::from_millis(300)).build().unwrap();
    let dropped = short
        .post(app.url("/v1/images/generations"))
        .bearer_auth(&app.key)
        .json(&pro("an image worth keeping"))
        .send()
        .await;
    assert!(dropped.is_err(), "the client gave up before the image was ready");

    let list = app.list_tasks("?limit=1").await;
    let task = &list["data"][0];
    assert_eq!(task["mode"], "sync");
    assert!(matches!(task["status"].as_str(), Some("queued" | "running")), "{task}");
    let task = app.wait_task(task["id"].as_str().unwrap()).await;
    assert_eq!(task["status"], "completed", "{task}");
    let url = task["result"]["data"][0]["url"].as_str().unwrap();
    let img = app.get(url).await;
    assert_eq!(img.status(), 200);
    assert!(image::load_from_memory(&img.bytes().await.unwrap()).is_ok());
    assert_eq!(app.gemini().script.completed(), 1, "the upstream call ran to the end");
    assert_eq!(app.upstream_calls(), 1);
}

#[tokio::test]
async fn a_retry_with_the_same_idempotency_key_after_a_disconnect_gets_the_image() {
    let app = spawn_gemini_app().await;
    app.gemini().script.set_delay(Duration::from_millis(800));
    let short = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().unwrap();
    let _ = short
        .post(app.url("/v1/images/generations"))
        .bearer_auth(&app.key)
        .header("Idempotency-Key", "retry-me")
        .json(&pro("kept"))
        .send()
        .await;
    let resp = app.generate_with(&app.key, pro("kept"), &[("Idempotency-Key", "retry-me")]).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.upstream_calls(), 1, "the retry joined the running task");
}
