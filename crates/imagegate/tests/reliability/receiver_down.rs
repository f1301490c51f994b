//! A webhook receiver that is down (its port closed) for a compressed ten minutes: the retry
//! schedule and the outage are scaled down by the same factor. Every delivery must be made once
//! it is back.

use imagegate_fakes::WebhookSink;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::proc::{Proc, free_port, get_json, new_key};

#[tokio::test]
async fn every_webhook_is_delivered_after_a_receiver_outage() {
    let full = crate::full();
    let (tasks, scale) = if full { (500, 60.0) } else { (50, 600.0) };
    // The default schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), compressed.
    let schedule: Vec<String> = [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
        .iter()
        .map(|s| format!("\"{}ms\"", ((s / scale) * 1000.0) as u64))
        .collect();
    let outage = Duration::from_secs_f64(600.0 / scale);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(&config, format!("[webhooks]\nschedule = [{}]\ntimeout = \"2s\"\n", schedule.join(", "))).unwrap();
    let envs = [("IMAGEGATE_WEBHOOK_ALLOW_PRIVATE", "1".to_string())];
    let key = new_key(dir.path());
    let server = Proc::start_with(dir.path(), free_port(), Some(&config), &envs).await;
    let hook_port = free_port();
    let hook_url = format!("http://127.0.0.1:{hook_port}/hooks");
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let mut ids = HashSet::new();
    for i in 0..tasks {
        let body = json!({"model": "nano-banana-pro", "prompt": format!("while down {i}"), "webhook_url": hook_url});
        let resp = client.post(format!("{}/v1/images/generations/async", server.base)).bearer_auth(&key).json(&body);
        let task: Value = resp.send().await.unwrap().json().await.unwrap();
        ids.insert(task["id"].as_str().unwrap().to_string());
    }
    // Every task ends (and its first attempt fails), then the receiver stays down for the
    // whole outage.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut open = 0;
        for status in ["queued", "running"] {
            let page = get_json(&client, &format!("{}/v1/tasks?status={status}&limit=1", server.base), &key).await;
            open += page["data"].as_array().unwrap().len();
        }
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(outage).await;
    let sink = WebhookSink::start_on(format!("127.0.0.1:{hook_port}").parse().unwrap()).await.unwrap();
    let back = Instant::now();
    let deadline = back + Duration::from_secs_f64(36000.0 / scale * 3.0 + 60.0);
    let delivered = loop {
        let got: HashSet<String> = sink
            .deliveries()
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(&d.body).ok())
            .filter(|p| p["type"] == "task.completed")
            .filter_map(|p| p["data"]["id"].as_str().map(str::to_string))
            .collect();
        if got.len() >= ids.len() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let drained = back.elapsed();
    let mut attempts = Vec::new();
    for id in &ids {
        let log = get_json(&client, &format!("{}/v1/tasks/{id}/webhook-deliveries", server.base), &key).await;
        attempts.push(log["data"].as_array().map_or(0, |a| a.len()) as f64);
    }
    let refused_first = attempts.iter().filter(|a| **a > 1.0).count();
    let (min, median, max) = (
        crate::percentile(&mut attempts, 0.0),
        crate::percentile(&mut attempts, 50.0),
        crate::percentile(&mut attempts, 100.0),
    );
    crate::report(
        "receiver_down",
        &format!(
            "Webhook receiver down for a compressed 10 minutes (schedule and outage scaled 1/{scale:.0}), {tasks} tasks"
        ),
        &[
            ("outage", format!("{:.1} s (= 10 min)", outage.as_secs_f64())),
            (
                "completion webhooks delivered after the receiver returned",
                format!("{} of {}", delivered.len(), ids.len()),
            ),
            (
                "last one delivered",
                format!(
                    "{:.1} s after its return (= {:.0} min)",
                    drained.as_secs_f64(),
                    drained.as_secs_f64() * scale / 60.0
                ),
            ),
            ("webhooks refused while it was down, then delivered", format!("{refused_first} of {}", ids.len())),
            ("attempts per webhook, as logged", format!("min {min:.0}, median {median:.0}, max {max:.0}")),
        ],
    );
    assert_eq!(delivered.len(), ids.len(), "every webhook delivered once the receiver was back");
    assert_eq!(refused_first, ids.len(), "each was tried while the receiver was down");
}
