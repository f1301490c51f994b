//! Three replicas sharing PostgreSQL and SeaweedFS, one killed with -9 midway: every task ends
//! completed, each image is generated once except those cut off on the killed replica (taken
//! over when their lease runs out), every completion webhook is delivered, none is stuck.

use imagegate_fakes::{FakeGemini, WebhookSink};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::pg::Schema;
use crate::proc::{Proc, command, free_port};

/// Tasks a replica runs at once (bounds what a kill can cut off).
const WORKERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_one_killed_midway_finish_every_task_once() {
    let full = crate::full();
    let tasks = if full { 3000 } else { 300 };
    let fake = FakeGemini::start().await.unwrap();
    fake.script.set_delay_range(Duration::from_millis(300), Duration::from_millis(if full { 3000 } else { 1500 }), 11);
    let sink = WebhookSink::start().await.unwrap();
    let schema = Schema::new().await;
    let s3 = crate::s3::s3().await;
    let (access, secret) = s3.credentials();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(
        &config,
        format!(
            "[worker]\nconcurrency = {WORKERS}\nlease = \"2s\"\n[webhooks]\nschedule = [\"200ms\", \"500ms\", \"1s\", \"2s\"]\n"
        ),
    )
    .unwrap();
    let envs = vec![
        ("IMAGEGATE_DATABASE_URL", schema.url.clone()),
        ("IMAGEGATE_STORAGE_URL", s3.storage_url()),
        ("AWS_ACCESS_KEY_ID", access),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("IMAGEGATE_SECRET_KEY", "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_string()),
        ("GEMINI_API_KEY", "replica-key".to_string()),
        ("IMAGEGATE_GEMINI_BASE_URL", fake.base_url()),
        ("IMAGEGATE_WEBHOOK_ALLOW_PRIVATE", "1".to_string()),
    ];
    let mut replicas = Vec::new();
    for i in 0..3 {
        let own = dir.path().join(format!("r{i}"));
        std::fs::create_dir_all(&own).unwrap();
        replicas.push(Proc::start_with(&own, free_port(), Some(&config), &envs).await);
    }
    let out = command()
        .envs(envs.iter().cloned())
        .args(["keys", "create", "--quiet"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let started = Instant::now();
    let mut ids = Vec::with_capacity(tasks);
    for i in 0..tasks {
        let body = json!({"model": "nano-banana-pro", "prompt": format!("replica soak {i}"), "webhook_url": sink.url(),
                          "webhook_events": ["completed"]});
        let to = &replicas[i % 3];
        let resp = client.post(format!("{}/v1/images/generations/async", to.base)).bearer_auth(&key).json(&body);
        let resp = resp.send().await.unwrap();
        assert_eq!(resp.status(), 202);
        ids.push(resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string());
    }
    // Midway: a third of the images made, the third replica killed.
    let deadline = Instant::now() + Duration::from_secs(120);
    while fake.script.completed() < tasks / 3 {
        assert!(Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (calls_at_kill, completed_at_kill) = (fake.script.call_count(), fake.script.completed());
    let killed = replicas.pop().unwrap();
    killed.signal("-KILL");
    drop(killed);

    let deadline = Instant::now() + Duration::from_secs(if full { 600 } else { 120 });
    let mut ended: HashMap<String, Value> = HashMap::new();
    while ended.len() < ids.len() && Instant::now() < deadline {
        for (n, id) in ids.iter().filter(|id| !ended.contains_key(*id)).cloned().collect::<Vec<_>>().iter().enumerate()
        {
            let t = replicas[n % 2].task(&client, &key, id).await;
            if matches!(t["status"].as_str(), Some("completed" | "failed" | "cancelled")) {
                ended.insert(id.clone(), t);
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ran_in = started.elapsed();
    let completed = ended.values().filter(|t| t["status"] == "completed").count();
    let stuck = ids.len() - ended.len();
    let rerun = ended.values().filter(|t| t["attempts"].as_i64().unwrap_or(0) > 1).count();
    let calls = fake.script.call_count();
    let (delivered, duplicates) = crate::delivered_per_task(&sink, None, completed, Duration::from_secs(60)).await;
    crate::report(
        "replicas_kill",
        &format!(
            "three replicas (PostgreSQL, SeaweedFS): {tasks} async tasks with webhooks spread over them, one killed with -9 after a third"
        ),
        &[
            ("completed", format!("{completed} of {tasks}")),
            ("stuck", stuck.to_string()),
            (
                "tasks run again (cut off on the killed replica)",
                format!("{rerun} (at most {WORKERS} could be running there)"),
            ),
            (
                "upstream calls",
                format!(
                    "{calls} for {tasks} images ({calls_at_kill} begun and {completed_at_kill} finished when the replica was killed)"
                ),
            ),
            ("completion webhooks delivered", format!("{delivered} of {completed} ({duplicates} duplicates)")),
            ("all tasks ended within", format!("{:.1} s of the first submit", ran_in.as_secs_f64())),
        ],
    );
    assert_eq!(stuck, 0, "no task stuck");
    assert_eq!(completed, tasks, "every task completed");
    assert!(rerun <= WORKERS, "only tasks cut off on the killed replica run again ({rerun})");
    assert!(calls <= tasks + rerun, "each image made once but for the cut-off ones: {calls} calls");
    assert_eq!(delivered, completed, "every completion webhook delivered");
}
