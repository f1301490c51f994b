//! Live previews: Gemini 3 Pro Image's drafts (thought images, streamed by the upstream before
//! the final image) are stored and shown as they arrive: `task.partial_image` events on the
//! task's SSE stream, and OpenAI's `stream: true` + `partial_images` on generations. Previews
//! are never results: the task's result holds the final image only, and costs the same.

use crate::support::{TestApp, spawn_gemini_app};
use base64::Engine;
use serde_json::{Value, json};
use std::time::Duration;

fn decode(b64: &str) -> image::DynamicImage {
    image::load_from_memory(&base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
}

/// `(event, data)` pairs of an SSE body.
fn events(text: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut event = String::new();
    for line in text.lines() {
        if let Some(e) = line.strip_prefix("event: ") {
            event = e.to_string();
        } else if let Some(d) = line.strip_prefix("data: ") {
            out.push((event.clone(), serde_json::from_str(d).unwrap_or(Value::Null)));
        }
    }
    out
}

async fn slow_app() -> TestApp {
    let app = spawn_gemini_app().await;
    // Time for the watcher to connect before the first draft arrives.
    app.gemini().script.set_delay(Duration::from_millis(400));
    app
}

#[tokio::test]
async fn the_tasks_sse_shows_two_drafts_before_it_completes() {
    let app = slow_app().await;
    let task = app
        .submit_async(&app.key, json!({"model": "nano-banana-pro", "prompt": "a fox in snow", "size": "1024x1024"}))
        .await;
    let id = task["id"].as_str().unwrap();
    let resp = app.client.get(app.url(&format!("/v1/tasks/{id}/events"))).bearer_auth(&app.key).send().await.unwrap();
    let text = tokio::time::timeout(Duration::from_secs(20), resp.text()).await.expect("the stream ends").unwrap();
    let evs = events(&text);
    let names: Vec<&str> = evs.iter().map(|(e, _)| e.as_str()).collect();
    let completed = names.iter().position(|e| *e == "task.completed").expect("completed");
    let partials: Vec<&Value> = evs.iter().filter(|(e, _)| e == "task.partial_image").map(|(_, d)| d).collect();
    assert_eq!(partials.len(), 2, "{names:?}");
    assert!(names.iter().rposition(|e| *e == "task.partial_image").unwrap() < completed, "{names:?}");
    assert_eq!(
        (partials[0]["partial_image_index"].as_u64(), partials[1]["partial_image_index"].as_u64()),
        (Some(0), Some(1))
    );
    // Each preview is served at its URL: the fake's drafts are 1/8 and 1/4 of the final size.
    for (p, side) in partials.iter().zip([128, 256]) {
        let served = app.get(p["url"].as_str().unwrap()).await;
        assert_eq!(served.status(), 200);
        let img = image::load_from_memory(&served.bytes().await.unwrap()).unwrap();
        assert_eq!(img.width(), side);
    }
    // Previews are not results.
    let done = app.task(id).await;
    assert_eq!(done["result"]["data"].as_array().unwrap().len(), 1);
    assert_eq!(done["result"]["data"][0]["width"], 1024);
}

#[tokio::test]
async fn openai_streaming_yields_partial_images_then_the_final_one() {
    let app = slow_app().await;
    let body = json!({"model": "nano-banana-pro", "prompt": "a lighthouse", "stream": true, "partial_images": 2});
    let resp =
        app.client.post(app.url("/v1/images/generations")).bearer_auth(&app.key).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let text = tokio::time::timeout(Duration::from_secs(20), resp.text()).await.expect("the stream ends").unwrap();
    let evs = events(&text);
    let types: Vec<&str> = evs.iter().map(|(_, d)| d["type"].as_str().unwrap_or("?")).collect();
    assert_eq!(
        types,
        vec!["image_generation.partial_image", "image_generation.partial_image", "image_generation.completed"],
        "{text:.300}"
    );
    assert_eq!(decode(evs[0].1["b64_json"].as_str().unwrap()).width(), 128);
    assert_eq!(decode(evs[1].1["b64_json"].as_str().unwrap()).width(), 256);
    assert_eq!(evs[1].1["partial_image_index"], 1);
    let last = &evs[2].1;
    assert_eq!(decode(last["b64_json"].as_str().unwrap()).width(), 1024);
    assert!(last["usage"]["total_tokens"].as_u64().unwrap() > 0);

    // One partial image when one is asked for; none by default.
    for (partial, expected) in [(Some(1), 1), (None, 0)] {
        let mut body = json!({"model": "nano-banana-pro", "prompt": "again", "stream": true});
        if let Some(p) = partial {
            body["partial_images"] = json!(p);
        }
        let text = app
            .client
            .post(app.url("/v1/images/generations"))
            .bearer_auth(&app.key)
            .json(&body)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let evs = events(&text);
        assert_eq!(evs.iter().filter(|(e, _)| e == "image_generation.partial_image").count(), expected);
        assert_eq!(evs.last().unwrap().0, "image_generation.completed");
    }

    // A refusal ends the stream with an error event.
    let body = json!({"model": "nano-banana-pro", "prompt": "x [fake:block]", "stream": true});
    let text = app
        .client
        .post(app.url("/v1/images/generations"))
        .bearer_auth(&app.key)
        .json(&body)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let evs = events(&text);
    assert_eq!(evs.last().unwrap().0, "error");
    assert_eq!(evs.last().unwrap().1["error"]["code"], "content_policy_violation");
}
