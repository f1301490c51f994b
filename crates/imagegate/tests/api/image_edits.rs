//! `POST /v1/images/edits` as the openai SDK sends it (multipart `image[]`, `mask`) and in its
//! JSON form (`images: [{image_url} | {image_id}]`): the inputs are stored with the task and
//! reach Gemini as `inlineData` parts (the mask last, the prompt saying what it is); sync,
//! async and `Prefer: respond-async`; bad inputs refused naming the input, before any upstream
//! call. `https` references are fetched once through the SSRF guard.

use crate::support::{TestApp, assert_error, spawn_gemini_app, spawn_with};
use base64::Engine;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A small PNG made here (RGBA when `alpha`).
fn png(w: u32, h: u32, alpha: bool) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    if alpha {
        let img = image::RgbaImage::from_fn(w, h, |x, _| image::Rgba([0, 0, 0, if x < w / 2 { 0 } else { 255 }]));
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    } else {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 20) as u8, (y * 20) as u8, 99]));
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    }
    out.into_inner()
}

/// A PNG of noise: it does not compress, so its size is about 3 bytes a pixel.
fn noise_png(w: u32, h: u32) -> Vec<u8> {
    let mut state = 0x2545_f491_u32;
    let img = image::RgbImage::from_fn(w, h, |_, _| {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let [a, b, c, _] = state.to_be_bytes();
        image::Rgb([a, b, c])
    });
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

fn file(bytes: &[u8], name: &str) -> Part {
    Part::bytes(bytes.to_vec()).file_name(name.to_string()).mime_str("image/png").unwrap()
}

/// The multipart form the openai SDK sends for `images.edit(image=[…], prompt=…)`.
fn form(model: &str, prompt: &str, images: &[&[u8]]) -> Form {
    let mut f = Form::new().text("model", model.to_string()).text("prompt", prompt.to_string());
    for (i, img) in images.iter().enumerate() {
        f = f.part("image[]", file(img, &format!("photo-{i}.png")));
    }
    f
}

async fn edit(app: &TestApp, path: &str, form: Form, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app.client.post(app.url(path)).bearer_auth(&app.key).multipart(form);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

fn last_parts(app: &TestApp) -> Vec<Value> {
    let calls = app.gemini().script.calls();
    calls.last().expect("an upstream call").body["contents"][0]["parts"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_multipart_edit_sends_each_image_as_uploaded_and_answers_like_a_generation() {
    let app = spawn_gemini_app().await;
    let (a, b) = (png(8, 6, false), png(4, 4, false));
    let resp = edit(&app, "/v1/images/edits", form("nano-banana-pro", "put them together", &[&a, &b]), &[]).await;
    assert_eq!(resp.status(), 200);
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let body: Value = resp.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().expect("a url by default");
    assert_eq!(app.get(url).await.status(), 200);
    let parts = last_parts(&app);
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0]["text"], "put them together");
    assert_eq!(parts[1]["inlineData"], json!({"mimeType": "image/png", "data": b64(&a)}));
    assert_eq!(parts[2]["inlineData"], json!({"mimeType": "image/png", "data": b64(&b)}));

    let task = app.task(&task_id).await;
    let inputs = task["inputs"].as_array().expect("the task lists its inputs");
    assert_eq!(inputs.len(), 2);
    assert_eq!((inputs[0]["width"].as_u64(), inputs[0]["height"].as_u64()), (Some(8), Some(6)));
    assert_eq!(inputs[1]["bytes"], b.len());
    assert_eq!(task["request"]["reference_images"], json!([inputs[0]["id"], inputs[1]["id"]]));

    // b64_json on request, as OpenAI answers edits.
    let f = form("nano-banana-pro", "again", &[&a]).text("response_format", "b64_json").text("n", "2");
    let body: Value = edit(&app, "/v1/images/edits", f, &[]).await.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let image =
        base64::engine::general_purpose::STANDARD.decode(body["data"][1]["b64_json"].as_str().unwrap()).unwrap();
    assert!(image.starts_with(&[0xff, 0xd8]) || image.starts_with(b"\x89PNG"), "an image inline");
}

#[tokio::test]
async fn the_json_form_takes_image_ids_and_data_urls() {
    let app = spawn_gemini_app().await;
    let made: Value =
        app.generate(json!({"model": "nano-banana-pro", "prompt": "a lighthouse"})).await.json().await.unwrap();
    let id = made["data"][0]["id"].as_str().unwrap();
    let stored = app.get(made["data"][0]["url"].as_str().unwrap()).await.bytes().await.unwrap();
    let extra = png(5, 5, false);
    let body = json!({"model": "nano-banana-pro", "prompt": "add a boat",
        "images": [{"image_id": id}, {"image_url": format!("data:image/png;base64,{}", b64(&extra))}]});
    let resp = app.client.post(app.url("/v1/images/edits")).bearer_auth(&app.key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let parts = last_parts(&app);
    assert_eq!(parts[1]["inlineData"]["data"], b64(&stored), "the image made with the key, as stored");
    assert_eq!(parts[2]["inlineData"]["data"], b64(&extra));

    let bad = [
        (json!({"model": "nano-banana-pro", "prompt": "x"}), "missing_required_parameter", "images"),
        (json!({"model": "nano-banana-pro", "prompt": "x", "images": [{"file_id": "f"}]}), "invalid_type", "images[0]"),
        (
            json!({"model": "nano-banana-pro", "prompt": "x", "images": [{"image_id": "img_nope"}]}),
            "image_not_found",
            "images[0]",
        ),
        (
            json!({"model": "nano-banana-pro", "prompt": "x", "images": [{"image_url": "file:///etc/passwd"}]}),
            "invalid_image_reference",
            "images[0]",
        ),
    ];
    let calls = app.upstream_calls();
    for (body, code, param) in bad {
        let resp = app.client.post(app.url("/v1/images/edits")).bearer_auth(&app.key).json(&body).send().await.unwrap();
        let err: Value = resp.json().await.unwrap();
        assert_eq!((err["error"]["code"].as_str(), err["error"]["param"].as_str()), (Some(code), Some(param)), "{err}");
    }
    assert_eq!(app.upstream_calls(), calls);
}

#[tokio::test]
async fn a_mask_goes_last_and_the_prompt_says_what_it_is() {
    let app = spawn_gemini_app().await;
    let (photo, mask) = (png(8, 8, false), png(8, 8, true));
    let f = form("nano-banana-pro", "a pool in the garden", &[&photo]).part("mask", file(&mask, "mask.png"));
    let resp = edit(&app, "/v1/images/edits", f, &[]).await;
    assert_eq!(resp.status(), 200);
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let parts = last_parts(&app);
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0]["text"], format!("a pool in the garden{}", imagegate::providers::gemini::MASK_INSTRUCTION));
    assert_eq!(parts[1]["inlineData"]["data"], b64(&photo));
    assert_eq!(parts[2]["inlineData"]["data"], b64(&mask), "the mask, last");
    let task = app.task(&task_id).await;
    assert_eq!(task["inputs"].as_array().unwrap().len(), 2, "the mask is an input too");
    assert_eq!(task["request"]["mask"], task["inputs"][1]["id"]);

    let calls = app.upstream_calls();
    let wrong_size = form("nano-banana-pro", "x", &[&photo]).part("mask", file(&png(4, 4, true), "mask.png"));
    let err =
        assert_error(edit(&app, "/v1/images/edits", wrong_size, &[]).await, StatusCode::BAD_REQUEST, "invalid_image")
            .await;
    assert_eq!(err["error"]["param"], "mask");
    let jpeg = imagegate_fakes::images::picture(8, 8, 1, false);
    let not_png = form("nano-banana-pro", "x", &[&photo]).part("mask", Part::bytes(jpeg).file_name("m.jpg"));
    let err =
        assert_error(edit(&app, "/v1/images/edits", not_png, &[]).await, StatusCode::BAD_REQUEST, "invalid_image")
            .await;
    assert_eq!(err["error"]["param"], "mask");
    assert_eq!(app.upstream_calls(), calls);
}

#[tokio::test]
async fn async_edits_answer_202_with_their_inputs_and_the_webhook_lists_them() {
    let sink = imagegate_fakes::WebhookSink::start().await.unwrap();
    let app = spawn_gemini_app().await;
    let photo = png(6, 6, false);
    let f = form("nano-banana-pro", "in winter", &[&photo]).text("webhook_url", sink.url());
    let resp = edit(&app, "/v1/images/edits/async", f, &[]).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["inputs"][0]["bytes"], photo.len());
    let done = app.wait_task(task["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed");
    let delivery = async {
        loop {
            if let Some(d) = sink.deliveries().into_iter().next() {
                return d;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    let d = tokio::time::timeout(std::time::Duration::from_secs(10), delivery).await.expect("webhook delivered");
    let payload: Value = serde_json::from_str(&d.body).unwrap();
    assert_eq!(payload["data"]["inputs"], done["inputs"], "the webhook lists the inputs as GET does");

    // `Prefer: respond-async` on the sync route.
    let resp =
        edit(&app, "/v1/images/edits", form("nano-banana-pro", "at night", &[&photo]), &[("prefer", "respond-async")])
            .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
}

#[tokio::test]
async fn bad_edits_are_refused_naming_the_input_before_anything_is_sent() {
    let app = spawn_with(
        |rt| {
            rt.inputs.max_image_bytes = 4096;
            rt.inputs.max_total_bytes = 6000;
        },
        true,
    )
    .await;
    let small = png(4, 4, false);
    let big = noise_png(64, 64);
    assert!(big.len() > 4096);
    let medium = noise_png(28, 28);
    assert!(medium.len() * 3 > 6000 && medium.len() * 2 < 6000, "{}", medium.len());
    let fifteen: Vec<&[u8]> = vec![&small; 15];
    let cases: Vec<(Form, &str, &str)> = vec![
        (form("nano-banana-pro", "x", &[]), "missing_required_parameter", "image"),
        (form("nano-banana-pro", "x", &fifteen), "too_many_images", "image[14]"),
        (form("nano-banana", "x", &[&small, &small, &small, &small]), "too_many_images", "image[3]"),
        (form("nano-banana-pro", "x", &[&small, b"not an image"]), "invalid_image", "image[1]"),
        (form("nano-banana-pro", "x", &[&small, &big]), "invalid_image", "image[1]"),
        (form("nano-banana-pro", "x", &[&medium, &medium, &medium]), "invalid_image", "image[2]"),
        (form("nano-banana-pro", "x", &[&small]).text("n", "many"), "invalid_type", "n"),
        (form("nano-banana-pro", "x", &[&small]).text("quality", "ultra"), "invalid_value", "quality"),
        (
            form("nano-banana-pro", "x", &[&small]).text("webhook_url", "https://example.com/h"),
            "unknown_parameter",
            "webhook_url",
        ),
    ];
    for (f, code, param) in cases {
        let resp = edit(&app, "/v1/images/edits", f, &[]).await;
        assert_eq!(resp.status(), 400, "{code} {param}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!((err["error"]["code"].as_str(), err["error"]["param"].as_str()), (Some(code), Some(param)), "{err}");
    }
    // Text fields are bounded together, not only one by one.
    let mut many = form("nano-banana-pro", "x", &[&small]);
    for i in 0..5 {
        many = many.text(format!("pad{i}[]"), "x".repeat(250 * 1024));
    }
    let resp = edit(&app, "/v1/images/edits", many, &[]).await;
    assert_error(resp, StatusCode::PAYLOAD_TOO_LARGE, "request_too_large").await;
    let resp = app
        .client
        .post(app.url("/v1/images/edits"))
        .bearer_auth(&app.key)
        .body("x")
        .header("content-type", "text/plain")
        .send()
        .await
        .unwrap();
    assert_error(resp, StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type").await;
    let resp = app
        .client
        .post(app.url("/v1/images/edits"))
        .multipart(form("nano-banana-pro", "x", &[&small]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401, "a key is needed");
    assert_eq!(app.upstream_calls(), 0, "nothing was sent upstream");
}

#[tokio::test]
async fn an_edit_retried_with_its_idempotency_key_gets_its_task() {
    let app = spawn_gemini_app().await;
    let (a, b) = (png(8, 6, false), png(4, 4, false));
    let key = [("idempotency-key", "edit-1")];
    let first = edit(&app, "/v1/images/edits", form("nano-banana-pro", "x", &[&a]), &key).await;
    let again = edit(&app, "/v1/images/edits", form("nano-banana-pro", "x", &[&a]), &key).await;
    assert_eq!(first.headers()["imagegate-task-id"], again.headers()["imagegate-task-id"]);
    assert_eq!(app.upstream_calls(), 1);
    let other = edit(&app, "/v1/images/edits", form("nano-banana-pro", "x", &[&b]), &key).await;
    assert_error(other, StatusCode::CONFLICT, "idempotency_key_reused").await;
}

/// Serves `/cat.png`, `/page.html` and 404s, counting requests.
async fn image_host(cat: Vec<u8>) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use axum::routing::get;
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new()
        .route("/cat.png", get(move || async move { ([("content-type", "image/png")], cat) }))
        .route("/page.html", get(|| async { ([("content-type", "text/html")], "<html></html>") }))
        .layer(axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
            h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move { next.run(req).await }
        }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), hits)
}

#[tokio::test]
async fn https_references_are_fetched_once_and_checked_like_uploads() {
    let cat = png(7, 7, false);
    let (host, hits) = image_host(cat.clone()).await;
    // A gateway allowed to fetch from its private network (the test host is on 127.0.0.1).
    let app = spawn_with(|rt| rt.inputs.allow_private_urls = true, true).await;
    let resp = app
        .generate(
            json!({"model": "nano-banana-pro", "prompt": "x", "n": 2, "reference_images": [format!("{host}/cat.png")]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let parts = last_parts(&app);
    assert_eq!(parts[1]["inlineData"]["data"], b64(&cat));
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "fetched once for both images");
    for (path, code) in [("/missing.png", "invalid_image_url"), ("/page.html", "invalid_image")] {
        let resp = app
            .generate(json!({"model": "nano-banana-pro", "prompt": "x", "reference_images": [format!("{host}{path}")]}))
            .await;
        let err = assert_error(resp, StatusCode::BAD_REQUEST, code).await;
        assert_eq!(err["error"]["param"], "reference_images[0]");
    }
    // By default, a private address is refused without being connected to.
    let strict = spawn_gemini_app().await;
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    let resp = strict
        .generate(json!({"model": "nano-banana-pro", "prompt": "x", "reference_images": [format!("{host}/cat.png")]}))
        .await;
    let err = assert_error(resp, StatusCode::BAD_REQUEST, "invalid_image_url").await;
    assert_eq!(err["error"]["param"], "reference_images[0]");
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), before);
}
