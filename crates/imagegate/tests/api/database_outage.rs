//! The database goes away and comes back (a PostgreSQL restart, a failover): the gateway says
//! it is not ready meanwhile, refuses new work with a clear 503, keeps the images it was making,
//! and carries on by itself when the database returns: no task lost, none run twice.

use crate::support::pg::PrivateServer;
use crate::support::spawn_with;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

async fn ready(app: &crate::support::TestApp) -> u16 {
    app.client.get(app.url("/readyz")).send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

async fn until_ready_is(app: &crate::support::TestApp, status: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while ready(app).await != status {
        assert!(Instant::now() < deadline, "/readyz never answered {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_mid_run_loses_no_task_and_needs_no_manual_step() {
    let pg = PrivateServer::start();
    let url = pg.url();
    let app = spawn_with(
        move |rt| {
            rt.database_url = url;
            rt.simulated_latency = Duration::from_millis(1500);
        },
        false,
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..10 {
        let t = app.submit_async(&app.key, json!({"prompt": format!("p{i}"), "model": "nano-banana-pro"})).await;
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ready(&app).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await; // the tasks are running

    pg.down("fast");
    until_ready_is(&app, 503, Duration::from_secs(15)).await;
    let refused = app.generate(json!({"prompt": "during the outage", "model": "nano-banana-pro"})).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("retry-after").is_some());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await; // the running tasks finish their images meanwhile

    pg.up();
    until_ready_is(&app, 200, Duration::from_secs(20)).await;
    for id in &ids {
        let t = app.wait_task(id).await;
        assert_eq!(t["status"], "completed", "{t}");
        assert_eq!(t["attempts"], 1, "made once: its end was written when the database came back, {t}");
    }
    let after = app.generate(json!({"prompt": "after", "model": "nano-banana-pro"})).await;
    assert_eq!(after.status(), 200, "new work is taken again");
}
