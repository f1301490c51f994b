//! kill -9 soak: async tasks with webhooks against an upstream taking 1–5 s, the gateway killed
//! at random moments and restarted on the same data. Nothing may be lost or charged twice.

use imagegate_fakes::{FakeGemini, WebhookSink};
use rand::Rng;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::proc::{Proc, free_port, get_json, new_key};

const PRICE: f64 = 0.134;

#[tokio::test]
async fn tasks_survive_repeated_kill_9_without_loss_or_double_charge() {
    let full = crate::full();
    let (tasks, kills) = if full { (1000, 5) } else { (100, 2) };
    let (min_latency, max_latency) = if full {
        (Duration::from_secs(1), Duration::from_secs(5))
    } else {
        (Duration::from_millis(200), Duration::from_secs(1))
    };
    let fake = FakeGemini::start().await.unwrap();
    fake.script.set_delay_range(min_latency, max_latency, 7);
    let sink = WebhookSink::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(
        &config,
        "[worker]\nlease = \"2s\"\n[webhooks]\nschedule = [\"200ms\", \"500ms\", \"1s\", \"2s\", \"5s\"]\ntimeout = \"5s\"\n",
    )
    .unwrap();
    let envs = [
        ("GEMINI_API_KEY", "soak-key".to_string()),
        ("IMAGEGATE_GEMINI_BASE_URL", fake.base_url()),
        ("IMAGEGATE_WEBHOOK_ALLOW_PRIVATE", "1".to_string()),
    ];
    let key = new_key(dir.path());
    let port = free_port();
    let mut server = Proc::start_with(dir.path(), port, Some(&config), &envs).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let body = json!({"model": "nano-banana-pro", "prompt": format!("soak {i}"), "webhook_url": sink.url()});
        let resp = client.post(format!("{}/v1/images/generations/async", server.base)).bearer_auth(&key).json(&body);
        let resp = resp.send().await.unwrap();
        assert_eq!(resp.status(), 202);
        ids.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    // Kill at random moments while the work runs, restarting each time on the same data.
    for _ in 0..kills {
        let wait = rand::rng().random_range(if full { 2000..8000 } else { 300..1500 });
        tokio::time::sleep(Duration::from_millis(wait)).await;
        server.signal("-KILL");
        drop(server);
        server = Proc::start_with(dir.path(), port, Some(&config), &envs).await;
    }
    // Everything ends.
    let deadline = Instant::now() + Duration::from_secs(if full { 600 } else { 120 });
    let mut ended: HashMap<String, Value> = HashMap::new();
    while ended.len() < ids.len() && Instant::now() < deadline {
        let open: Vec<String> = ids.iter().filter(|id| !ended.contains_key(*id)).cloned().collect();
        for id in &open {
            let t = server.task(&client, &key, id).await;
            if matches!(t["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
                ended.insert(id.clone(), t);
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ran_in = started.elapsed();
    let completed = ended.values().filter(|t| t["status"] == "completed").count();
    let failed = ended.len() - completed;
    let lost = ids.len() - ended.len();
    let rerun = ended.values().filter(|t| t["attempts"].as_i64().unwrap_or(0) > 1).count();
    let overcharged = ended.values().filter(|t| t["cost_usd"].as_f64().unwrap_or(0.0) > PRICE + 1e-9).count();
    let usage = get_json(&client, &format!("{}/v1/usage", server.base), &key).await;
    let spent = usage["spent_usd"].as_f64().unwrap();
    let double_charges = ((spent - completed as f64 * PRICE) / PRICE).round() as i64;
    // Every completion's webhook arrives (at least once).
    let (delivered, duplicates) =
        crate::delivered_per_task(&sink, Some("task.completed"), completed, Duration::from_secs(60)).await;
    crate::report(
        "kill_soak",
        &format!(
            "kill -9 soak: {tasks} async tasks with webhooks, upstream latency {min_latency:?}–{max_latency:?}, killed {kills} times at random"
        ),
        &[
            ("completed", format!("{completed} of {tasks}")),
            ("failed (cut off by more kills than a task has attempts; refunded)", failed.to_string()),
            ("lost", lost.to_string()),
            ("tasks run more than once (cut off by a kill)", rerun.to_string()),
            ("upstream calls", format!("{} for {tasks} images", fake.script.call_count())),
            (
                "double charges",
                format!("{double_charges} (spent ${spent:.3}; tasks charged above the price: {overcharged})"),
            ),
            (
                "completion webhooks delivered",
                format!("{delivered} of {completed} ({duplicates} duplicates: at least once)"),
            ),
            ("all tasks ended within", format!("{:.1} s of the first submit", ran_in.as_secs_f64())),
        ],
    );
    assert_eq!(lost, 0, "no task lost");
    // A task cut off by more kills than it has attempts is given up (a poison pill must not
    // crash the gateway forever): with its reason, and refunded.
    for t in ended.values().filter(|t| t["status"] != "completed") {
        assert_eq!(t["error"]["code"], "attempts_exhausted", "{t}");
        assert_eq!(t["cost_usd"], 0.0, "{t}");
    }
    assert_eq!(double_charges, 0, "nothing charged twice");
    assert_eq!(overcharged, 0);
    assert_eq!(delivered, completed, "every completion webhook delivered");
}
