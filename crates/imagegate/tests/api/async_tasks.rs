//! The async route, polling, SSE, cancel and fairness.

use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test]
async fn submit_returns_at_once_while_the_upstream_takes_5s_and_polling_sees_each_state() {
    let app = spawn_gemini_app().await;
    app.gemini().script.set_delay(Duration::from_secs(5));
    let started = Instant::now();
    let task = app.submit_async(&app.key, pro("slow but durable")).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2), "submit took {took:?}, not the upstream's 5 s");
    assert_eq!(task["status"], "queued");
    assert_eq!(task["mode"], "async");
    assert_eq!(task["object"], "image.task");
    assert!(task["queue_position"].as_i64().is_some());
    let id = task["id"].as_str().unwrap();

    let mut seen = vec!["queued".to_string()];
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let t = app.task(id).await;
        let status = t["status"].as_str().unwrap().to_string();
        if seen.last() != Some(&status) {
            seen.push(status.clone());
        }
        if status == "completed" {
            assert!(t["result"]["data"][0]["url"].as_str().is_some());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, vec!["queued", "running", "completed"]);
}

/// One worker, kept busy by a first task, so the second waits in the queue.
async fn one_worker_app() -> TestApp {
    spawn_with(|rt| rt.worker_concurrency = 1, false).await
}

#[tokio::test]
async fn sse_shows_each_transition_in_order_then_closes() {
    let app = one_worker_app().await;
    app.submit_async(&app.key, pro("blocker [sim:delay:700ms]")).await;
    let task = app.submit_async(&app.key, pro("watched [sim:delay:300ms]")).await;
    let id = task["id"].as_str().unwrap();
    let resp = app.client.get(app.url(&format!("/v1/tasks/{id}/events"))).bearer_auth(&app.key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    // The stream ends by itself after the terminal event: reading to the end must finish.
    let text = tokio::time::timeout(Duration::from_secs(15), resp.text()).await.expect("stream closed").unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(events, vec!["task.queued", "task.running", "task.completed"], "{text}");
    let last_data = text.lines().filter_map(|l| l.strip_prefix("data: ")).next_back().unwrap();
    let last: Value = serde_json::from_str(last_data).unwrap();
    assert_eq!(last["status"], "completed");
    assert_eq!(last["id"], json!(id));

    // After the end: the final state at once, then close.
    let late = app.client.get(app.url(&format!("/v1/tasks/{id}/events"))).bearer_auth(&app.key).send().await.unwrap();
    let text = tokio::time::timeout(Duration::from_secs(5), late.text()).await.expect("closes at once").unwrap();
    let events: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(events, vec!["task.completed"]);
}

#[tokio::test]
async fn cancel_while_queued_ends_the_task_at_once_and_never_runs_it() {
    let app = one_worker_app().await;
    let blocker = app.submit_async(&app.key, pro("blocker [sim:delay:800ms]")).await;
    let task = app.submit_async(&app.key, pro("never mind")).await;
    let id = task["id"].as_str().unwrap();
    let resp = app.cancel(&app.key, id).await;
    assert_eq!(resp.status(), 200);
    let t: Value = resp.json().await.unwrap();
    assert_eq!(t["status"], "cancelled");
    // Once the only worker is free again, the cancelled task is still not run.
    app.wait_task(blocker["id"].as_str().unwrap()).await;
    let after = app.submit_async(&app.key, pro("after")).await;
    app.wait_task(after["id"].as_str().unwrap()).await;
    let t = app.task(id).await;
    assert_eq!(t["status"], "cancelled");
    assert_eq!(t["attempts"], 0, "it never ran");
    assert_error(app.cancel(&app.key, id).await, StatusCode::CONFLICT, "task_already_finished").await;
    let other = app.new_key().await;
    assert_error(app.cancel(&other, id).await, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn cancel_while_running_aborts_the_upstream_call() {
    let app = spawn_gemini_app().await;
    app.gemini().script.set_delay(Duration::from_secs(5));
    let task = app.submit_async(&app.key, pro("abort me")).await;
    let id = task["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.task(id).await["status"] != "running" || app.gemini().script.call_count() == 0 {
        assert!(Instant::now() < deadline, "task never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let resp = app.cancel(&app.key, id).await;
    assert_eq!(resp.status(), 200);
    let t: Value = resp.json().await.unwrap();
    assert_eq!(t["status"], "cancelled", "{t}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "cancel answered in {:?}, before the upstream's 5 s",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(3);
    while app.gemini().script.dropped() == 0 {
        assert!(Instant::now() < deadline, "the fake never saw the connection drop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.gemini().script.completed(), 0, "the upstream call never finished");
}

#[tokio::test]
async fn one_keys_burst_does_not_starve_another_keys_single_task() {
    let app = spawn_with(|rt| rt.worker_concurrency = 2, false).await;
    let a = app.key.clone();
    let b = app.new_key().await;
    // 500 tasks from A, submitted 25 at a time.
    let body = json!({"model": "nano-banana", "prompt": "burst [sim:delay:300ms]", "aspect_ratio": "1:1"});
    for _ in 0..20 {
        let batch: Vec<_> = (0..25).map(|_| app.submit_async(&a, body.clone())).collect();
        futures_util::future::join_all(batch).await;
    }
    let b_task = app.submit_async(&b, json!({"model": "nano-banana", "prompt": "single"})).await;
    let b_id = b_task["id"].as_str().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let t: Value = app.get_task(&b, b_id).await.json().await.unwrap();
        if t["status"] == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "B's task never finished");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let done = app.list_tasks("?status=completed&limit=100").await;
    let a_done = done["data"].as_array().unwrap().len();
    assert!(a_done < 50, "B finished after A's {a_done}th task");
}

#[tokio::test]
async fn idempotency_keys_work_on_the_async_route() {
    let app = spawn_app().await;
    let post = || {
        app.client
            .post(app.url("/v1/images/generations/async"))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", "batch-7")
            .json(&pro("once"))
            .send()
    };
    let a: Value = post().await.unwrap().json().await.unwrap();
    let b = post().await.unwrap();
    assert_eq!(b.status(), StatusCode::ACCEPTED);
    let b: Value = b.json().await.unwrap();
    assert_eq!(a["id"], b["id"]);
    let all = app.list_tasks("").await;
    assert_eq!(all["data"].as_array().unwrap().len(), 1);
}
