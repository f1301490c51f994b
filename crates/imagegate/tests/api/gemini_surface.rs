//! The Gemini-native surface against a fake Gemini: `generateContent` in Gemini's exact shapes,
//! inputs stored as the task's, a conversation forwarded whole, blocked prompts and errors as
//! Gemini reports them, streaming, models, and the same task (and cost) as the OpenAI surface.

use crate::support::{TestApp, spawn_gemini_app};
use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 9) as u8, (y * 9) as u8, 42]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn call(app: &TestApp, path: &str, key: &str, body: Value) -> reqwest::Response {
    app.client.post(app.url(path)).header("x-goog-api-key", key).json(&body).send().await.unwrap()
}

fn upstream_body(app: &TestApp) -> Value {
    app.gemini().script.calls().last().expect("an upstream call").body.clone()
}

fn decoded(part: &Value) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD.decode(part["inlineData"]["data"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn generate_content_answers_in_geminis_shape_at_the_asked_size() {
    let app = spawn_gemini_app().await;
    let body = json!({
        "contents": [{"role": "user", "parts": [{"text": "a harbour at dawn"}]}],
        "generationConfig": {"responseModalities": ["TEXT", "IMAGE"], "imageConfig": {"aspectRatio": "16:9", "imageSize": "2K"}},
        "safetySettings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "threshold": "BLOCK_ONLY_HIGH"}],
    });
    let resp = call(&app, "/v1beta/models/gemini-3-pro-image-preview:generateContent", &app.key, body).await;
    assert_eq!(resp.status(), 200);
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let answer: Value = resp.json().await.unwrap();
    let candidate = &answer["candidates"][0];
    assert_eq!(candidate["finishReason"], "STOP");
    assert_eq!(candidate["content"]["role"], "model");
    let image_part = candidate["content"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.get("inlineData").is_some() && p.get("thought").is_none())
        .unwrap();
    assert_eq!(image_part["inlineData"]["mimeType"], "image/jpeg");
    let thoughts = candidate["content"]["parts"].as_array().unwrap().iter().filter(|p| p["thought"] == true).count();
    assert_eq!(thoughts, 2, "the upstream's two drafts, as thought parts before the image");
    let img = image::load_from_memory(&decoded(image_part)).unwrap();
    assert_eq!((img.width(), img.height()), (2752, 1536), "Gemini's 16:9 2K size");
    assert!(answer["usageMetadata"]["totalTokenCount"].as_u64().unwrap() > 0);
    let sent = upstream_body(&app);
    assert_eq!(sent["generationConfig"]["imageConfig"], json!({"aspectRatio": "16:9", "imageSize": "2K"}));
    assert_eq!(sent["safetySettings"][0]["threshold"], "BLOCK_ONLY_HIGH", "safety settings passed on");

    // The same request through the OpenAI surface costs the same; both are in the task list.
    let openai: Value = app
        .generate(json!({"model": "gemini-3-pro-image-preview", "prompt": "a harbour at dawn", "aspect_ratio": "16:9", "image_size": "2K"}))
        .await
        .json()
        .await
        .unwrap();
    let list = app.list_tasks("?limit=5").await;
    let tasks = list["data"].as_array().unwrap();
    assert_eq!(tasks.len(), 2);
    assert!(tasks.iter().any(|t| t["id"] == task_id.as_str()));
    assert_eq!(tasks[0]["cost_usd"], tasks[1]["cost_usd"]);
    assert!(openai["data"][0]["url"].is_string());
    let task = app.task(&task_id).await;
    assert_eq!(task["request"]["surface"], "gemini");
}

#[tokio::test]
async fn inline_images_are_stored_inputs_and_reach_the_upstream_in_the_order_given() {
    let app = spawn_gemini_app().await;
    let (a, b) = (png(6, 4), png(3, 3));
    let body = json!({"contents": [{"parts": [
        {"inlineData": {"mimeType": "image/png", "data": b64(&a)}},
        {"text": "combine the two"},
        {"inline_data": {"mime_type": "image/png", "data": b64(&b)}},
    ]}]});
    let resp = call(&app, "/v1/models/nano-banana-pro:generateContent", &app.key, body).await;
    assert_eq!(resp.status(), 200);
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    let parts = upstream_body(&app)["contents"][0]["parts"].clone();
    assert_eq!(decoded(&parts[0]), a);
    assert_eq!(parts[1]["text"], "combine the two");
    assert_eq!(decoded(&parts[2]), b);
    let task = app.task(&task_id).await;
    assert_eq!(task["inputs"].as_array().unwrap().len(), 2);
    assert_eq!(task["request"]["prompt"], "combine the two");
}

#[tokio::test]
async fn a_chat_sends_earlier_turns_back_with_the_models_own_image() {
    let app = spawn_gemini_app().await;
    let first_body = json!({"contents": [{"role": "user", "parts": [{"text": "a red bicycle"}]}]});
    let first: Value = call(&app, "/v1beta/models/nano-banana-pro:generateContent", &app.key, first_body.clone())
        .await
        .json()
        .await
        .unwrap();
    let model_parts = first["candidates"][0]["content"]["parts"].clone();
    let made = decoded(
        model_parts
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p.get("inlineData").is_some() && p.get("thought").is_none())
            .unwrap(),
    );
    let second = json!({"contents": [
        first_body["contents"][0],
        {"role": "model", "parts": model_parts},
        {"role": "user", "parts": [{"text": "make it blue"}]},
    ]});
    let resp = call(&app, "/v1beta/models/nano-banana-pro:generateContent", &app.key, second).await;
    assert_eq!(resp.status(), 200);
    let sent = upstream_body(&app);
    let contents = sent["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 3);
    assert_eq!(contents[1]["role"], "model");
    let image = contents[1]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p.get("inlineData").is_some() && p.get("thought").is_none())
        .unwrap();
    assert_eq!(decoded(image), made, "the model's own image, as it was answered");
    assert_eq!(image["thoughtSignature"], "c2lnbmF0dXJl", "with the upstream's signature, handed back");
    assert_eq!(contents[2]["parts"][0]["text"], "make it blue");
}

#[tokio::test]
async fn refusals_and_errors_arrive_as_gemini_reports_them() {
    let app = spawn_gemini_app().await;
    let path = "/v1beta/models/nano-banana-pro:generateContent";
    let blocked = json!({"contents": [{"parts": [{"text": "something [fake:block]"}]}]});
    let resp = call(&app, path, &app.key, blocked).await;
    assert_eq!(resp.status(), 200, "a blocked prompt is an answer, as Gemini gives it");
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["promptFeedback"]["blockReason"], "PROHIBITED_CONTENT");
    assert!(answer.get("candidates").is_none());

    let cases = [
        (
            "/v1beta/models/nano-banana-pro:generateContent",
            json!({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"imageConfig": {"aspectRatio": "5:1"}}}),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "/v1beta/models/no-such-model:generateContent",
            json!({"contents": [{"parts": [{"text": "x"}]}]}),
            404,
            "NOT_FOUND",
        ),
        (
            "/v1beta/models/nano-banana-pro:countTokens",
            json!({"contents": [{"parts": [{"text": "x"}]}]}),
            404,
            "NOT_FOUND",
        ),
        (
            "/v1beta/models/nano-banana-pro:generateContent",
            json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "bm90IGFuIGltYWdl"}}, {"text": "x"}]}]}),
            400,
            "INVALID_ARGUMENT",
        ),
    ];
    for (path, body, code, status) in cases {
        let resp = call(&app, path, &app.key, body.clone()).await;
        assert_eq!(resp.status().as_u16(), code, "{path} {body}");
        let err: Value = resp.json().await.unwrap();
        assert_eq!(
            (err["error"]["code"].as_u64(), err["error"]["status"].as_str()),
            (Some(code as u64), Some(status)),
            "{err}"
        );
    }

    let (id, key) = app.admin_key("soon revoked").await;
    let body = json!({"contents": [{"parts": [{"text": "x"}]}]});
    assert_eq!(call(&app, path, &key, body.clone()).await.status(), 200);
    assert_eq!(app.admin(Method::DELETE, &format!("/admin/v1/keys/{id}"), None).await.status(), 200);
    let resp = call(&app, path, &key, body.clone()).await;
    assert_eq!(resp.status(), 401);
    let err: Value = resp.json().await.unwrap();
    assert_eq!(err["error"]["status"], "UNAUTHENTICATED");
    let resp = app.client.post(app.url(path)).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 401, "no key");
    let resp = app.client.post(app.url(&format!("{path}?key={}", app.key))).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200, "?key= as Gemini clients may send it");
}

#[tokio::test]
async fn streaming_urls_and_models() {
    let app = spawn_gemini_app().await;
    let body = json!({"contents": [{"parts": [{"text": "a lantern"}]}]});
    let resp = app
        .client
        .post(app.url("/v1beta/models/nano-banana-pro:streamGenerateContent?alt=sse"))
        .header("x-goog-api-key", &app.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    let events: Vec<Value> =
        text.lines().filter_map(|l| l.strip_prefix("data: ")).map(|d| serde_json::from_str(d).unwrap()).collect();
    // The two drafts as they were made (thought parts), then the answer.
    assert_eq!(events.len(), 3, "{text:.400}");
    for (draft, side) in events[..2].iter().zip([128, 256]) {
        let part = &draft["candidates"][0]["content"]["parts"][0];
        assert_eq!(part["thought"], true);
        assert_eq!(image::load_from_memory(&decoded(part)).unwrap().width(), side);
    }
    assert_eq!(events[2]["candidates"][0]["finishReason"], "STOP");
    let last_parts = events[2]["candidates"][0]["content"]["parts"].as_array().unwrap();
    assert!(last_parts.iter().all(|p| p.get("thought").is_none()), "the answer has no drafts in it");

    // Without alt=sse: the same chunks as one JSON array.
    let resp = app
        .client
        .post(app.url("/v1beta/models/nano-banana-pro:streamGenerateContent"))
        .header("x-goog-api-key", &app.key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let chunks: Vec<Value> = resp.json().await.unwrap();
    assert_eq!(chunks.len(), 3);

    // URLs instead of megabytes of base64, on request.
    let resp = app
        .client
        .post(app.url("/v1beta/models/nano-banana-pro:generateContent"))
        .header("x-goog-api-key", &app.key)
        .header("imagegate-response-format", "url")
        .json(&body)
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    let parts = answer["candidates"][0]["content"]["parts"].as_array().unwrap();
    let file = parts.iter().find(|p| p.get("fileData").is_some()).expect("a fileData part");
    let served = app.get(file["fileData"]["fileUri"].as_str().unwrap()).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], file["fileData"]["mimeType"].as_str().unwrap());

    let models: Value = app
        .client
        .get(app.url("/v1beta/models"))
        .header("x-goog-api-key", &app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = models["models"].as_array().unwrap().iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"models/gemini-3-pro-image-preview") && names.contains(&"models/nano-banana-pro"));
    let one =
        app.client.get(app.url("/v1beta/models/nano-banana")).header("x-goog-api-key", &app.key).send().await.unwrap();
    assert_eq!(one.status(), 200);
    let missing =
        app.client.get(app.url("/v1beta/models/nope")).header("x-goog-api-key", &app.key).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    // The OpenAI surface's model route is still there beside the Gemini POST on /v1/models/{id}.
    let openai = app.client.get(app.url("/v1/models/nano-banana")).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(openai.status(), 200);
}
