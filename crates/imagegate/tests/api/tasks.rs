//! The task record: readable by its owner only, listed newest first with cursor paging.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn a_task_shows_the_request_and_result_of_a_sync_call() {
    let app = spawn_app().await;
    let resp = app.generate(json!({"model": "nano-banana-pro", "prompt": "owl", "size": "1024x1024"})).await;
    let id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let result: Value = resp.json().await.unwrap();
    let resp = app.get_task(&app.key, &id).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["imagegate-task-id"].to_str().unwrap(), id);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["object"], "image.task");
    assert_eq!(task["status"], "completed");
    assert_eq!(task["mode"], "sync");
    assert_eq!(task["model"], "nano-banana-pro");
    assert_eq!(task["request"]["prompt"], "owl");
    assert_eq!(task["request"]["size"], "1024x1024");
    assert_eq!(task["request"]["n"], 1);
    assert_eq!(task["request"]["response_format"], "url");
    assert_eq!(task["attempts"], 1);
    assert!(task["started_at"].as_i64().unwrap() >= task["created_at"].as_i64().unwrap());
    assert!(task["completed_at"].as_i64().is_some());
    assert_eq!(task["result"], result, "the result is exactly the sync response body");
    assert_eq!(task["error"], Value::Null);
    assert_eq!(task["request_id"], request_id.as_str(), "the request that submitted it, for support");
}

#[tokio::test]
async fn another_key_gets_404_for_my_task() {
    let app = spawn_app().await;
    let resp = app.generate(pro("private")).await;
    let id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let other = app.new_key().await;
    let resp = app.get_task(&other, &id).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    let theirs: Value =
        app.client.get(app.url("/v1/tasks")).bearer_auth(&other).send().await.unwrap().json().await.unwrap();
    assert_eq!(theirs["data"], json!([]));
    assert_error(app.get_task(&app.key, "task_doesnotexist0000000000000").await, StatusCode::NOT_FOUND, "not_found")
        .await;
    assert_error(app.get_task(&app.key, "task_..%2F..%2Fetc%2Fpasswd").await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn tasks_are_listed_newest_first_with_cursor_paging_and_a_status_filter() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let resp = app.generate(pro(&format!("image {i}"))).await;
        ids.push(resp.headers()["imagegate-task-id"].to_str().unwrap().to_string());
    }
    let _ = app.generate(pro("refused [sim:refuse]")).await;
    let page1 = app.list_tasks("?limit=3&status=completed").await;
    assert_eq!(page1["object"], "list");
    let got: Vec<&str> = page1["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(got, vec![ids[4].as_str(), ids[3].as_str(), ids[2].as_str()]);
    assert_eq!(page1["has_more"], true);
    let page2 =
        app.list_tasks(&format!("?limit=3&status=completed&after={}", page1["last_id"].as_str().unwrap())).await;
    let got: Vec<&str> = page2["data"].as_array().unwrap().iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(got, vec![ids[1].as_str(), ids[0].as_str()]);
    assert_eq!(page2["has_more"], false);
    let failed = app.list_tasks("?status=failed").await;
    assert_eq!(failed["data"].as_array().unwrap().len(), 1);
    assert_eq!(failed["data"][0]["error"]["code"], "content_policy_violation");

    let resp = app.client.get(app.url("/v1/tasks?status=done")).bearer_auth(&app.key).send().await.unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_value").await;
    let resp = app.client.get(app.url("/v1/tasks?limit=1000")).bearer_auth(&app.key).send().await.unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_value").await;
}

#[tokio::test]
async fn prefer_respond_async_returns_202_with_the_task() {
    let app = spawn_app().await;
    let resp = app.generate_with(&app.key, pro("later [sim:delay:300ms]"), &[("Prefer", "respond-async")]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["mode"], "async");
    assert!(matches!(task["status"].as_str(), Some("queued" | "running")));
    let done = app.wait_task(task["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed");
}

#[tokio::test]
async fn prefer_respond_async_takes_a_webhook_like_the_async_route() {
    let app = spawn_app().await;
    let sink = imagegate_fakes::WebhookSink::start().await.unwrap();
    let body = json!({"model": "nano-banana-pro", "prompt": "hooked", "webhook_url": sink.url()});
    let resp = app.generate_with(&app.key, body, &[("Prefer", "respond-async")]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["request"]["webhook_url"], json!(sink.url()));
    let id = task["id"].as_str().unwrap();
    let got = sink.wait_for(1, std::time::Duration::from_secs(20)).await;
    let event: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(event["data"]["id"], json!(id));
    assert_eq!(event["type"], "task.completed");
}

#[tokio::test]
async fn a_clients_request_id_is_kept_when_plain_and_replaced_when_long_or_odd() {
    let app = spawn_app().await;
    let body = json!({"model": "nano-banana", "prompt": "traced"});
    let resp = app.generate_with(&app.key, body.clone(), &[("x-request-id", "client-trace-42")]).await;
    assert_eq!(resp.headers()["x-request-id"], "client-trace-42");
    let id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let task: Value = app.get_task(&app.key, &id).await.json().await.unwrap();
    assert_eq!(task["request_id"], "client-trace-42");

    // 8 KB of it would be logged on every line and stored with the task: ours instead.
    let long = "a".repeat(8 * 1024);
    for odd in [long.as_str(), "has spaces and \"quotes\""] {
        let resp = app.generate_with(&app.key, body.clone(), &[("x-request-id", odd)]).await;
        let given = resp.headers()["x-request-id"].to_str().unwrap().to_string();
        assert!(given.starts_with("req_") && given.len() < 40, "{given}");
        let id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
        let task: Value = app.get_task(&app.key, &id).await.json().await.unwrap();
        assert_eq!(task["request_id"], given.as_str());
    }
}
