//! Reference images on generations: an image made with the same key (by id) or a `data:` URL
//! becomes an input stored with the task, and reaches Gemini as `inlineData` after the prompt,
//! the stored bytes exactly. Bad references are refused before anything is stored or sent.

use crate::support::spawn_gemini_app;
use base64::Engine;
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A small PNG made here.
fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 20) as u8, (y * 20) as u8, 99]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

/// The parts of the last request the fake Gemini received.
fn last_parts(app: &crate::support::TestApp) -> Vec<Value> {
    let calls = app.gemini().script.calls();
    calls.last().expect("an upstream call").body["contents"][0]["parts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn an_image_made_with_the_key_is_edited_by_id_and_reaches_gemini_as_its_stored_bytes() {
    let app = spawn_gemini_app().await;
    let made: Value =
        app.generate(json!({"model": "nano-banana-pro", "prompt": "a lighthouse"})).await.json().await.unwrap();
    let id = made["data"][0]["id"].as_str().unwrap().to_string();
    let url = made["data"][0]["url"].as_str().unwrap().to_string();
    let stored = app.get(&url).await.bytes().await.unwrap();

    let resp = app
        .generate(json!({"model": "nano-banana-pro", "prompt": "make the sky orange", "reference_images": [id]}))
        .await;
    assert_eq!(resp.status(), 200);
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let parts = last_parts(&app);
    assert_eq!(parts[0]["text"], "make the sky orange", "the prompt first");
    assert_eq!(parts[1]["inlineData"]["data"], b64(&stored), "then the image, as stored");
    assert_eq!(parts[1]["inlineData"]["mimeType"], "image/jpeg");
    assert_eq!(parts.len(), 2);

    let task: Value = app.get_task(&app.key, &task_id).await.json().await.unwrap();
    let inputs = task["inputs"].as_array().expect("the task lists its inputs");
    assert_eq!(inputs.len(), 1);
    assert!(inputs[0]["id"].as_str().unwrap().starts_with("inp_"));
    assert_eq!(inputs[0]["bytes"], stored.len());
    assert_eq!((inputs[0]["width"].as_u64(), inputs[0]["height"].as_u64()), (Some(1024), Some(1024)));
}

#[tokio::test]
async fn data_url_references_are_stored_once_and_sent_in_order() {
    let app = spawn_gemini_app().await;
    let (a, b) = (png(8, 6), png(4, 4));
    let refs = [format!("data:image/png;base64,{}", b64(&a)), format!("data:image/png;base64,{}", b64(&b))];
    let task = app
        .submit_async(&app.key, json!({"model": "nano-banana-pro", "prompt": "compose", "reference_images": refs}))
        .await;
    let done = app.wait_task(task["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    let parts = last_parts(&app);
    assert_eq!(parts[1]["inlineData"], json!({"mimeType": "image/png", "data": b64(&a)}));
    assert_eq!(parts[2]["inlineData"], json!({"mimeType": "image/png", "data": b64(&b)}));
    // The task keeps the inputs, not the data: the request names them by id.
    let kept = done["request"]["reference_images"].as_array().unwrap();
    let inputs = done["inputs"].as_array().unwrap();
    assert_eq!(kept.len(), 2);
    for (k, i) in kept.iter().zip(inputs) {
        assert_eq!(k, &i["id"]);
    }
    assert_eq!((inputs[0]["width"].as_u64(), inputs[0]["height"].as_u64()), (Some(8), Some(6)));
    assert!(!done.to_string().contains(&b64(&a)), "no image data in the task object");
    let list = app.list_tasks("?limit=5").await;
    assert_eq!(list["data"][0]["inputs"], done["inputs"], "lists show the inputs too");
}

#[tokio::test]
async fn bad_references_are_refused_naming_the_input_before_any_upstream_call() {
    let app = spawn_gemini_app().await;
    let made: Value = app.generate(json!({"model": "nano-banana-pro", "prompt": "mine"})).await.json().await.unwrap();
    let mine = made["data"][0]["id"].as_str().unwrap().to_string();
    let calls = app.upstream_calls();
    let other_key = app.new_key().await;
    let good = format!("data:image/png;base64,{}", b64(&png(2, 2)));
    let cases: Vec<(String, Value, u16, &str, &str)> = vec![
        (other_key.clone(), json!([good, mine]), 404, "image_not_found", "reference_images[1]"),
        (app.key.clone(), json!(["img_doesnotexist"]), 404, "image_not_found", "reference_images[0]"),
        (app.key.clone(), json!(["https://127.0.0.1/a.png"]), 400, "invalid_image_url", "reference_images[0]"),
        (app.key.clone(), json!([good, "https://[::1]:8080/a.png"]), 400, "invalid_image_url", "reference_images[1]"),
        (app.key.clone(), json!(["http://93.184.215.14/a.png"]), 400, "invalid_image_url", "reference_images[0]"),
        (app.key.clone(), json!(["file:///etc/passwd"]), 400, "invalid_image_reference", "reference_images[0]"),
        (
            app.key.clone(),
            json!([good, "data:text/plain;base64,aGVsbG8="]),
            400,
            "invalid_image",
            "reference_images[1]",
        ),
        (app.key.clone(), json!([good, "data:image/png;base64,@@"]), 400, "invalid_image", "reference_images[1]"),
        (app.key.clone(), json!([1]), 400, "invalid_type", "reference_images[0]"),
        (app.key.clone(), json!(vec![mine.clone(); 15]), 400, "too_many_images", "reference_images[14]"),
    ];
    for (key, refs, status, code, param) in cases {
        let body = json!({"model": "nano-banana-pro", "prompt": "edit", "reference_images": refs});
        let resp = app.generate_with(&key, body, &[]).await;
        assert_eq!(resp.status().as_u16(), status, "{refs}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!((err["error"]["code"].as_str(), err["error"]["param"].as_str()), (Some(code), Some(param)), "{err}");
    }
    let flash = json!({"model": "nano-banana", "prompt": "edit", "reference_images": vec![mine.clone(); 4]});
    assert_eq!(app.generate(flash).await.status(), 400, "Nano Banana takes at most 3");
    let openai = json!({"model": "gpt-image-1", "prompt": "edit", "reference_images": vec![mine.clone(); 17]});
    assert_eq!(app.generate(openai).await.status(), 400, "gpt-image-1 takes at most 16");
    assert_eq!(app.upstream_calls(), calls, "nothing was sent upstream");
}

#[tokio::test]
async fn the_models_say_how_many_input_images_they_take() {
    let app = spawn_gemini_app().await;
    let models: Value =
        app.client.get(app.url("/v1/models")).bearer_auth(&app.key).send().await.unwrap().json().await.unwrap();
    let max = |id: &str| {
        models["data"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap()["max_input_images"].as_u64()
    };
    assert_eq!((max("nano-banana-pro"), max("nano-banana"), max("gpt-image-1")), (Some(14), Some(3), Some(16)));
}

fn files(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files(&p));
            } else {
                out.push(p.file_name().unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out
}

#[tokio::test]
async fn an_input_stored_for_a_submit_that_was_then_refused_is_swept_as_an_orphan() {
    let app = crate::support::spawn_with(
        |rt| {
            rt.sweep_interval = std::time::Duration::from_millis(200);
            rt.orphan_grace = std::time::Duration::from_secs(1);
        },
        true,
    )
    .await;
    let images = app.dir.path().join("images");
    let kept = format!("data:image/png;base64,{}", b64(&png(3, 3)));
    let body = json!({"model": "nano-banana-pro", "prompt": "kept", "reference_images": [kept]});
    assert_eq!(app.generate(body).await.status(), 200);
    // The key may make no more images today: the next submit is refused after its input was stored.
    let store = app.server.as_ref().unwrap().app.store.clone();
    let key = store.key_by_hash(&imagegate::api::auth::hash_key(&app.key)).await.unwrap().unwrap();
    let policy = imagegate::domain::policy::KeyPolicy { daily_images: Some(1), ..Default::default() };
    store.set_key_policy(&key.id, &policy).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // the key cache's second
    let refused = format!("data:image/png;base64,{}", b64(&png(5, 5)));
    let body = json!({"model": "nano-banana-pro", "prompt": "refused", "reference_images": [refused]});
    assert_eq!(app.generate(body).await.status(), 429);
    let inputs = |names: Vec<String>| names.into_iter().filter(|n| n.starts_with("inp_")).collect::<Vec<_>>();
    assert_eq!(inputs(files(&images)).len(), 2, "both inputs were stored");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while inputs(files(&images)).len() > 1 {
        assert!(std::time::Instant::now() < deadline, "the refused submit's input was never swept");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(inputs(files(&images)).len(), 1, "the input of the task that was made stays");
}
