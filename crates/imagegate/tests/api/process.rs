//! Process tests: the real binary, its CLI, signals, and `kill -9`.

use serde_json::{Value, json};
use std::time::{Duration, Instant};

use crate::support::proc::*;

/// Waits until the key has a running task.
async fn wait_running(client: &reqwest::Client, base: &str, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let page = get_json(client, &format!("{base}/v1/tasks?status=running&limit=1"), key).await;
        if !page["data"].as_array().unwrap().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "no task started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn generate(client: &reqwest::Client, base: &str, key: &str, body: Value) -> reqwest::RequestBuilder {
    client.post(format!("{base}/v1/images/generations")).bearer_auth(key).json(&body)
}

#[tokio::test]
async fn the_cli_manages_keys_that_the_server_honours_and_sigterm_drains() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(dir.path(), &["keys", "create", "--name", "cli", "--quiet"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(key.starts_with("igk_"));

    let mut server = Proc::start(dir.path(), free_port(), None).await;
    let client = reqwest::Client::new();
    let resp = generate(&client, &server.base, &key, json!({"model": "nano-banana-pro", "prompt": "from the cli"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    let list = String::from_utf8(cli(dir.path(), &["keys", "list"]).stdout).unwrap();
    assert!(list.contains("cli") && list.contains("active"), "{list}");
    assert!(!list.contains(&key), "keys list never prints secrets");
    let id = list.split_whitespace().next().unwrap().to_string();
    assert!(cli(dir.path(), &["keys", "revoke", &id]).status.success());
    // Revoked by another process: the server reuses a key record for up to a second.
    let revoked_at = std::time::Instant::now();
    loop {
        let resp = generate(&client, &server.base, &key, json!({"model": "nano-banana-pro", "prompt": "x"}))
            .send()
            .await
            .unwrap();
        if resp.status() == 401 {
            break;
        }
        assert_eq!(resp.status(), 200);
        assert!(revoked_at.elapsed() < Duration::from_secs(6), "the revoked key still works after 6 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A request in flight when SIGTERM arrives still gets its image.
    let key2 = new_key(dir.path());
    let slow =
        generate(&client, &server.base, &key2, json!({"model": "nano-banana-pro", "prompt": "slow [sim:delay:1s]"}))
            .send();
    let slow = tokio::spawn(slow);
    wait_running(&client, &server.base, &key2).await;
    server.signal("-TERM");
    let resp = slow.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "in-flight request finished during the drain");
    let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10))).await.unwrap();
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn tasks_cut_off_by_kill_9_finish_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(&config, "[worker]\nlease = \"1s\"\n").unwrap();
    let key = new_key(dir.path());
    let port = free_port();
    let server = Proc::start(dir.path(), port, Some(&config)).await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let resp = generate(
            &client,
            &server.base,
            &key,
            json!({"model": "nano-banana-pro", "prompt": format!("long {i} [sim:delay:2s]")}),
        )
        .header("Prefer", "respond-async")
        .send()
        .await
        .unwrap();
        assert_eq!(resp.status(), 202);
        let task: Value = resp.json().await.unwrap();
        ids.push(task["id"].as_str().unwrap().to_string());
    }
    wait_running(&client, &server.base, &key).await;
    server.signal("-KILL");
    drop(server);

    let server = Proc::start(dir.path(), port, Some(&config)).await;
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(20);
        let task = loop {
            let t: Value = server.task(&client, &key, id).await;
            if t["status"] == "completed" || Instant::now() > deadline {
                break t;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(task["status"], "completed", "{task}");
        assert_eq!(task["attempts"], 2, "one cut-off attempt, one that finished");
        let url = task["result"]["data"][0]["url"].as_str().unwrap();
        assert_eq!(client.get(url).send().await.unwrap().status(), 200);
    }
}

#[test]
fn a_config_typo_is_an_error_that_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[server]\nlisten_address = \"127.0.0.1:1\"\n").unwrap();
    let out = command().arg("--config").arg(&config).args(["config", "print"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen_address"), "{err}");
}

#[test]
fn config_print_shows_resolved_values_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let out = command()
        .args(["config", "print"])
        .current_dir(dir.path())
        .env("IMAGEGATE_LISTEN", "127.0.0.1:9191")
        .env("IMAGEGATE_ADMIN_TOKEN", "super-secret-admin-token-123")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("127.0.0.1:9191"), "{text}");
    assert!(!text.contains("super-secret-admin-token-123"), "{text}");
    assert!(text.contains("<redacted>"));
}

#[tokio::test]
async fn two_hundred_async_tasks_survive_kill_9_with_every_webhook_delivered() {
    let fake = imagegate_fakes::FakeGemini::start().await.unwrap();
    fake.script.set_delay(Duration::from_millis(500));
    let sink = imagegate_fakes::WebhookSink::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(
        &config,
        "[worker]\nconcurrency = 20\nlease = \"1s\"\n[webhooks]\nschedule = [\"100ms\", \"200ms\", \"500ms\"]\ntimeout = \"2s\"\n",
    )
    .unwrap();
    let envs = [
        ("GEMINI_API_KEY", "test-key".to_string()),
        ("IMAGEGATE_GEMINI_BASE_URL", fake.base_url()),
        ("IMAGEGATE_WEBHOOK_ALLOW_PRIVATE", "1".to_string()),
    ];
    let key = new_key(dir.path());
    let port = free_port();
    let server = Proc::start_with(dir.path(), port, Some(&config), &envs).await;
    let client = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..200 {
        let body = json!({"model": "nano-banana-pro", "prompt": format!("durable {i}"), "webhook_url": sink.url()});
        let resp = client
            .post(format!("{}/v1/images/generations/async", server.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let task: Value = resp.json().await.unwrap();
        ids.push(task["id"].as_str().unwrap().to_string());
    }
    // Kill mid-way: some done, some running, most queued.
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.script.completed() < 40 {
        assert!(Instant::now() < deadline, "the first tasks never finished");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal("-KILL");
    drop(server);

    let server = Proc::start_with(dir.path(), port, Some(&config), &envs).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut pending: Vec<String> = ids.clone();
    let mut rerun = 0;
    while !pending.is_empty() {
        assert!(Instant::now() < deadline, "{} tasks never completed", pending.len());
        let mut still = Vec::new();
        for id in pending {
            let t: Value = server.task(&client, &key, &id).await;
            match t["status"].as_str() {
                Some("completed") => {
                    let attempts = t["attempts"].as_i64().unwrap();
                    assert!(attempts <= 2, "{id} ran {attempts} times");
                    if attempts == 2 {
                        rerun += 1;
                    }
                }
                Some("queued" | "running") => still.push(id),
                other => panic!("task {id} ended {other:?}: {t}"),
            }
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Only the attempts cut off by the kill ran twice: at most the 20 running at that moment.
    let calls = fake.script.call_count();
    assert!(rerun <= 20, "{rerun} tasks ran twice with 20 workers");
    assert!((200..=200 + rerun).contains(&calls), "{calls} upstream calls for 200 tasks, {rerun} of them cut off");
    // Every task's completion webhook arrives (at least once).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let delivered: std::collections::HashSet<String> = sink
            .deliveries()
            .iter()
            .filter_map(|d| serde_json::from_str::<Value>(&d.body).ok())
            .filter(|p| p["type"] == "task.completed")
            .filter_map(|p| p["data"]["id"].as_str().map(str::to_string))
            .collect();
        if ids.iter().all(|id| delivered.contains(id)) {
            break;
        }
        assert!(Instant::now() < deadline, "{} of 200 completion webhooks delivered", delivered.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn export_credentials_survive_a_restart_sealed_or_from_the_environment() {
    use crate::support::s3::{self, ACCESS, BUCKET, SECRET};
    let s3 = s3::s3().await;
    let dir = tempfile::tempdir().unwrap();
    let admin = "admin-token-for-the-process-test";
    let envs = [
        ("IMAGEGATE_ADMIN_TOKEN", admin.to_string()),
        ("ACME_S3_KEY_ID", ACCESS.to_string()),
        ("ACME_S3_SECRET", SECRET.to_string()),
    ];
    let port = free_port();
    let mut server = Proc::start_with(dir.path(), port, None, &envs).await;
    let client = reqwest::Client::new();
    let run = format!("{:x}", rand::random::<u64>());
    // One key's secret is sealed in the database; the other's is read from the environment.
    let mut keys = Vec::new();
    for (name, access, secret) in [("sealed", ACCESS, SECRET), ("env", "env::ACME_S3_KEY_ID", "env::ACME_S3_SECRET")] {
        let k: Value = client
            .post(format!("{}/admin/v1/keys", server.base))
            .bearer_auth(admin)
            .json(&json!({"name": name}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = k["id"].as_str().unwrap().to_string();
        let prefix = format!("proc-{run}/{name}");
        let resp = client
            .put(format!("{}/admin/v1/keys/{id}/export", server.base))
            .bearer_auth(admin)
            .json(&json!({"bucket": BUCKET, "prefix": prefix, "endpoint": s3.endpoint,
                           "access_key_id": access, "secret_access_key": secret}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
        keys.push((k["key"].as_str().unwrap().to_string(), prefix));
    }
    server.signal("-TERM");
    tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(10))).await.unwrap();

    let server = Proc::start_with(dir.path(), port, None, &envs).await;
    for (key, prefix) in &keys {
        let resp = generate(&client, &server.base, key, json!({"model": "nano-banana-pro", "prompt": "after restart"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        let export = loop {
            let t = server.task(&client, key, &task_id).await;
            if t["exports"][0]["status"] != "pending" {
                break t["exports"][0].clone();
            }
            assert!(Instant::now() < deadline, "{t}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(export["status"], "exported", "{export}");
        assert_eq!(export["key"], json!(format!("{prefix}/{task_id}-0.jpeg")));
    }
    let key_file = dir.path().join("secret.key");
    assert!(key_file.exists(), "the sealing key was made in the data folder");
}

#[tokio::test]
async fn a_finished_task_reaches_the_database_file_itself_within_a_second() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path());
    let server = Proc::start(dir.path(), free_port(), None).await;
    let client = reqwest::Client::new();
    let resp = generate(&client, &server.base, &key, json!({"model": "nano-banana-pro", "prompt": "flushed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();

    // The flush loop puts recent images on disk, then checkpoints the log into the database
    // file: a copy of that file alone (no log) already has the finished task.
    let snapshot = tempfile::tempdir().unwrap();
    let copy = snapshot.path().join("copy.db");
    let started = Instant::now();
    let status = loop {
        std::fs::copy(dir.path().join("imagegate.db"), &copy).unwrap();
        let _ = std::fs::remove_file(snapshot.path().join("copy.db-wal"));
        let found: Option<String> = rusqlite::Connection::open(&copy)
            .and_then(|c| c.query_row("SELECT status FROM tasks WHERE id = ?", [&task_id], |r| r.get(0)))
            .ok();
        if found.as_deref() == Some("completed") || started.elapsed() > Duration::from_secs(5) {
            break found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.as_deref(), Some("completed"), "not checkpointed after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

/// CPU time (user + system) a process has used so far, from `/proc/{pid}/stat`.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is the first, utime the 12th
    // and stime the 13th, in clock ticks (100 a second on Linux).
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

#[tokio::test]
async fn a_slow_webhook_receiver_costs_the_gateway_no_cpu_while_it_waits() {
    let sink = imagegate_fakes::WebhookSink::start().await.unwrap();
    sink.answer_after(Duration::from_secs(8));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(&config, "[webhooks]\ntimeout = \"15s\"\n").unwrap();
    let envs = [("IMAGEGATE_WEBHOOK_ALLOW_PRIVATE", "1".to_string())];
    let key = new_key(dir.path());
    let server = Proc::start_with(dir.path(), free_port(), Some(&config), &envs).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let body = json!({"model": "nano-banana-pro", "prompt": "slow receiver", "webhook_url": sink.url()});
    let resp = client.post(format!("{}/v1/images/generations/async", server.base)).bearer_auth(&key).json(&body).send();
    assert_eq!(resp.await.unwrap().status(), 202);
    assert_eq!(sink.wait_for(1, Duration::from_secs(20)).await.len(), 1, "the delivery started");
    // While the receiver takes its time, the gateway has nothing to do.
    let pid = server.child.id();
    let before = cpu_time(pid);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let used = cpu_time(pid) - before;
    // Measured: ~10 ms (idle); ~250 ms (debug build) when the loop polled the leased message.
    assert!(used < Duration::from_millis(100), "{used:?} of CPU in 4 s while one webhook waited");
    assert_eq!(sink.deliveries().len(), 1, "and it was not sent twice");
}

#[tokio::test]
async fn proxies_from_the_environment_are_not_used_for_webhooks_or_upstream_calls() {
    // A "proxy" that counts the connections it is offered.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_url = format!("http://{}", proxy.local_addr().unwrap());
    let offered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = offered.clone();
    tokio::spawn(async move {
        while let Ok((_c, _)) = proxy.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let fake = imagegate_fakes::FakeGemini::start().await.unwrap();
    let sink = imagegate_fakes::WebhookSink::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        ("GEMINI_API_KEY", "test-key".to_string()),
        ("IMAGEGATE_GEMINI_BASE_URL", fake.base_url()),
        ("IMAGEGATE_WEBHOOK_ALLOW_PRIVATE", "1".to_string()),
        ("HTTP_PROXY", proxy_url.clone()),
        ("HTTPS_PROXY", proxy_url.clone()),
        ("ALL_PROXY", proxy_url.clone()),
        ("http_proxy", proxy_url.clone()),
    ];
    let key = new_key(dir.path());
    let server = Proc::start_with(dir.path(), free_port(), None, &envs).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap();
    let body = json!({"model": "nano-banana-pro", "prompt": "direct", "webhook_url": sink.url()});
    let resp = client.post(format!("{}/v1/images/generations/async", server.base)).bearer_auth(&key).json(&body);
    assert_eq!(resp.send().await.unwrap().status(), 202);
    assert_eq!(sink.wait_for(1, Duration::from_secs(20)).await.len(), 1, "delivered straight to the receiver");
    assert_eq!(fake.script.call_count(), 1, "the upstream was called directly");
    assert_eq!(offered.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing went through the proxy");
}

#[tokio::test]
async fn rolling_restarts_put_a_long_task_back_without_using_up_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(&config, "[server]\nshutdown_grace = \"200ms\"\n").unwrap();
    let key = new_key(dir.path());
    let port = free_port();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let mut server = Proc::start(dir.path(), port, Some(&config)).await;
    let body = json!({"model": "nano-banana-pro", "prompt": "a long 4K render [sim:delay:2s]"});
    let resp = client.post(format!("{}/v1/images/generations/async", server.base)).bearer_auth(&key).json(&body);
    let task: Value = resp.send().await.unwrap().json().await.unwrap();
    let id = task["id"].as_str().unwrap().to_string();
    // More restarts than a task has attempts, each in the middle of the generation.
    for _ in 0..4 {
        let deadline = Instant::now() + Duration::from_secs(20);
        while server.task(&client, &key, &id).await["status"] != "running" {
            assert!(Instant::now() < deadline, "the task never started");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.signal("-TERM");
        let status = tokio::task::spawn_blocking(move || {
            let s = server.wait_exit(Duration::from_secs(15));
            (s, server)
        })
        .await
        .unwrap();
        assert!(status.0.success());
        drop(status.1);
        server = Proc::start(dir.path(), port, Some(&config)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let task = loop {
        let t = server.task(&client, &key, &id).await;
        if matches!(t["status"].as_str(), Some("completed" | "failed")) {
            break t;
        }
        assert!(Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(task["status"], "completed", "drained four times, still finished: {task}");
}

#[tokio::test]
async fn a_database_locked_by_another_process_does_not_stall_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path());
    let server = Proc::start(dir.path(), free_port(), None).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    // Another process (a backup, the CLI) holds SQLite's write lock for a while.
    let db = dir.path().join("imagegate.db");
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        std::thread::sleep(Duration::from_secs(3));
        conn.execute_batch("COMMIT").unwrap();
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // More waiting writes than the server has worker threads.
    let rotate = format!("{}/v1/webhooks/secret/rotate", server.base);
    let writes: Vec<_> = (0..16).map(|_| tokio::spawn(client.post(&rotate).bearer_auth(&key).send())).collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let health = client.get(format!("{}/healthz", server.base)).send().await.unwrap();
    let took = started.elapsed();
    assert_eq!(health.status(), 200);
    assert!(took < Duration::from_millis(1000), "/healthz took {took:?} while writes waited for the lock");
    for w in writes {
        assert_eq!(w.await.unwrap().unwrap().status(), 200, "every write went through once the lock was free");
    }
    holder.join().unwrap();
}

#[tokio::test]
async fn a_task_cut_off_more_times_than_allowed_is_given_up_and_refunded() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(&config, "[worker]\nlease = \"1s\"\nmax_claims = 1\n").unwrap();
    let key = new_key(dir.path());
    let port = free_port();
    let server = Proc::start(dir.path(), port, Some(&config)).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let body = json!({"model": "nano-banana-pro", "prompt": "brings its process down [sim:delay:3s]"});
    let resp = client.post(format!("{}/v1/images/generations/async", server.base)).bearer_auth(&key).json(&body);
    let task: Value = resp.send().await.unwrap().json().await.unwrap();
    let id = task["id"].as_str().unwrap().to_string();
    wait_running(&client, &server.base, &key).await;
    server.signal("-KILL");
    drop(server);
    let server = Proc::start(dir.path(), port, Some(&config)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let task = loop {
        let t = server.task(&client, &key, &id).await;
        if t["status"] == "failed" || t["status"] == "completed" {
            break t;
        }
        assert!(Instant::now() < deadline, "{t}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(task["status"], "failed", "{task}");
    assert_eq!(task["error"]["code"], "attempts_exhausted");
    assert_eq!(task["cost_usd"], 0.0, "refunded");
}

#[tokio::test]
async fn an_edit_cut_off_by_kill_9_sends_the_same_input_bytes_after_restart() {
    use base64::Engine;
    let fake = imagegate_fakes::FakeGemini::start().await.unwrap();
    fake.script.set_delay(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(&config, "[worker]\nlease = \"1s\"\n").unwrap();
    let envs = [("GEMINI_API_KEY", "edit-key".to_string()), ("IMAGEGATE_GEMINI_BASE_URL", fake.base_url())];
    let key = new_key(dir.path());
    let port = free_port();
    let server = Proc::start_with(dir.path(), port, Some(&config), &envs).await;
    let client = reqwest::Client::new();
    let photo = {
        let img = image::RgbImage::from_fn(16, 9, |x, y| image::Rgb([x as u8 * 15, y as u8 * 25, 7]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        base64::engine::general_purpose::STANDARD.encode(out.into_inner())
    };
    let body = json!({"model": "nano-banana-pro", "prompt": "the same fox, in winter",
                      "reference_images": [format!("data:image/png;base64,{photo}")]});
    let resp = client
        .post(format!("{}/v1/images/generations/async", server.base))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let id = resp.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while fake.script.call_count() == 0 {
        assert!(Instant::now() < deadline, "the edit never reached the upstream");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal("-KILL");
    drop(server);
    // The client that sent the photo is gone; the restarted gateway has what it needs.
    let server = Proc::start_with(dir.path(), port, Some(&config), &envs).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let task = loop {
        let t: Value = server.task(&client, &key, &id).await;
        if t["status"] == "completed" || Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(task["status"], "completed", "{task}");
    let calls = fake.script.calls();
    assert_eq!(calls.len(), 2, "the cut-off call and the one after the restart");
    for c in &calls {
        let part = &c.body["contents"][0]["parts"][1]["inlineData"];
        assert_eq!(part["data"], photo.as_str(), "each try sends the stored bytes");
        assert_eq!(part["mimeType"], "image/png");
    }
}

/// A gateway running a batch through the fake Gemini's Batch API as a process, killed with
/// `kill -9` once `cut` says so, then started again: the batch ends with every line's image,
/// and the upstream saw exactly one job.
async fn batch_survives_kill_9(
    prepare: impl Fn(&imagegate_fakes::FakeGemini),
    cut: impl Fn(&imagegate_fakes::FakeGemini) -> bool,
) {
    let fake = imagegate_fakes::FakeGemini::start().await.unwrap();
    prepare(&fake);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(&config, "[worker]\nlease = \"1s\"\n[batch]\npoll_interval = \"200ms\"\n").unwrap();
    let envs = [("GEMINI_API_KEY", "batch-key".to_string()), ("IMAGEGATE_GEMINI_BASE_URL", fake.base_url())];
    let key = new_key(dir.path());
    let port = free_port();
    let server = Proc::start_with(dir.path(), port, Some(&config), &envs).await;
    let client = reqwest::Client::new();
    let text: String = (0..3)
        .map(|i| {
            json!({"custom_id": format!("l{i}"), "method": "POST", "url": "/v1/images/generations",
                   "body": {"model": "nano-banana", "prompt": format!("line {i}")}})
            .to_string()
                + "\n"
        })
        .collect();
    let form = reqwest::multipart::Form::new()
        .text("purpose", "batch")
        .part("file", reqwest::multipart::Part::bytes(text.into_bytes()).file_name("in.jsonl"));
    let file: Value = client
        .post(format!("{}/v1/files", server.base))
        .bearer_auth(&key)
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let batch: Value = client
        .post(format!("{}/v1/batches", server.base))
        .bearer_auth(&key)
        .json(&json!({"input_file_id": file["id"], "endpoint": "/v1/images/generations", "completion_window": "24h"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = batch["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cut(&fake) {
        assert!(Instant::now() < deadline, "the batch never reached the point of the cut");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.signal("-KILL");
    drop(server);
    let server = Proc::start_with(dir.path(), port, Some(&config), &envs).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let done = loop {
        let b = get_json(&client, &format!("{}/v1/batches/{id}", server.base), &key).await;
        if b["status"] == "completed" || Instant::now() > deadline {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["request_counts"]["completed"], 3, "{done}");
    assert_eq!(fake.batches.creations(), 1, "the same upstream job, never a second");
    assert_eq!(fake.script.call_count(), 0, "no line ran in realtime");
    let out = client
        .get(format!("{}/v1/files/{}/content", server.base, done["output_file_id"].as_str().unwrap()))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(out.lines().count(), 3);
}

#[tokio::test]
async fn a_batch_whose_upstream_job_is_running_survives_kill_9() {
    batch_survives_kill_9(|f| f.batches.set_run_for(Duration::from_secs(3)), |f| f.batches.polls() > 0).await;
}

#[tokio::test]
async fn a_batch_killed_between_creating_its_upstream_job_and_recording_it_finds_the_job_again() {
    batch_survives_kill_9(|f| f.batches.set_create_delay(Duration::from_secs(30)), |f| f.batches.creations() == 1)
        .await;
}

#[tokio::test]
async fn the_cli_client_generates_and_saves_images_and_lists_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path());
    let port = free_port();
    let server = Proc::start(dir.path(), port, None).await;
    let out_dir = dir.path().join("out");
    let reference = dir.path().join("ref.png");
    image::RgbImage::from_pixel(16, 16, image::Rgb([200, 10, 10])).save(&reference).unwrap();
    let client = |args: &[&str]| {
        command().args(args).env("IMAGEGATE_URL", &server.base).env("IMAGEGATE_API_KEY", &key).output().unwrap()
    };
    let out = client(&[
        "generate",
        "a red fox in snow",
        "--size",
        "1024x1024",
        "-n",
        "2",
        "--ref",
        reference.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let saved: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    assert_eq!(saved.len(), 2, "one path per image");
    for path in &saved {
        let img = image::open(path).expect("a saved image");
        assert_eq!((img.width(), img.height()), (1024, 1024));
    }
    let task_id =
        std::path::Path::new(&saved[0]).file_name().unwrap().to_str().unwrap().split('-').next().unwrap().to_string();
    let list = client(&["tasks", "list"]);
    assert!(String::from_utf8_lossy(&list.stdout).contains(&task_id));
    let got = client(&["tasks", "get", &task_id]);
    let task: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(task["request"]["reference_images"].as_array().map(Vec::len), Some(1), "the --ref image went along");
    // A refusal is an error exit with the gateway's reason; a missing key is said plainly.
    let refused = client(&["generate", "no [sim:refuse]", "-o", out_dir.to_str().unwrap()]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("declined"));
    let no_key = command().args(["tasks", "list"]).env("IMAGEGATE_URL", &server.base).output().unwrap();
    assert!(!no_key.status.success());
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("API key"));
}

#[tokio::test]
async fn json_logs_name_each_requests_and_tasks_ids_and_never_an_api_key_even_at_debug() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path());
    let port = free_port();
    let log_path = dir.path().join("server.log");
    let mut server = command()
        .arg("--data-dir")
        .arg(dir.path())
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "debug")
        .env("IMAGEGATE_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The Gemini surface takes the key in the query string.
    let resp = client.get(format!("{base}/v1beta/models?key={key}")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let resp =
        generate(&client, &base, &key, json!({"model": "nano-banana", "prompt": "logged"})).send().await.unwrap();
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    let task_id = resp.headers()["imagegate-task-id"].to_str().unwrap().to_string();
    assert_eq!(resp.status(), 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = server.kill();
    let _ = server.wait();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains(&key), "the API key reached the log");
    assert!(!log.contains(&key[4..20]), "part of the API key reached the log");
    let lines: Vec<Value> = log.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(lines.len() > 5, "JSON lines: {log}");
    let of_request: Vec<&Value> = lines
        .iter()
        .filter(|l| l["span"]["name"] == "request" && l["span"]["request_id"] == request_id.as_str())
        .collect();
    assert!(!of_request.is_empty(), "lines of the generation carry its request id");
    assert!(of_request.iter().all(|l| l["span"]["path"] == "/v1/images/generations"));
    // The worker's lines name the task and the request that submitted it.
    let of_task: Vec<&Value> = lines.iter().filter(|l| l["span"]["task_id"] == task_id.as_str()).collect();
    assert!(of_task.iter().any(|l| l["fields"]["message"] == "task completed"), "worker lines: {of_task:?}");
    assert!(of_task.iter().all(|l| l["span"]["request_id"] == request_id.as_str()));
}

#[tokio::test]
async fn the_cli_batch_of_50_prompts_resumes_after_being_interrupted_without_paying_twice() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(&config, "[providers.simulated]\nlatency = \"300ms\"\n").unwrap();
    let key = new_key(dir.path());
    let port = free_port();
    let server = Proc::start(dir.path(), port, Some(&config)).await;
    let prompts = dir.path().join("prompts.txt");
    std::fs::write(&prompts, (0..50).map(|i| format!("poster number {i}\n")).collect::<String>()).unwrap();
    let out_dir = dir.path().join("out");
    let run = || {
        command()
            .args(["batch", prompts.to_str().unwrap(), "--model", "nano-banana", "--concurrency", "5", "-o"])
            .arg(&out_dir)
            .env("IMAGEGATE_URL", &server.base)
            .env("IMAGEGATE_API_KEY", &key)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let record = out_dir.join(".imagegate-batch.jsonl");
    let done = || std::fs::read_to_string(&record).map(|t| t.lines().count()).unwrap_or(0);
    let mut first = run();
    let deadline = Instant::now() + Duration::from_secs(60);
    while done() < 10 {
        assert!(Instant::now() < deadline, "the batch made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill().unwrap();
    let _ = first.wait();
    let cut_at = done();
    assert!(cut_at < 50, "interrupted part way ({cut_at})");
    let second = run().wait_with_output().unwrap();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    assert!(String::from_utf8_lossy(&second.stdout).contains("50 done, 0 failed"));
    let ids: std::collections::HashSet<String> = std::fs::read_to_string(&record)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 50, "every line recorded once");
    let images = std::fs::read_dir(&out_dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png"))
        .count();
    assert_eq!(images, 50);
    let tasks = get_json(&reqwest::Client::new(), &format!("{}/v1/tasks?limit=100", server.base), &key).await;
    assert_eq!(tasks["data"].as_array().unwrap().len(), 50, "lines cut off in flight got their first task back");
}

#[tokio::test]
async fn metrics_can_be_served_on_their_own_address_and_then_only_there() {
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path());
    let (port, metrics_port) = (free_port(), free_port());
    let server =
        Proc::start_with(dir.path(), port, None, &[("IMAGEGATE_METRICS_LISTEN", format!("127.0.0.1:{metrics_port}"))])
            .await;
    let client = reqwest::Client::new();
    let resp = generate(&client, &server.base, &key, json!({"model": "nano-banana", "prompt": "scraped"}));
    assert_eq!(resp.send().await.unwrap().status(), 200);
    let scraped = client.get(format!("http://127.0.0.1:{metrics_port}/metrics")).send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.unwrap();
    assert!(text.contains("imagegate_http_requests_total{"), "{text}");
    assert!(text.contains("imagegate_gateway_overhead_seconds_bucket{phase=\"store\""), "{text}");
    let public = client.get(format!("{}/metrics", server.base)).send().await.unwrap();
    assert_eq!(public.status(), 404, "not on the public address");
    let other = client.get(format!("http://127.0.0.1:{metrics_port}/v1/models")).bearer_auth(&key).send().await;
    assert_eq!(other.unwrap().status(), 404, "the metrics address serves nothing else");
}

#[tokio::test]
async fn a_sigterm_as_soon_as_the_server_answers_drains_rather_than_kills() {
    // A supervisor may restart a replica the moment its health check passes; the signal
    // handlers were once installed only after the server started answering, and a SIGTERM in
    // between killed the process (exit by signal) instead of draining it.
    let dir = tempfile::tempdir().unwrap();
    for _ in 0..10 {
        let mut server = Proc::start(dir.path(), free_port(), None).await;
        server.signal("-TERM");
        let status = tokio::task::spawn_blocking(move || server.wait_exit(Duration::from_secs(15))).await.unwrap();
        assert!(status.success(), "{status:?}");
    }
}
