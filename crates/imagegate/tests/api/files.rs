//! The Files API (batch input files): upload as the openai SDK sends it, retrieve, list,
//! content, delete; files are the key's own.

use crate::support::{assert_error, spawn_app};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::Value;

fn jsonl(lines: usize) -> Vec<u8> {
    (0..lines)
        .map(|i| {
            format!(
                "{{\"custom_id\": \"line-{i}\", \"method\": \"POST\", \"url\": \"/v1/images/generations\", \
                 \"body\": {{\"model\": \"nano-banana-pro\", \"prompt\": \"picture {i}\"}}}}\n"
            )
        })
        .collect::<String>()
        .into_bytes()
}

fn upload(bytes: &[u8], purpose: &str) -> Form {
    Form::new()
        .text("purpose", purpose.to_string())
        .part("file", Part::bytes(bytes.to_vec()).file_name("requests.jsonl"))
}

#[tokio::test]
async fn a_file_is_uploaded_read_back_listed_and_deleted() {
    let app = spawn_app().await;
    let body = jsonl(5_000);
    let resp = app
        .client
        .post(app.url("/v1/files"))
        .bearer_auth(&app.key)
        .multipart(upload(&body, "batch"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let file: Value = resp.json().await.unwrap();
    let id = file["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("file-"));
    assert_eq!(
        (file["object"].as_str(), file["purpose"].as_str(), file["filename"].as_str()),
        (Some("file"), Some("batch"), Some("requests.jsonl"))
    );
    assert_eq!(file["bytes"], body.len());
    assert_eq!(file["status"], "processed");

    let got: Value = app
        .client
        .get(app.url(&format!("/v1/files/{id}")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, file);
    let content =
        app.client.get(app.url(&format!("/v1/files/{id}/content"))).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(content.bytes().await.unwrap().to_vec(), body, "the bytes uploaded");
    let list: Value = app
        .client
        .get(app.url("/v1/files?purpose=batch"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"][0]["id"], id.as_str());

    // Another key sees none of it.
    let other = app.new_key().await;
    for path in [format!("/v1/files/{id}"), format!("/v1/files/{id}/content")] {
        let resp = app.client.get(app.url(&path)).bearer_auth(&other).send().await.unwrap();
        assert_error(resp, StatusCode::NOT_FOUND, "not_found").await;
    }
    let resp = app.client.delete(app.url(&format!("/v1/files/{id}"))).bearer_auth(&other).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let theirs: Value =
        app.client.get(app.url("/v1/files")).bearer_auth(&other).send().await.unwrap().json().await.unwrap();
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);

    let deleted: Value = app
        .client
        .delete(app.url(&format!("/v1/files/{id}")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!((deleted["id"].as_str(), deleted["deleted"].as_bool()), (Some(id.as_str()), Some(true)));
    let resp = app.client.get(app.url(&format!("/v1/files/{id}"))).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    let stored: Vec<_> = walk(&app.dir.path().join("images")).into_iter().filter(|n| n.starts_with("files_")).collect();
    assert!(stored.is_empty(), "the content is gone too: {stored:?}");
}

#[tokio::test]
async fn bad_uploads_are_refused_and_leave_nothing_stored() {
    let app = spawn_app().await;
    let cases = [
        (upload(b"{}\n", "fine-tune"), "invalid_value", "purpose"),
        (
            Form::new().part("file", Part::bytes(b"{}\n".to_vec()).file_name("a.jsonl")),
            "missing_required_parameter",
            "purpose",
        ),
        (Form::new().text("purpose", "batch"), "missing_required_parameter", "file"),
        (upload(b"", "batch"), "invalid_value", "file"),
        (upload(b"{}\n", "batch").text("colour", "red"), "unknown_parameter", "colour"),
    ];
    for (form, code, param) in cases {
        let resp = app.client.post(app.url("/v1/files")).bearer_auth(&app.key).multipart(form).send().await.unwrap();
        let err = assert_error(resp, StatusCode::BAD_REQUEST, code).await;
        assert_eq!(err["error"]["param"], param);
    }
    let stored: Vec<_> = walk(&app.dir.path().join("images")).into_iter().filter(|n| n.starts_with("files_")).collect();
    assert!(stored.is_empty(), "refused uploads are not kept: {stored:?}");
    let resp = app.client.post(app.url("/v1/files")).multipart(upload(b"{}\n", "batch")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else if let Some(n) = p.file_name().and_then(|n| n.to_str()) {
                out.push(n.to_string());
            }
        }
    }
    out
}
