//! Keys: the admin API, Bearer auth, revocation.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

#[tokio::test]
async fn requests_without_a_valid_key_get_401() {
    let app = spawn_app().await;
    let url = app.url("/v1/images/generations");
    let resp = app.client.post(&url).json(&pro("x")).send().await.unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    let resp = app.client.post(&url).bearer_auth("igk_wrong").json(&pro("x")).send().await.unwrap();
    let body = assert_error(resp, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    assert_eq!(body["error"]["type"], "authentication_error");
    let resp = app.client.get(app.url("/v1/tasks")).bearer_auth("sk-openai-style").send().await.unwrap();
    assert_error(resp, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
}

#[tokio::test]
async fn the_admin_api_creates_lists_and_revokes_keys() {
    let app = spawn_app().await;
    let resp = app.admin(Method::POST, "/admin/v1/keys", Some(json!({"name": "acme"}))).await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let created: Value = resp.json().await.unwrap();
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("igk_") && key.len() >= 36);
    assert!(id.starts_with("key_"));
    assert_eq!(created["name"], "acme");

    assert_eq!(app.generate_with(&key, pro("hello"), &[]).await.status(), 200);

    let list: Value = app.admin(Method::GET, "/admin/v1/keys", None).await.json().await.unwrap();
    let listed = list["data"].as_array().unwrap().iter().find(|k| k["id"] == json!(id)).unwrap().clone();
    assert!(listed.get("key").is_none(), "the secret is never listed");
    assert!(!list.to_string().contains(&key));

    let resp = app.admin(Method::DELETE, &format!("/admin/v1/keys/{id}"), None).await;
    assert_eq!(resp.status(), 200);
    let resp = app.generate_with(&key, pro("hello"), &[]).await;
    let body = assert_error(resp, StatusCode::UNAUTHORIZED, "invalid_api_key").await;
    assert!(body["error"]["message"].as_str().unwrap().contains("revoked"));

    let resp = app.admin(Method::DELETE, "/admin/v1/keys/key_01NOSUCHKEY000000000000000", None).await;
    assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn admin_routes_need_the_admin_token() {
    let app = spawn_app().await;
    let resp = app.client.get(app.url("/admin/v1/keys")).bearer_auth(&app.key).send().await.unwrap();
    let body = assert_error(resp, StatusCode::FORBIDDEN, "admin_token_required").await;
    assert_eq!(body["error"]["type"], "permission_error");
    let resp = app.client.get(app.url("/admin/v1/keys")).send().await.unwrap();
    assert_error(resp, StatusCode::FORBIDDEN, "admin_token_required").await;

    let off = spawn_with(|rt| rt.admin_token = None, false).await;
    let resp = off.client.get(off.url("/admin/v1/keys")).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
    assert_error(resp, StatusCode::FORBIDDEN, "admin_api_disabled").await;
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    let resp = app.get(&app.url("/healthz")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-request-id"));
    let ready: Value = app.get(&app.url("/readyz")).await.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["provider"], "simulated");
}
