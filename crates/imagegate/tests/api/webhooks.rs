//! Signed webhooks: verified with the `standardwebhooks` crate (an independent implementation of
//! the spec), retried on failure with a stable webhook-id, logged per attempt, SSRF-guarded.

use imagegate_fakes::WebhookSink;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

use crate::support::*;

async fn secret(app: &TestApp) -> String {
    let resp = app.client.get(app.url("/v1/webhooks/secret")).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    body["secret"].as_str().unwrap().to_string()
}

fn verify(secret: &str, d: &imagegate_fakes::webhook_sink::Delivery) -> Result<(), String> {
    let wh = standardwebhooks::Webhook::new(secret).map_err(|e| format!("{e:?}"))?;
    let mut headers = http::HeaderMap::new();
    headers.insert("webhook-id", d.webhook_id.parse().unwrap());
    headers.insert("webhook-timestamp", d.timestamp.parse().unwrap());
    headers.insert("webhook-signature", d.signature.parse().unwrap());
    wh.verify(d.body.as_bytes(), &headers).map_err(|e| format!("{e:?}"))
}

#[tokio::test]
async fn a_completed_task_sends_a_webhook_that_verifies_under_the_standard() {
    let app = spawn_app().await;
    let sink = WebhookSink::start().await.unwrap();
    let mut body = pro("notify me");
    body["webhook_url"] = json!(sink.url());
    let task = app.submit_async(&app.key, body).await;
    assert_eq!(task["request"]["webhook_url"], json!(sink.url()));
    let got = sink.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got.len(), 1);
    let d = &got[0];
    let secret = secret(&app).await;
    assert!(secret.starts_with("whsec_"));
    verify(&secret, d).expect("signature verifies");
    assert!(verify("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", d).is_err(), "another secret does not verify");
    assert!(d.webhook_id.starts_with("msg_"));
    let payload: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(payload["type"], "task.completed");
    assert!(payload["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(payload["data"]["id"], task["id"]);
    assert_eq!(payload["data"]["status"], "completed");
    assert!(payload["data"]["result"]["data"][0]["url"].as_str().is_some());

    // A `started` event would have been written when the task was claimed, before this one.
    let log = app.client.get(app.url(&format!("/v1/tasks/{}/webhook-deliveries", task["id"].as_str().unwrap())));
    let log: Value = log.bearer_auth(&app.key).send().await.unwrap().json().await.unwrap();
    let events: Vec<&str> = log["data"].as_array().unwrap().iter().map(|a| a["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["task.completed"], "started is not sent unless asked for");
    assert_eq!(sink.deliveries().len(), 1);

    // Rotation: later deliveries are signed with the new secret.
    let rotated: Value = app
        .client
        .post(app.url("/v1/webhooks/secret/rotate"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new_secret, secret);
    let mut body = pro("after rotation");
    body["webhook_url"] = json!(sink.url());
    app.submit_async(&app.key, body).await;
    let got = sink.wait_for(2, Duration::from_secs(10)).await;
    verify(&new_secret, &got[1]).expect("signed with the rotated secret");
    assert!(verify(&secret, &got[1]).is_err());
}

#[tokio::test]
async fn a_receiver_that_fails_twice_gets_the_same_webhook_id_on_the_third_attempt() {
    let app = spawn_app().await;
    let sink = WebhookSink::start().await.unwrap();
    sink.reply_with(&[500, 500]);
    let mut body = pro("retry me");
    body["webhook_url"] = json!(sink.url());
    // One event, so the two 500s and the success are all attempts of the same message.
    body["webhook_events"] = json!(["completed"]);
    let task = app.submit_async(&app.key, body).await;
    let id = task["id"].as_str().unwrap();
    let got = sink.wait_for(3, Duration::from_secs(10)).await;
    assert!(got.iter().all(|d| d.body.contains("\"task.completed\"")));
    let first_id = &got[0].webhook_id;
    let same: Vec<_> = got.iter().filter(|d| &d.webhook_id == first_id).collect();
    assert_eq!(same.len(), 3, "two failures then success, one webhook-id");
    assert!(same.windows(2).all(|w| w[1].received_at > w[0].received_at));
    assert_eq!(same.iter().map(|d| d.body.as_str()).collect::<std::collections::HashSet<_>>().len(), 1, "same body");

    let log: Value = app
        .client
        .get(app.url(&format!("/v1/tasks/{id}/webhook-deliveries")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let codes: Vec<Value> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["webhook_id"] == json!(first_id))
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(codes, vec![json!(500), json!(500), json!(200)]);
    assert!(log["data"][0]["latency_ms"].as_i64().is_some());
    assert_eq!(log["data"][0]["url"], json!(sink.url()));

    let other = app.new_key().await;
    let resp = app
        .client
        .get(app.url(&format!("/v1/tasks/{id}/webhook-deliveries")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn failed_and_cancelled_tasks_send_their_events() {
    let app = spawn_with(|rt| rt.worker_concurrency = 1, false).await;
    let sink = WebhookSink::start().await.unwrap();
    let with_hook = |prompt: &str| {
        let mut b = pro(prompt);
        b["webhook_url"] = json!(sink.url());
        b
    };
    app.submit_async(&app.key, with_hook("refused [sim:refuse]")).await;
    app.submit_async(&app.key, pro("blocker [sim:delay:500ms]")).await;
    let queued = app.submit_async(&app.key, with_hook("cancel me")).await;
    assert_eq!(app.cancel(&app.key, queued["id"].as_str().unwrap()).await.status(), 200);
    let got = sink.wait_for(2, Duration::from_secs(10)).await;
    let mut types: Vec<String> = got
        .iter()
        .map(|d| serde_json::from_str::<Value>(&d.body).unwrap()["type"].as_str().unwrap().to_string())
        .collect();
    types.sort();
    assert_eq!(types, vec!["task.cancelled", "task.failed"]);
    let failed: Value = got
        .iter()
        .map(|d| serde_json::from_str::<Value>(&d.body).unwrap())
        .find(|p| p["type"] == "task.failed")
        .unwrap();
    assert_eq!(failed["data"]["error"]["code"], "content_policy_violation");
}

/// A name other than `localhost` that this machine resolves to a loopback address.
fn loopback_hostname() -> String {
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    hosts
        .lines()
        .filter(|l| l.starts_with("127."))
        .flat_map(|l| l.split_whitespace().skip(1))
        .find(|name| !name.starts_with("localhost") && !name.starts_with('#'))
        .map(str::to_string)
        .expect("/etc/hosts maps a non-localhost name to 127.x")
}

#[tokio::test]
async fn every_ssrf_form_is_refused_at_submit() {
    let app = spawn_with(|rt| rt.webhook_allow_private = false, true).await;
    let name = loopback_hostname();
    let targets = [
        "http://127.0.0.1/hook".to_string(),
        "http://localhost:8080/hook".into(),
        "http://[::1]/hook".into(),
        "http://10.1.2.3/hook".into(),
        "http://172.16.0.1/hook".into(),
        "http://192.168.0.10/hook".into(),
        "http://169.254.169.254/latest/meta-data/".into(),
        "http://[::ffff:127.0.0.1]/hook".into(),
        "http://0.0.0.0/hook".into(),
        format!("http://{name}:9/hook"),
        "file:///etc/passwd".into(),
        "gopher://example.com/".into(),
    ];
    for target in targets {
        let mut body = pro("x");
        body["webhook_url"] = json!(target);
        let resp = app
            .client
            .post(app.url("/v1/images/generations/async"))
            .bearer_auth(&app.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        let err = assert_error(resp, StatusCode::BAD_REQUEST, "invalid_webhook_url").await;
        assert_eq!(err["error"]["param"], "webhook_url", "{target}");
    }
    assert_eq!(app.upstream_calls(), 0);
    let mut body = pro("x");
    body["webhook_url"] = json!("https://hooks.example.com/x");
    body["webhook_events"] = json!(["exploded"]);
    let resp = app
        .client
        .post(app.url("/v1/images/generations/async"))
        .bearer_auth(&app.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_value").await;
}

/// Answers like a DNS server that re-binds a name: a public address first, 127.0.0.1 after.
struct Rebinding {
    lookups: std::sync::atomic::AtomicUsize,
}

impl imagegate::egress::Resolver for Rebinding {
    fn lookup(&self, _host: &str, port: u16) -> imagegate::egress::resolver::Lookup {
        let n = self.lookups.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let ip: std::net::IpAddr = if n == 0 { [93, 184, 216, 34].into() } else { [127, 0, 0, 1].into() };
        Box::pin(async move { Ok(vec![std::net::SocketAddr::new(ip, port)]) })
    }
}

#[tokio::test]
async fn a_name_that_rebinds_to_loopback_after_the_submit_check_is_never_connected_to() {
    let sink = WebhookSink::start().await.unwrap();
    let app = spawn_with(
        |rt| {
            rt.webhook_allow_private = false;
            rt.resolver = imagegate::config::Resolvers(std::sync::Arc::new(Rebinding {
                lookups: std::sync::atomic::AtomicUsize::new(0),
            }));
        },
        false,
    )
    .await;
    // The sink listens on 127.0.0.1: reached only if the connect-time check is missing.
    let url = format!("http://rebind.example:{}/hooks", sink.addr.port());
    let task = app.submit_async(&app.key, json!({"model": "nano-banana-pro", "prompt": "x", "webhook_url": url})).await;
    let id = task["id"].as_str().unwrap();
    app.wait_task(id).await;
    let attempts = loop {
        let resp = app.client.get(app.url(&format!("/v1/tasks/{id}/webhook-deliveries"))).bearer_auth(&app.key);
        let log: Value = resp.send().await.unwrap().json().await.unwrap();
        if !log["data"].as_array().unwrap().is_empty() {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let error = attempts["data"][0]["error"].as_str().unwrap();
    assert!(error.contains("non-public"), "{error}");
    assert!(!error.contains("127.0.0.1"), "the log does not say where the name pointed: {error}");
    assert!(sink.deliveries().is_empty(), "the connection never reached the loopback listener");
}

#[tokio::test]
async fn a_refused_name_does_not_reveal_the_address_it_resolves_to() {
    let app = spawn_with(|rt| rt.webhook_allow_private = false, false).await;
    let mut body = pro("x");
    body["webhook_url"] = json!(format!("http://{}:9/hook", loopback_hostname()));
    let resp = app.client.post(app.url("/v1/images/generations/async")).bearer_auth(&app.key).json(&body);
    let err = assert_error(resp.send().await.unwrap(), StatusCode::BAD_REQUEST, "invalid_webhook_url").await;
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.contains("non-public") && !message.contains("127."), "{message}");
}
