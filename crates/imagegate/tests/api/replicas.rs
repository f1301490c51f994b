//! Several gateways sharing one PostgreSQL database (and one image folder): work submitted to
//! one replica is run by another, and each hears of the other's changes at once (LISTEN/NOTIFY),
//! not at its next periodic re-read.

use crate::support::pg::Schema;
use crate::support::{TestApp, spawn_with};
use imagegate_fakes::{FakeGemini, WebhookSink};
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A replica on `schema`, its images in `images` (shared by the replicas of a test).
async fn replica(schema: &Schema, images: &std::path::Path, workers: usize, latency: Duration) -> TestApp {
    let url = schema.url.clone();
    let images = format!("file://{}", images.display());
    spawn_with(
        move |rt| {
            rt.database_url = url;
            rt.storage_url = images;
            rt.worker_concurrency = workers;
            rt.simulated_latency = latency;
        },
        false,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_request_on_an_api_only_replica_is_answered_as_soon_as_another_replica_finishes_it() {
    let schema = Schema::new().await;
    let images = tempfile::tempdir().unwrap();
    let api_only = replica(&schema, images.path(), 0, Duration::ZERO).await;
    let worker = replica(&schema, images.path(), 8, Duration::from_millis(200)).await;
    let started = Instant::now();
    let resp = api_only.generate(json!({"prompt": "a lighthouse", "model": "nano-banana-pro"})).await;
    let took = started.elapsed();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    let url = body["data"][0]["url"].as_str().expect("an image URL");
    // Without the wake-ups, the worker replica finds the task at its next idle poll (1 s) and
    // the waiting replica re-reads it every 2 s.
    assert!(took < Duration::from_millis(1500), "answered {took:?} after the submit");
    let image = api_only.client.get(url).send().await.unwrap();
    assert_eq!(image.status(), 200, "the image the other replica stored is served here");
    assert!(worker.server.as_ref().unwrap().app.workers.in_flight() == 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_sent_to_one_replica_stops_the_task_running_on_another() {
    let schema = Schema::new().await;
    let images = tempfile::tempdir().unwrap();
    let api_only = replica(&schema, images.path(), 0, Duration::ZERO).await;
    let worker = replica(&schema, images.path(), 8, Duration::from_secs(60)).await;
    let task = api_only.submit_async(&api_only.key, json!({"prompt": "slow", "model": "nano-banana-pro"})).await;
    let id = task["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(5);
    while api_only.task(&id).await["status"] != "running" {
        assert!(Instant::now() < deadline, "the other replica never started the task");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let resp = api_only.cancel(&api_only.key, &id).await;
    assert_eq!(resp.status(), 200);
    let t: serde_json::Value = resp.json().await.unwrap();
    // The cancel waits for the task to end: the worker's next heartbeat (every 10 s with the
    // 30 s lease) would have taken far longer than the wake-up.
    assert_eq!(t["status"], "cancelled", "the answer shows the task ended");
    assert!(asked.elapsed() < Duration::from_secs(3), "cancelled {:?} after the request", asked.elapsed());
    assert_eq!(worker.server.as_ref().unwrap().app.workers.in_flight(), 0, "the worker let go of it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_queue_and_the_outbox_and_deliver_each_webhook_once() {
    let schema = Schema::new().await;
    let images = tempfile::tempdir().unwrap();
    let a = replica(&schema, images.path(), 4, Duration::from_millis(20)).await;
    let mut b = replica(&schema, images.path(), 4, Duration::from_millis(20)).await;
    b.key = a.key.clone();
    let sink = WebhookSink::start().await.unwrap();
    let mut ids = Vec::new();
    for i in 0..40 {
        let to = if i % 2 == 0 { &a } else { &b };
        let body = json!({"prompt": format!("p{i}"), "model": "nano-banana-pro", "webhook_url": sink.url(),
                          "webhook_events": ["completed"]});
        ids.push(to.submit_async(&a.key, body).await["id"].as_str().unwrap().to_string());
    }
    let got = sink.wait_for(40, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = if sink.deliveries().len() > got.len() { sink.deliveries() } else { got };
    let mut per_message: HashMap<String, usize> = HashMap::new();
    for d in &got {
        *per_message.entry(d.webhook_id.clone()).or_default() += 1;
    }
    assert_eq!(per_message.len(), 40, "one message per task");
    assert!(per_message.values().all(|n| *n == 1), "each delivered once: {per_message:?}");
    for id in &ids {
        assert_eq!(b.task(id).await["status"], "completed", "{id} as the other replica reads it");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_limited_to_10_requests_a_minute_gets_10_through_across_three_replicas() {
    let schema = Schema::new().await;
    let images = tempfile::tempdir().unwrap();
    let a = replica(&schema, images.path(), 8, Duration::ZERO).await;
    let b = replica(&schema, images.path(), 8, Duration::ZERO).await;
    let c = replica(&schema, images.path(), 8, Duration::ZERO).await;
    let key_id = a
        .server
        .as_ref()
        .unwrap()
        .app
        .store
        .key_by_hash(&imagegate::api::auth::hash_key(&a.key))
        .await
        .unwrap()
        .unwrap()
        .id;
    let store = a.server.as_ref().unwrap().app.store.clone();
    let policy = imagegate::domain::policy::KeyPolicy { rpm: Some(10), ..Default::default() };
    store.set_key_policy(&key_id, &policy).await.unwrap();
    let (mut through, mut refused) = (0, 0);
    for i in 0..30 {
        let to = [&a, &b, &c][i % 3];
        let resp = to.generate_with(&a.key, json!({"prompt": format!("p{i}"), "model": "nano-banana-pro"}), &[]).await;
        match resp.status().as_u16() {
            200 => through += 1,
            429 => {
                refused += 1;
                assert!(resp.headers().get("retry-after").is_some(), "a refusal says when to come back");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!((through, refused), (10, 20), "the key's rate holds for the cluster, not per replica");
}

/// A replica in front of `fake`, whose one channel allows `max_concurrency` calls and `rpm`.
async fn gemini_replica(schema: &Schema, images: &std::path::Path, fake: &FakeGemini, max: usize, rpm: u32) -> TestApp {
    let (url, base) = (schema.url.clone(), fake.base_url());
    let images = format!("file://{}", images.display());
    spawn_with(
        move |rt| {
            rt.database_url = url;
            rt.storage_url = images;
            rt.gemini_keys = vec![imagegate::config::Secret::new("test-gemini-key")];
            rt.gemini_base_url = base;
            rt.gemini_max_concurrency = max;
            rt.gemini_rpm = rpm;
        },
        false,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_allowed_2_calls_at_once_never_gets_more_from_three_replicas() {
    let schema = Schema::new().await;
    let images = tempfile::tempdir().unwrap();
    let fake = FakeGemini::start().await.unwrap();
    fake.script.set_delay(Duration::from_millis(300));
    let a = gemini_replica(&schema, images.path(), &fake, 2, 0).await;
    let b = gemini_replica(&schema, images.path(), &fake, 2, 0).await;
    let c = gemini_replica(&schema, images.path(), &fake, 2, 0).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        let to = [&a, &b, &c][i % 3];
        ids.push(
            to.submit_async(&a.key, json!({"prompt": format!("p{i}"), "model": "nano-banana-pro"})).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for id in &ids {
        assert_eq!(a.wait_task(id).await["status"], "completed", "{id}");
    }
    assert_eq!(fake.script.call_count(), 12);
    assert_eq!(fake.script.max_in_flight(), 2, "two calls at a time across the cluster (each replica alone allows 2)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_allowed_6_calls_a_minute_gets_6_from_three_replicas() {
    let schema = Schema::new().await;
    let images = tempfile::tempdir().unwrap();
    let fake = FakeGemini::start().await.unwrap();
    let a = gemini_replica(&schema, images.path(), &fake, 0, 6).await;
    let b = gemini_replica(&schema, images.path(), &fake, 0, 6).await;
    let c = gemini_replica(&schema, images.path(), &fake, 0, 6).await;
    for i in 0..12 {
        let to = [&a, &b, &c][i % 3];
        to.submit_async(&a.key, json!({"prompt": format!("p{i}"), "model": "nano-banana-pro"})).await;
    }
    // A burst of 6, then one every 10 s: in 4 s, 6 calls (18 if each replica counted alone).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(fake.script.call_count(), 6, "the channel's rate holds for the cluster");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_on_one_replica_sees_every_transition_another_replica_makes() {
    let schema = Schema::new().await;
    let images = tempfile::tempdir().unwrap();
    let api_only = replica(&schema, images.path(), 0, Duration::ZERO).await;
    let task = api_only.submit_async(&api_only.key, json!({"prompt": "streamed", "model": "nano-banana-pro"})).await;
    let id = task["id"].as_str().unwrap().to_string();
    let url = api_only.url(&format!("/v1/tasks/{id}/events"));
    let stream = tokio::spawn({
        let (client, key) = (api_only.client.clone(), api_only.key.clone());
        async move {
            let started = Instant::now();
            let text = client.get(url).bearer_auth(key).send().await.unwrap().text().await.unwrap();
            (text, started.elapsed())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Only now does a replica with workers come: the stream is open on the one without.
    let worker = replica(&schema, images.path(), 4, Duration::from_millis(400)).await;
    let (text, took) = stream.await.unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(events, vec!["task.queued", "task.running", "task.completed"], "{text}");
    // Re-reads every 2 s would have taken longer than the wake-ups.
    assert!(took < Duration::from_millis(1800), "the stream ended {took:?} after it began");
    drop(worker);
}
