//! Batches as the openai SDK drives them: upload a JSONL file, create a batch, poll it, read
//! its output and error files. Each line runs as a task of its own (mode `batch`).

use crate::support::{TestApp, assert_error, spawn_app};
use imagegate_fakes::WebhookSink;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use std::time::Duration;

const EP: &str = "/v1/images/generations";

pub(crate) fn line(custom_id: &str, body: Value) -> String {
    json!({"custom_id": custom_id, "method": "POST", "url": EP, "body": body}).to_string()
}

pub(crate) async fn upload(app: &TestApp, key: &str, lines: &[String]) -> String {
    let text = lines.join("\n") + "\n";
    let form =
        Form::new().text("purpose", "batch").part("file", Part::bytes(text.into_bytes()).file_name("requests.jsonl"));
    let resp = app.client.post(app.url("/v1/files")).bearer_auth(key).multipart(form).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let file: Value = resp.json().await.unwrap();
    file["id"].as_str().unwrap().to_string()
}

async fn create(app: &TestApp, key: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url("/v1/batches")).bearer_auth(key).json(&body).send().await.unwrap()
}

pub(crate) async fn create_batch(app: &TestApp, file_id: &str, metadata: Option<Value>) -> Value {
    let mut body = json!({"input_file_id": file_id, "endpoint": EP, "completion_window": "24h"});
    if let Some(m) = metadata {
        body["metadata"] = m;
    }
    let resp = create(app, &app.key, body).await;
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

pub(crate) async fn get_batch(app: &TestApp, key: &str, id: &str) -> reqwest::Response {
    app.client.get(app.url(&format!("/v1/batches/{id}"))).bearer_auth(key).send().await.unwrap()
}

/// Polls the batch until it ends (or 60 s pass).
pub(crate) async fn wait_batch(app: &TestApp, id: &str) -> Value {
    for _ in 0..600 {
        let b: Value = get_batch(app, &app.key, id).await.json().await.unwrap();
        if matches!(b["status"].as_str(), Some("completed" | "failed" | "expired" | "cancelled")) {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("batch {id} did not end");
}

/// A file's lines as JSON, by `custom_id`.
pub(crate) async fn file_lines(app: &TestApp, id: &str) -> Vec<Value> {
    let resp = app.client.get(app.url(&format!("/v1/files/{id}/content"))).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    text.lines().map(|l| serde_json::from_str(l).expect("each line is JSON")).collect()
}

pub(crate) fn by_id<'a>(lines: &'a [Value], custom_id: &str) -> &'a Value {
    lines.iter().find(|l| l["custom_id"] == custom_id).unwrap_or_else(|| panic!("no line {custom_id}"))
}

#[tokio::test]
async fn a_batch_runs_each_line_as_a_task_and_writes_output_and_error_files() {
    let app = spawn_app().await;
    let sink = WebhookSink::start().await.unwrap();
    let file = upload(
        &app,
        &app.key,
        &[
            line("wide", json!({"model": "nano-banana-pro", "prompt": "a wide harbour", "size": "1264x848"})),
            line("inline", json!({"model": "nano-banana", "prompt": "an owl", "response_format": "b64_json"})),
            line("bad-size", json!({"model": "nano-banana-pro", "prompt": "x", "size": "7x7"})),
            line("refused", json!({"model": "nano-banana-pro", "prompt": "no [sim:refuse]"})),
        ],
    )
    .await;
    let batch = create_batch(&app, &file, Some(json!({"webhook_url": sink.url(), "project": "harbour"}))).await;
    let id = batch["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("batch_"));
    assert_eq!((batch["object"].as_str(), batch["status"].as_str()), (Some("batch"), Some("validating")));
    assert_eq!(batch["metadata"]["project"], "harbour");
    assert_eq!(batch["expires_at"].as_i64().unwrap() - batch["created_at"].as_i64().unwrap(), 86_400);

    let done = wait_batch(&app, &id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"], json!({"total": 4, "completed": 2, "failed": 2}));
    for t in ["in_progress_at", "finalizing_at", "completed_at"] {
        assert!(done[t].as_i64().is_some(), "{t} set: {done}");
    }

    let output = file_lines(&app, done["output_file_id"].as_str().unwrap()).await;
    assert_eq!(output.len(), 2);
    let wide = by_id(&output, "wide");
    assert_eq!(wide["response"]["status_code"], 200);
    assert!(wide["error"].is_null());
    let url = wide["response"]["body"]["data"][0]["url"].as_str().expect("a URL, not base64");
    let png = app.get(url).await.bytes().await.unwrap();
    let img = image::load_from_memory(&png).expect("the URL serves an image");
    assert_eq!((img.width(), img.height()), (1264, 848), "the size the line asked for");
    let inline = by_id(&output, "inline");
    let b64 = inline["response"]["body"]["data"][0]["b64_json"].as_str().expect("b64_json as the line asked");
    assert!(b64.len() > 1000);

    // Each line is a task of its own, found from its output line.
    let task_id = wide["response"]["request_id"].as_str().unwrap();
    let task = app.task(task_id).await;
    assert_eq!(
        (task["mode"].as_str(), task["batch_id"].as_str(), task["custom_id"].as_str()),
        (Some("batch"), Some(id.as_str()), Some("wide"))
    );

    let errors = file_lines(&app, done["error_file_id"].as_str().unwrap()).await;
    assert_eq!(errors.len(), 2);
    let bad = by_id(&errors, "bad-size");
    assert_eq!(bad["response"]["status_code"], 400);
    assert_eq!(bad["response"]["body"]["error"]["param"], "size");
    assert_eq!(bad["error"]["code"], bad["response"]["body"]["error"]["code"]);
    let refused = by_id(&errors, "refused");
    assert!(refused["response"]["status_code"].as_u64().unwrap() >= 400);
    assert!(refused["response"]["request_id"].as_str().unwrap().starts_with("task_"));

    // The batch's cost is its tasks' cost: two images made, nothing for the failed lines.
    let cost = done["cost_usd"].as_f64().unwrap();
    let wide_cost = task["cost_usd"].as_f64().unwrap();
    assert!(cost > wide_cost && wide_cost > 0.0, "{cost} {wide_cost}");

    // The batch's own webhook, signed like task webhooks.
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    let payload: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(payload["type"], "batch.completed");
    assert_eq!(payload["data"]["id"], id.as_str());
    assert_eq!(payload["data"]["request_counts"]["completed"], 2);
    let secret: Value = app
        .client
        .get(app.url("/v1/webhooks/secret"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wh = standardwebhooks::Webhook::new(secret["secret"].as_str().unwrap()).unwrap();
    let mut headers = http::HeaderMap::new();
    headers.insert("webhook-id", got[0].webhook_id.parse().unwrap());
    headers.insert("webhook-timestamp", got[0].timestamp.parse().unwrap());
    headers.insert("webhook-signature", got[0].signature.parse().unwrap());
    wh.verify(got[0].body.as_bytes(), &headers).expect("the batch webhook verifies");

    // Listed, newest first.
    let list: Value = app
        .client
        .get(app.url("/v1/batches?limit=5"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(list["has_more"], false);
}

#[tokio::test]
async fn a_file_with_a_duplicate_custom_id_fails_the_batch_at_validation() {
    let app = spawn_app().await;
    let ok = json!({"model": "nano-banana-pro", "prompt": "a fox"});
    let file = upload(&app, &app.key, &[line("a", ok.clone()), line("b", ok.clone()), line("a", ok)]).await;
    let batch = create_batch(&app, &file, None).await;
    let done = wait_batch(&app, batch["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "failed");
    assert!(done["failed_at"].as_i64().is_some());
    let err = &done["errors"]["data"][0];
    assert_eq!((err["code"].as_str(), err["line"].as_i64()), (Some("duplicate_custom_id"), Some(3)), "{done}");
    assert!(done["output_file_id"].is_null() && done["error_file_id"].is_null());
    let tasks = app.list_tasks("").await;
    assert_eq!(tasks["data"].as_array().unwrap().len(), 0, "no line ran");
}

#[tokio::test]
async fn cancelling_a_batch_cancels_the_lines_not_yet_done() {
    let app = spawn_app().await;
    let lines: Vec<String> = (0..12)
        .map(|i| {
            line(&format!("slow-{i}"), json!({"model": "nano-banana-pro", "prompt": format!("{i} [sim:delay:3s]")}))
        })
        .collect();
    let file = upload(&app, &app.key, &lines).await;
    let batch = create_batch(&app, &file, None).await;
    let id = batch["id"].as_str().unwrap();
    // Wait until its lines exist.
    for _ in 0..100 {
        let b: Value = get_batch(&app, &app.key, id).await.json().await.unwrap();
        if b["status"] == "in_progress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp =
        app.client.post(app.url(&format!("/v1/batches/{id}/cancel"))).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let cancelling: Value = resp.json().await.unwrap();
    assert_eq!(cancelling["status"], "cancelling");
    assert!(cancelling["cancelling_at"].as_i64().is_some());
    let done = wait_batch(&app, id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(done["request_counts"]["total"], 12);
    assert_eq!(done["request_counts"]["completed"], 0, "3 s lines cannot have finished");
    let errors = file_lines(&app, done["error_file_id"].as_str().unwrap()).await;
    assert_eq!(errors.len(), 12);
    assert!(errors.iter().all(|l| l["error"]["code"] == "batch_cancelled"), "{errors:?}");
    // Every line's task ended cancelled; none is left to run.
    let tasks = app.list_tasks("?limit=100").await;
    let statuses: Vec<&str> = tasks["data"].as_array().unwrap().iter().map(|t| t["status"].as_str().unwrap()).collect();
    assert_eq!(statuses.len(), 12);
    assert!(statuses.iter().all(|s| *s == "cancelled"), "{statuses:?}");
    // A second cancel is answered with the cancelled batch; a finished one cannot be cancelled.
    let again =
        app.client.post(app.url(&format!("/v1/batches/{id}/cancel"))).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn another_key_cannot_see_a_batch_its_files_or_its_tasks() {
    let app = spawn_app().await;
    let file = upload(&app, &app.key, &[line("only", json!({"model": "nano-banana", "prompt": "mine"}))]).await;
    let batch = create_batch(&app, &file, None).await;
    let id = batch["id"].as_str().unwrap();
    let done = wait_batch(&app, id).await;
    assert_eq!(done["status"], "completed");
    let output = file_lines(&app, done["output_file_id"].as_str().unwrap()).await;
    let task_id = output[0]["response"]["request_id"].as_str().unwrap();

    let other = app.new_key().await;
    for path in [
        format!("/v1/batches/{id}"),
        format!("/v1/files/{}", done["output_file_id"].as_str().unwrap()),
        format!("/v1/files/{}/content", done["output_file_id"].as_str().unwrap()),
        format!("/v1/tasks/{task_id}"),
    ] {
        let resp = app.client.get(app.url(&path)).bearer_auth(&other).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
    }
    let cancel =
        app.client.post(app.url(&format!("/v1/batches/{id}/cancel"))).bearer_auth(&other).send().await.unwrap();
    assert_error(cancel, StatusCode::NOT_FOUND, "not_found").await;
    let list: Value =
        app.client.get(app.url("/v1/batches")).bearer_auth(&other).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    // Nor can it make a batch of another key's file.
    let resp = create(&app, &other, json!({"input_file_id": file, "endpoint": EP, "completion_window": "24h"})).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_batch_request_is_checked_before_anything_is_made() {
    let app = spawn_app().await;
    let file = upload(&app, &app.key, &[line("a", json!({"model": "nano-banana", "prompt": "a"}))]).await;
    let cases = [
        (json!({"endpoint": EP, "completion_window": "24h"}), "missing_required_parameter", "input_file_id"),
        (
            json!({"input_file_id": file, "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
            "invalid_value",
            "endpoint",
        ),
        (
            json!({"input_file_id": file, "endpoint": EP, "completion_window": "1h"}),
            "invalid_value",
            "completion_window",
        ),
        (
            json!({"input_file_id": file, "endpoint": EP, "completion_window": "24h", "metadata": {"k": 5}}),
            "invalid_value",
            "metadata",
        ),
        (
            json!({"input_file_id": file, "endpoint": EP, "completion_window": "24h", "priority": 1}),
            "unknown_parameter",
            "priority",
        ),
        (
            json!({"input_file_id": file, "endpoint": EP, "completion_window": "24h",
                   "metadata": {"webhook_url": "file:///etc/passwd"}}),
            "invalid_webhook_url",
            "metadata.webhook_url",
        ),
    ];
    for (body, code, param) in cases {
        let resp = create(&app, &app.key, body.clone()).await;
        let err = assert_error(resp, StatusCode::BAD_REQUEST, code).await;
        assert_eq!(err["error"]["param"], param, "{body}");
    }
    let resp =
        create(&app, &app.key, json!({"input_file_id": "file-nope", "endpoint": EP, "completion_window": "24h"})).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    let resp = get_batch(&app, &app.key, "batch_01JDOESNOTEXIST0000000000").await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    let list: Value =
        app.client.get(app.url("/v1/batches")).bearer_auth(&app.key).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "no batch was made");
}

#[tokio::test]
async fn an_edits_batch_stores_each_lines_input_images_with_its_task() {
    use base64::Engine;
    let app = spawn_app().await;
    let png = {
        let img = image::RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 90]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    };
    let edit = |id: &str, images: Value| {
        json!({"custom_id": id, "method": "POST", "url": "/v1/images/edits",
               "body": {"model": "nano-banana", "prompt": "make it winter", "images": images}})
        .to_string()
    };
    let file = upload(
        &app,
        &app.key,
        &[edit("winter", json!([{"image_url": format!("data:image/png;base64,{png}")}])), edit("no-image", json!([]))],
    )
    .await;
    let resp = create(
        &app,
        &app.key,
        json!({"input_file_id": file, "endpoint": "/v1/images/edits", "completion_window": "24h"}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let batch: Value = resp.json().await.unwrap();
    let done = wait_batch(&app, batch["id"].as_str().unwrap()).await;
    assert_eq!(done["request_counts"], json!({"total": 2, "completed": 1, "failed": 1}), "{done}");
    let output = file_lines(&app, done["output_file_id"].as_str().unwrap()).await;
    let task = app.task(output[0]["response"]["request_id"].as_str().unwrap()).await;
    assert_eq!(task["inputs"].as_array().map(Vec::len), Some(1), "{task}");
    assert_eq!(
        (task["inputs"][0]["width"].as_u64(), task["inputs"][0]["content_type"].as_str()),
        (Some(32), Some("image/png"))
    );
    let errors = file_lines(&app, done["error_file_id"].as_str().unwrap()).await;
    assert_eq!(errors[0]["custom_id"], "no-image");
    assert_eq!(errors[0]["response"]["body"]["error"]["param"], "images");
}

#[tokio::test]
async fn a_batch_past_its_completion_window_expires_and_its_open_lines_are_cancelled() {
    let app = spawn_app().await;
    let sink = WebhookSink::start().await.unwrap();
    let lines: Vec<String> = (0..4)
        .map(|i| line(&format!("slow-{i}"), json!({"model": "nano-banana", "prompt": format!("{i} [sim:delay:5s]")})))
        .collect();
    let file = upload(&app, &app.key, &lines).await;
    let batch = create_batch(&app, &file, Some(json!({"webhook_url": sink.url()}))).await;
    let id = batch["id"].as_str().unwrap();
    for _ in 0..100 {
        let b: Value = get_batch(&app, &app.key, id).await.json().await.unwrap();
        if b["status"] == "in_progress" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A day passes (the window's end moved to now, in the database itself).
    let db = rusqlite::Connection::open(app.dir.path().join("imagegate.db")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute("UPDATE batches SET expires_at = 0 WHERE id = ?", [id]).unwrap();
    drop(db);
    let done = wait_batch(&app, id).await;
    assert_eq!(done["status"], "expired", "{done}");
    assert!(done["expired_at"].as_i64().is_some());
    let errors = file_lines(&app, done["error_file_id"].as_str().unwrap()).await;
    assert_eq!(errors.len(), 4);
    assert!(errors.iter().all(|l| l["error"]["code"] == "batch_expired"), "{errors:?}");
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    let payload: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(payload["type"], "batch.expired");
}

#[tokio::test]
async fn output_files_follow_the_keys_retention_and_uploads_may_set_their_own() {
    let app = spawn_app().await;
    let file = upload(&app, &app.key, &[line("a", json!({"model": "nano-banana", "prompt": "a"}))]).await;
    let done = wait_batch(&app, create_batch(&app, &file, None).await["id"].as_str().unwrap()).await;
    let out: Value = app
        .client
        .get(app.url(&format!("/v1/files/{}", done["output_file_id"].as_str().unwrap())))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(out["purpose"], "batch_output");
    assert_eq!(out["expires_at"].as_i64().unwrap() - out["created_at"].as_i64().unwrap(), 7 * 86_400);
    let form = Form::new()
        .text("purpose", "batch")
        .text("expires_after[anchor]", "created_at")
        .text("expires_after[seconds]", "3600")
        .part("file", Part::bytes(b"{}\n".to_vec()).file_name("x.jsonl"));
    let f: Value = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(&app.key)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f["expires_at"].as_i64().unwrap() - f["created_at"].as_i64().unwrap(), 3600);
    let form = Form::new()
        .text("purpose", "batch")
        .text("expires_after[seconds]", "5")
        .part("file", Part::bytes(b"{}\n".to_vec()).file_name("x.jsonl"));
    let resp = app.client.post(app.url("/v1/files")).bearer_auth(&app.key).multipart(form).send().await.unwrap();
    let err = assert_error(resp, StatusCode::BAD_REQUEST, "invalid_value").await;
    assert_eq!(err["error"]["param"], "expires_after");
}

#[tokio::test]
async fn a_batch_on_the_gateway_queue_leaves_worker_slots_for_realtime_requests() {
    let app = crate::support::spawn_with(
        |rt| {
            rt.worker_concurrency = 2;
            rt.batch.queue_share = 0.5;
        },
        false,
    )
    .await;
    let lines: Vec<String> = (0..3)
        .map(|i| line(&format!("slow-{i}"), json!({"model": "nano-banana", "prompt": format!("{i} [sim:delay:5s]")})))
        .collect();
    let file = upload(&app, &app.key, &lines).await;
    let id = create_batch(&app, &file, None).await["id"].as_str().unwrap().to_string();
    // Wait until a line runs.
    for _ in 0..100 {
        let running = app.list_tasks("?status=running").await;
        if !running["data"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = app.generate(json!({"model": "nano-banana", "prompt": "right now"})).await;
    assert_eq!(resp.status(), 200);
    let b: Value = get_batch(&app, &app.key, &id).await.json().await.unwrap();
    assert_eq!(b["request_counts"]["completed"], 0, "the sync request did not wait for a batch line: {b}");
    let running = app.list_tasks("?status=running").await;
    assert_eq!(running["data"].as_array().unwrap().len(), 1, "one batch line at a time on two slots at half share");
}
