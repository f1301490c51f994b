//! `spawn_app()` and `TestApp`: one helper per endpoint.

#![allow(dead_code)]

pub mod pg;
pub mod proc;
pub mod s3;

use imagegate::app::{Server, start};
use imagegate::config::{Config, Runtime, Secret};
use imagegate_fakes::FakeGemini;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

pub const ADMIN_TOKEN: &str = "admin-token-for-tests-0123456789";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub key: String,
    pub server: Option<Server>,
    pub gemini: Option<FakeGemini>,
    pub dir: tempfile::TempDir,
}

/// A runtime on a free port with its own data folder.
pub fn runtime(dir: &std::path::Path) -> Runtime {
    let mut rt = Config::defaults().and_then(|c| c.runtime()).expect("defaults");
    rt.listen = "127.0.0.1:0".parse().expect("addr");
    rt.public_url = format!("http://{}", rt.listen);
    rt.data_dir = dir.to_path_buf();
    rt.database_url = format!("sqlite://{}", dir.join("imagegate.db").display());
    rt.storage_url = format!("file://{}", dir.join("images").display());
    rt.admin_token = Some(Secret::new(ADMIN_TOKEN));
    rt.shutdown_grace = Duration::from_secs(2);
    // Tests deliver webhooks to sinks on 127.0.0.1, quickly.
    rt.webhook_allow_private = true;
    rt.webhook_schedule = vec![Duration::from_millis(100), Duration::from_millis(200), Duration::from_millis(300)];
    rt.export_schedule = vec![Duration::from_millis(200), Duration::from_millis(300), Duration::from_millis(400)];
    // Quick retries; breakers only where a test asks for them.
    rt.retry.max_attempts = 3;
    rt.retry.base = Duration::from_millis(10);
    rt.retry.max_backoff = Duration::from_millis(50);
    rt.retry.max_hint = Duration::from_secs(5);
    rt.breaker.failures = 1000;
    rt.openai_keys.clear();
    rt
}

/// The gateway on the simulated provider.
pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}, false).await
}

/// The gateway in front of a fake Gemini.
pub async fn spawn_gemini_app() -> TestApp {
    spawn_with(|_| {}, true).await
}

pub async fn spawn_with(tweak: impl FnOnce(&mut Runtime), gemini: bool) -> TestApp {
    imagegate::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rt = runtime(dir.path());
    let fake = if gemini {
        let fake = FakeGemini::start().await.expect("fake gemini");
        rt.gemini_keys = vec![Secret::new("test-gemini-key")];
        rt.gemini_base_url = fake.base_url();
        Some(fake)
    } else {
        None
    };
    tweak(&mut rt);
    let server = start(rt).await.expect("server starts");
    let (_, key) = imagegate::keys::issue(server.app.store.as_ref(), "test").await.expect("key");
    TestApp {
        base: format!("http://{}", server.addr),
        // Bounded: a request that hangs fails its test instead of holding the run.
        client: reqwest::Client::builder().timeout(Duration::from_secs(90)).build().expect("client"),
        key,
        server: Some(server),
        gemini: fake,
        dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn gemini(&self) -> &FakeGemini {
        self.gemini.as_ref().expect("this app has a fake gemini")
    }

    pub fn upstream_calls(&self) -> usize {
        self.gemini().script.call_count()
    }

    pub async fn new_key(&self) -> String {
        let server = self.server.as_ref().expect("running");
        imagegate::keys::issue(server.app.store.as_ref(), "other").await.expect("key").1
    }

    pub async fn generate(&self, body: Value) -> Response {
        self.generate_with(&self.key, body, &[]).await
    }

    pub async fn generate_with(&self, key: &str, body: Value, headers: &[(&str, &str)]) -> Response {
        let mut req = self.client.post(self.url("/v1/images/generations")).bearer_auth(key).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().await.expect("request sent")
    }

    /// `POST /v1/images/generations/async`; asserts 202 and returns the task.
    pub async fn submit_async(&self, key: &str, body: Value) -> Value {
        let resp = self
            .client
            .post(self.url("/v1/images/generations/async"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("request sent");
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "async submit");
        resp.json().await.expect("json")
    }

    pub async fn cancel(&self, key: &str, id: &str) -> Response {
        self.client
            .post(self.url(&format!("/v1/tasks/{id}/cancel")))
            .bearer_auth(key)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn task(&self, id: &str) -> Value {
        self.get_task(&self.key, id).await.json().await.expect("json")
    }

    pub async fn get_task(&self, key: &str, id: &str) -> Response {
        self.client.get(self.url(&format!("/v1/tasks/{id}"))).bearer_auth(key).send().await.expect("request sent")
    }

    pub async fn list_tasks(&self, query: &str) -> Value {
        self.client
            .get(self.url(&format!("/v1/tasks{query}")))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("json")
    }

    /// Polls the task until it ends (or 30 s pass).
    pub async fn wait_task(&self, id: &str) -> Value {
        for _ in 0..600 {
            let t: Value = self.get_task(&self.key, id).await.json().await.expect("json");
            if matches!(t["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("task {id} did not end");
    }

    pub async fn get(&self, url: &str) -> Response {
        self.client.get(url).send().await.expect("request sent")
    }

    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Response {
        let mut req = self.client.request(method, self.url(path)).bearer_auth(ADMIN_TOKEN);
        if let Some(b) = body {
            req = req.json(&b);
        }
        req.send().await.expect("request sent")
    }
}

impl TestApp {
    /// A key made through the admin API: `(id, secret)`.
    pub async fn admin_key(&self, name: &str) -> (String, String) {
        let resp = self.admin(reqwest::Method::POST, "/admin/v1/keys", Some(json!({"name": name}))).await;
        assert_eq!(resp.status(), StatusCode::CREATED);
        let k: Value = resp.json().await.expect("key json");
        (k["id"].as_str().expect("id").to_string(), k["key"].as_str().expect("key").to_string())
    }
}

/// Asserts an OpenAI-style error body and returns it.
pub async fn assert_error(resp: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(resp.status(), status, "status");
    assert!(resp.headers().contains_key("x-request-id"));
    let body: Value = resp.json().await.expect("error body is JSON");
    let err = &body["error"];
    assert_eq!(err["code"], json!(code), "{body}");
    assert!(err["message"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    assert!(err["type"].as_str().is_some(), "{body}");
    assert!(err.as_object().is_some_and(|o| o.contains_key("param")), "{body}");
    body
}

pub fn pro(prompt: &str) -> Value {
    json!({"model": "nano-banana-pro", "prompt": prompt})
}
