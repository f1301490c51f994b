//! Deadline routing: async requests with `"service_tier": "flex"` and a `"deadline"` go through
//! an upstream batch job at half the price, or fall back to realtime in time for the deadline.

use crate::support::{TestApp, assert_error, spawn_with};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::Duration;

async fn app(tweak: impl FnOnce(&mut imagegate::config::Runtime)) -> TestApp {
    spawn_with(
        |rt| {
            rt.batch.poll_interval = Duration::from_millis(100);
            tweak(rt);
        },
        true,
    )
    .await
}

fn flex(prompt: &str, deadline: Value) -> Value {
    json!({"model": "nano-banana-pro", "prompt": prompt, "service_tier": "flex", "deadline": deadline})
}

#[tokio::test]
async fn flex_tasks_with_a_long_deadline_share_one_upstream_job_at_half_price() {
    let app = app(|rt| {
        rt.batch.flex_max_lines = 3;
        rt.batch.flex_max_wait = Duration::from_secs(600);
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let task = app.submit_async(&app.key, flex(&format!("poster {i}"), json!(3600))).await;
        assert_eq!(task["request"]["service_tier"], "flex");
        ids.push(task["id"].as_str().unwrap().to_string());
    }
    // A default-tier request beside them is served at once, in realtime.
    let now = app.submit_async(&app.key, json!({"model": "nano-banana-pro", "prompt": "right now"})).await;
    let now = app.wait_task(now["id"].as_str().unwrap()).await;
    assert_eq!(now["status"], "completed");
    assert!(now["result"].get("served_by").is_none());
    for id in &ids {
        let t = app.wait_task(id).await;
        assert_eq!(t["status"], "completed", "{t}");
        assert_eq!(t["result"]["served_by"], "batch");
        assert_eq!(t["cost_usd"], json!(0.067), "half of $0.134");
    }
    let fake = &app.gemini().batches;
    assert_eq!(fake.creations(), 1, "the three pooled into one job");
    assert_eq!(fake.job_keys()[0].len(), 3);
    assert_eq!(app.upstream_calls(), 1, "only the default-tier request called in realtime");
}

#[tokio::test]
async fn flex_tasks_fall_back_to_realtime_in_time_for_their_deadline() {
    let app = app(|rt| {
        rt.batch.flex_max_wait = Duration::from_millis(100);
        rt.batch.flex_realtime_margin = Duration::from_secs(2);
    })
    .await;
    app.gemini().batches.set_run_for(Duration::from_secs(120));
    let task = app.submit_async(&app.key, flex("soon", json!(4))).await;
    let id = task["id"].as_str().unwrap();
    let done = app.wait_task(id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"]["served_by"], "realtime");
    assert_eq!(done["cost_usd"], json!(0.134), "the realtime price");
    let (created, completed) = (done["created_at"].as_i64().unwrap(), done["completed_at"].as_i64().unwrap());
    assert!(completed <= created + 4, "met its deadline: {created} → {completed}");
    assert_eq!(app.gemini().batches.creations(), 1, "it was pooled into a job first");
    assert_eq!(app.upstream_calls(), 1, "then served by one realtime call");
}

#[tokio::test]
async fn flex_needs_the_async_route_and_a_deadline_within_a_day() {
    let app = app(|_| {}).await;
    let resp = app.generate(flex("sync", json!(60))).await;
    assert_error(resp, StatusCode::BAD_REQUEST, "invalid_value").await;
    for deadline in [json!(0), json!(172_800), json!("not a time"), json!("2001-01-01T00:00:00Z")] {
        let resp = app
            .client
            .post(app.url("/v1/images/generations/async"))
            .bearer_auth(&app.key)
            .json(&flex("bad", deadline.clone()))
            .send()
            .await
            .unwrap();
        let err = assert_error(resp, StatusCode::BAD_REQUEST, "invalid_value").await;
        assert_eq!(err["error"]["param"], "deadline", "{deadline}");
    }
    assert_eq!(app.gemini().batches.creations() + app.upstream_calls(), 0);
}
