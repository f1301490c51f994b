//! Export to the customer's own bucket: every image of a key with a destination is also copied
//! there (with retries), and the task lists where each landed. Against a real SeaweedFS.

use imagegate::blobs::BlobStore;
use imagegate::blobs::s3::{S3BlobStore, S3Location};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::support::s3::{self, ACCESS, BUCKET, SECRET};
use crate::support::{TestApp, assert_error, pro, spawn_app};

fn prefix() -> String {
    format!("customer-{:x}/exports", rand::random::<u64>())
}

fn destination(endpoint: &str, prefix: &str, secret: &str) -> Value {
    json!({"bucket": BUCKET, "prefix": prefix, "endpoint": endpoint, "region": "us-east-1",
           "access_key_id": ACCESS, "secret_access_key": secret})
}

/// The customer's view of their bucket under `prefix`.
fn customer_bucket(endpoint: &str, prefix: &str) -> S3BlobStore {
    let loc = S3Location {
        bucket: BUCKET.into(),
        prefix: prefix.into(),
        endpoint: Some(endpoint.into()),
        region: "us-east-1".into(),
        virtual_host: false,
    };
    S3BlobStore::new(&loc, Some(ACCESS.into()), Some(SECRET.into())).unwrap()
}

/// Polls the task until none of its exports is pending.
async fn settled_exports(app: &TestApp, key: &str, task_id: &str, within: Duration) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let t: Value = app.get_task(key, task_id).await.json().await.unwrap();
        let exports = t["exports"].as_array().cloned().unwrap_or_default();
        if !exports.is_empty() && exports.iter().all(|e| e["status"] != "pending") {
            return exports;
        }
        assert!(Instant::now() < deadline, "exports still pending: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_image_lands_in_the_customers_bucket_under_the_prefix() {
    let s3 = s3::s3().await;
    let app = spawn_app().await;
    let (key_id, key) = app.admin_key("acme").await;
    let prefix = prefix();
    let resp = app
        .admin(
            Method::PUT,
            &format!("/admin/v1/keys/{key_id}/export"),
            Some(destination(&s3.endpoint, &prefix, SECRET)),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let shown = resp.text().await.unwrap();
    assert!(!shown.contains(SECRET), "the secret is never shown back: {shown}");
    let shown: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(shown["secret_access_key"], "<sealed>");
    assert_eq!(shown["prefix"], json!(prefix));
    let listed: Value = app.admin(Method::GET, &format!("/admin/v1/keys/{key_id}"), None).await.json().await.unwrap();
    assert_eq!(listed["export"]["bucket"], BUCKET);

    let resp =
        app.generate_with(&key, json!({"model": "nano-banana-pro", "prompt": "kept forever", "n": 2}), &[]).await;
    assert_eq!(resp.status(), 200);
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    let exports = settled_exports(&app, &key, &task_id, Duration::from_secs(20)).await;
    assert_eq!(exports.len(), 2);
    let bucket = customer_bucket(&s3.endpoint, &prefix);
    for (i, item) in body["data"].as_array().unwrap().iter().enumerate() {
        let served = app.get(item["url"].as_str().unwrap()).await.bytes().await.unwrap();
        let e = exports.iter().find(|e| e["key"].as_str().unwrap().ends_with(&format!("-{i}.jpeg"))).unwrap();
        assert_eq!(e["status"], "exported", "{e}");
        assert_eq!(e["bucket"], BUCKET);
        assert_eq!(e["key"], json!(format!("{prefix}/{task_id}-{i}.jpeg")));
        assert!(e["exported_at"].as_i64().is_some());
        let copied = bucket.get(&format!("{task_id}-{i}.jpeg")).await.unwrap();
        assert_eq!(copied, served, "the customer's copy is the image served");
    }

    // The secret is stored sealed: it appears nowhere in the database file.
    let db = std::fs::read(app.dir.path().join("imagegate.db")).unwrap();
    let wal = std::fs::read(app.dir.path().join("imagegate.db-wal")).unwrap_or_default();
    for file in [&db, &wal] {
        assert!(!file.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()), "secret stored in the clear");
    }

    // Another key's images are not exported; removing the destination stops later copies.
    let other = app.new_key().await;
    let resp = app.generate_with(&other, pro("not exported"), &[]).await;
    let other_task = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let t: Value = app.get_task(&other, &other_task).await.json().await.unwrap();
    assert!(t.get("exports").is_none(), "{t}");
    let resp = app.admin(Method::DELETE, &format!("/admin/v1/keys/{key_id}/export"), None).await;
    assert_eq!(resp.status(), 200);
    let resp = app.generate_with(&key, pro("after removal"), &[]).await;
    let later = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let t: Value = app.get_task(&key, &later).await.json().await.unwrap();
    assert!(t.get("exports").is_none(), "{t}");
    assert_error(
        app.admin(Method::GET, &format!("/admin/v1/keys/{key_id}/export"), None).await,
        StatusCode::NOT_FOUND,
        "export_not_found",
    )
    .await;
}

#[tokio::test]
async fn a_failing_copy_is_retried_until_the_destination_works() {
    let s3 = s3::s3().await;
    let app = spawn_app().await;
    let (key_id, key) = app.admin_key("acme").await;
    let prefix = prefix();
    let path = format!("/admin/v1/keys/{key_id}/export");
    // Accepted unverified with a wrong secret: every copy is refused for now.
    let mut wrong = destination(&s3.endpoint, &prefix, "not-the-secret-000000000");
    wrong["verify"] = json!(false);
    assert_eq!(app.admin(Method::PUT, &path, Some(wrong)).await.status(), 200);
    let task = app.generate_with(&key, pro("retried copy"), &[]).await;
    let task_id = task.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let t: Value = app.get_task(&key, &task_id).await.json().await.unwrap();
        let e = &t["exports"][0];
        if e["attempts"].as_i64().unwrap_or(0) >= 1 {
            assert_eq!(e["status"], "pending", "{t}");
            assert!(e["error"].as_str().is_some_and(|m| !m.is_empty()), "the failure is shown: {t}");
            assert!(!e["error"].as_str().unwrap().contains("not-the-secret"), "no secret in errors");
            break;
        }
        assert!(Instant::now() < deadline, "no attempt recorded: {t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The admin fixes the credentials; the next retry lands.
    assert_eq!(app.admin(Method::PUT, &path, Some(destination(&s3.endpoint, &prefix, SECRET))).await.status(), 200);
    let exports = settled_exports(&app, &key, &task_id, Duration::from_secs(20)).await;
    assert_eq!(exports[0]["status"], "exported", "{exports:?}");
    assert!(exports[0]["attempts"].as_i64().unwrap() >= 2);
    assert_eq!(exports[0]["error"], Value::Null);
    let copied = customer_bucket(&s3.endpoint, &prefix).get(&format!("{task_id}-0.jpeg")).await.unwrap();
    assert!(copied.starts_with(&[0xFF, 0xD8]), "a JPEG landed");
}

#[tokio::test]
async fn a_copy_that_keeps_failing_is_given_up_with_its_reason() {
    let s3 = s3::s3().await;
    let app = spawn_app().await;
    let (key_id, key) = app.admin_key("acme").await;
    let mut wrong = destination(&s3.endpoint, &prefix(), "not-the-secret-000000000");
    wrong["verify"] = json!(false);
    assert_eq!(app.admin(Method::PUT, &format!("/admin/v1/keys/{key_id}/export"), Some(wrong)).await.status(), 200);
    let task = app.generate_with(&key, pro("never exported"), &[]).await;
    let task_id = task.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let exports = settled_exports(&app, &key, &task_id, Duration::from_secs(20)).await;
    let e = &exports[0];
    assert_eq!(e["status"], "failed", "{e}");
    assert_eq!(e["attempts"], 4, "the first try and the three retries of the schedule: {e}");
    assert!(e["error"].as_str().unwrap().contains("refused the credentials"), "{e}");
    assert_eq!(e["key"], Value::Null);
    // The image itself is unaffected.
    let t: Value = app.get_task(&key, &task_id).await.json().await.unwrap();
    assert_eq!(t["status"], "completed");
}

#[tokio::test]
async fn bad_destinations_are_refused_with_the_reason() {
    let s3 = s3::s3().await;
    let app = spawn_app().await;
    let (key_id, key) = app.admin_key("acme").await;
    let path = format!("/admin/v1/keys/{key_id}/export");
    let put = |body: Value| app.admin(Method::PUT, &path, Some(body));

    let wrong_secret = destination(&s3.endpoint, &prefix(), "not-the-secret-000000000");
    let body = assert_error(put(wrong_secret).await, StatusCode::BAD_REQUEST, "export_destination_unreachable").await;
    assert_eq!(body["error"]["param"], "access_key_id", "{body}");
    let mut no_bucket = destination(&s3.endpoint, &prefix(), SECRET);
    no_bucket["bucket"] = json!("no-such-bucket-here");
    let body = assert_error(put(no_bucket).await, StatusCode::BAD_REQUEST, "export_destination_unreachable").await;
    assert_eq!(body["error"]["param"], "bucket", "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("no-such-bucket-here"), "{body}");
    let mut unreachable = destination("http://127.0.0.1:9", &prefix(), SECRET);
    unreachable["endpoint"] = json!("http://127.0.0.1:9");
    assert_error(put(unreachable).await, StatusCode::BAD_REQUEST, "export_destination_unreachable").await;
    let mut unset_env = destination(&s3.endpoint, &prefix(), "env::IMAGEGATE_TEST_SURELY_UNSET_VARIABLE");
    unset_env["verify"] = json!(true);
    let body = assert_error(put(unset_env).await, StatusCode::BAD_REQUEST, "invalid_value").await;
    assert_eq!(body["error"]["param"], "secret_access_key");
    assert!(body["error"]["message"].as_str().unwrap().contains("IMAGEGATE_TEST_SURELY_UNSET_VARIABLE"));
    let mut no_secret = destination(&s3.endpoint, &prefix(), SECRET);
    no_secret.as_object_mut().unwrap().remove("secret_access_key");
    let body = assert_error(put(no_secret).await, StatusCode::BAD_REQUEST, "invalid_value").await;
    assert_eq!(body["error"]["param"], "secret_access_key");
    let body = assert_error(put(json!(["not", "an", "object"])).await, StatusCode::BAD_REQUEST, "invalid_json").await;
    assert_eq!(body["error"]["type"], "invalid_request_error");

    // Nothing was stored by any of these.
    assert_error(app.admin(Method::GET, &path, None).await, StatusCode::NOT_FOUND, "export_not_found").await;
    // Admin only; unknown keys are 404.
    let resp = app.client.put(app.url(&path)).bearer_auth(&key).json(&destination("", "", "")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "an API key is not the admin token");
    let resp = app.admin(Method::PUT, "/admin/v1/keys/key_00000000000000000000000000/export", Some(json!({}))).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_long_error_in_any_language_from_the_destination_is_a_clear_400() {
    // A destination whose every answer is a 500 with a long, non-ASCII body.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new().fallback(|| async {
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "内部エラーが発生しました。後でもう一度お試しください。".repeat(40),
        )
    });
    tokio::spawn(async move { axum::serve(listener, router).await });
    let app = spawn_app().await;
    let (key_id, _) = app.admin_key("faraway").await;
    let resp = app
        .admin(Method::PUT, &format!("/admin/v1/keys/{key_id}/export"), Some(destination(&endpoint, &prefix(), SECRET)))
        .await;
    let body = assert_error(resp, StatusCode::BAD_REQUEST, "export_destination_unreachable").await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() < 1000, "{} bytes", message.len());
}
