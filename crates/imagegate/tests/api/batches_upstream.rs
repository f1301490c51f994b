//! Batches sent to Gemini's Batch API (against the fake): the lines go up as one JSONL file,
//! one job is created, polled, its results mapped back to the lines by key, each image stored
//! and charged at the batch price.

use crate::batches::{by_id, create_batch, file_lines, get_batch, line, upload, wait_batch};
use crate::support::{TestApp, spawn_with};
use imagegate_fakes::gemini_batch::Outcome;
use serde_json::{Value, json};
use std::time::Duration;

async fn app_with(max_job_lines: u32) -> TestApp {
    spawn_with(
        |rt| {
            rt.batch.poll_interval = Duration::from_millis(100);
            rt.batch.max_job_lines = max_job_lines;
        },
        true,
    )
    .await
}

fn pro(prompt: &str) -> Value {
    json!({"model": "nano-banana-pro", "prompt": prompt, "aspect_ratio": "16:9", "image_size": "2K"})
}

#[tokio::test]
async fn lines_go_to_one_upstream_job_and_come_back_at_half_price() {
    let app = app_with(500).await;
    let file = upload(
        &app,
        &app.key,
        &[
            line("harbour", pro("a harbour at dawn")),
            line("owl", json!({"model": "nano-banana", "prompt": "an owl", "n": 2})),
            line("blocked", pro("something [fake:block]")),
        ],
    )
    .await;
    let batch = create_batch(&app, &file, None).await;
    let done = wait_batch(&app, batch["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"], json!({"total": 3, "completed": 2, "failed": 1}));

    let fake = &app.gemini().batches;
    assert_eq!(fake.creations(), 2, "one upstream job per model (Gemini batches are per model)");
    assert_eq!(app.upstream_calls(), 0, "no realtime call was made");
    let mut sizes: Vec<usize> = fake.job_keys().iter().map(Vec::len).collect();
    sizes.sort();
    assert_eq!(sizes, [2, 2], "one request per image: two Pro lines, two Flash images");
    let requests = fake.job_requests().into_iter().flatten().collect::<Vec<_>>();
    let harbour = requests.iter().find(|r| r["contents"][0]["parts"][0]["text"] == "a harbour at dawn").unwrap();
    assert_eq!(harbour["generationConfig"]["imageConfig"], json!({"aspectRatio": "16:9", "imageSize": "2K"}));

    let output = file_lines(&app, done["output_file_id"].as_str().unwrap()).await;
    let harbour = by_id(&output, "harbour");
    let url = harbour["response"]["body"]["data"][0]["url"].as_str().unwrap();
    let img = image::load_from_memory(&app.get(url).await.bytes().await.unwrap()).unwrap();
    assert_eq!((img.width(), img.height()), (2752, 1536), "Nano Banana Pro's 16:9 at 2K");
    assert_eq!(by_id(&output, "owl")["response"]["body"]["data"].as_array().unwrap().len(), 2);

    let task = app.task(harbour["response"]["request_id"].as_str().unwrap()).await;
    assert_eq!(task["result"]["served_by"], "batch");
    assert_eq!(task["cost_usd"], json!(0.067), "half of $0.134");
    let owl = app.task(by_id(&output, "owl")["response"]["request_id"].as_str().unwrap()).await;
    assert_eq!(owl["cost_usd"], json!(0.039), "two Flash images at half of $0.039");
    assert_eq!(done["cost_usd"], json!(0.106));

    let errors = file_lines(&app, done["error_file_id"].as_str().unwrap()).await;
    let blocked = by_id(&errors, "blocked");
    assert_eq!(blocked["response"]["status_code"], 400, "{blocked}");
    let failed = app.task(blocked["response"]["request_id"].as_str().unwrap()).await;
    assert_eq!((failed["status"].as_str(), failed["cost_usd"].as_f64()), (Some("failed"), Some(0.0)), "refunded");
}

#[tokio::test]
async fn a_large_batch_is_split_into_several_upstream_jobs() {
    let app = app_with(2).await;
    app.gemini().batches.use_job_state_names(true);
    let lines: Vec<String> =
        (0..5).map(|i| line(&format!("l{i}"), json!({"model": "nano-banana", "prompt": format!("p{i}")}))).collect();
    let file = upload(&app, &app.key, &lines).await;
    let done = wait_batch(&app, create_batch(&app, &file, None).await["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"]["completed"], 5);
    let keys = app.gemini().batches.job_keys();
    assert_eq!(keys.iter().map(Vec::len).collect::<Vec<_>>(), [2, 2, 1], "jobs of at most 2 lines");
}

#[tokio::test]
async fn a_failed_or_expired_upstream_job_fails_its_lines_and_refunds_them() {
    for (outcome, code) in [(Outcome::Failed, "upstream_batch_failed"), (Outcome::Expired, "upstream_batch_expired")] {
        let app = app_with(500).await;
        app.gemini().batches.set_outcome(outcome);
        let file = upload(&app, &app.key, &[line("a", pro("a")), line("b", pro("b"))]).await;
        let done = wait_batch(&app, create_batch(&app, &file, None).await["id"].as_str().unwrap()).await;
        assert_eq!(done["status"], "completed", "{done}");
        assert_eq!(done["request_counts"], json!({"total": 2, "completed": 0, "failed": 2}));
        assert_eq!(done["cost_usd"], json!(0.0));
        let errors = file_lines(&app, done["error_file_id"].as_str().unwrap()).await;
        assert!(errors.iter().all(|e| e["error"]["code"] == code), "{errors:?}");
    }
}

#[tokio::test]
async fn cancelling_the_batch_cancels_the_upstream_job() {
    let app = app_with(500).await;
    app.gemini().batches.set_run_for(Duration::from_secs(60));
    let file = upload(&app, &app.key, &[line("a", pro("a")), line("b", pro("b"))]).await;
    let id = create_batch(&app, &file, None).await["id"].as_str().unwrap().to_string();
    // Wait until the job is created and being polled upstream.
    for _ in 0..200 {
        if app.gemini().batches.polls() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.gemini().batches.creations(), 1);
    let running: Value = get_batch(&app, &app.key, &id).await.json().await.unwrap();
    assert_eq!(running["status"], "in_progress");
    let resp =
        app.client.post(app.url(&format!("/v1/batches/{id}/cancel"))).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let done = wait_batch(&app, &id).await;
    assert_eq!(done["status"], "cancelled", "{done}");
    assert_eq!(app.gemini().batches.cancels(), 1, "the cancel reached the upstream job");
    let errors = file_lines(&app, done["error_file_id"].as_str().unwrap()).await;
    assert_eq!(errors.len(), 2);
    assert!(errors.iter().all(|e| e["error"]["code"] == "batch_cancelled"), "{errors:?}");
}

#[tokio::test]
async fn a_job_whose_channel_refuses_the_upload_moves_to_another_channel() {
    let app = spawn_with(
        |rt| {
            rt.batch.poll_interval = Duration::from_millis(100);
            rt.gemini_keys =
                vec![imagegate::config::Secret::new("revoked-key"), imagegate::config::Secret::new("good-key")];
        },
        true,
    )
    .await;
    app.gemini().invalidate_key("revoked-key");
    let file = upload(&app, &app.key, &[line("a", pro("a")), line("b", pro("b"))]).await;
    let done = wait_batch(&app, create_batch(&app, &file, None).await["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"]["completed"], 2, "{done}");
    assert_eq!(app.gemini().batches.creations(), 1);
    assert_eq!(done["cost_usd"], json!(0.134), "two Pro images at half price");
}

#[tokio::test]
async fn a_job_input_past_its_size_limit_leaves_the_rest_to_the_next_job() {
    let app = spawn_with(
        |rt| {
            rt.batch.poll_interval = Duration::from_millis(100);
            rt.batch.max_job_bytes = 1;
        },
        true,
    )
    .await;
    let lines: Vec<String> =
        (0..3).map(|i| line(&format!("l{i}"), json!({"model": "nano-banana", "prompt": format!("p{i}")}))).collect();
    let file = upload(&app, &app.key, &lines).await;
    let done = wait_batch(&app, create_batch(&app, &file, None).await["id"].as_str().unwrap()).await;
    assert_eq!(done["request_counts"]["completed"], 3, "{done}");
    let keys = app.gemini().batches.job_keys();
    assert_eq!(keys.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1], "one line a job at a 1-byte limit");
}
