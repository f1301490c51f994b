//! Reliability soaks: the real binary under a conversion flood, kill -9, upstream chaos and a
//! webhook receiver that is down, against fakes on 127.0.0.1. Each is bounded in time.
//!
//! `RELIABILITY_PROFILE=full` runs the sizes RELIABILITY.md reports (by hand:
//! `scripts/reliability`); otherwise a short profile runs with the other tests, asserting the
//! same properties on fewer requests. Each soak prints its figures as a Markdown table, and
//! writes them to `$RELIABILITY_OUT/<name>.md` when that is set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../api/support/pg.rs"]
#[allow(dead_code)]
mod pg;
#[path = "../api/support/proc.rs"]
mod proc;
#[path = "../api/support/s3.rs"]
#[allow(dead_code)]
mod s3;

mod chaos;
mod flood;
mod kill_soak;
mod receiver_down;
mod replicas_kill;

/// The full sizes (by hand) or the short ones (CI).
pub fn full() -> bool {
    std::env::var("RELIABILITY_PROFILE").as_deref() == Ok("full")
}

/// Prints a soak's figures, and keeps them for RELIABILITY.md when asked to.
pub fn report(name: &str, title: &str, rows: &[(&str, String)]) {
    let mut text = format!("### {title}\n\n| measure | value |\n|---|---|\n");
    for (k, v) in rows {
        text.push_str(&format!("| {k} | {v} |\n"));
    }
    eprintln!("{text}");
    if let Ok(dir) = std::env::var("RELIABILITY_OUT") {
        let _ = std::fs::write(std::path::Path::new(&dir).join(format!("{name}.md")), text);
    }
}

/// The p-th percentile (0..=100) of `xs` (sorted here).
pub fn percentile(xs: &mut [f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    xs.sort_by(|a, b| a.total_cmp(b));
    let i = ((xs.len() as f64 - 1.0) * p / 100.0).round() as usize;
    xs[i.min(xs.len() - 1)]
}

/// Waits (up to `within`) until `expected` distinct tasks have had a webhook delivered; returns
/// how many did and how many deliveries repeated one (at-least-once), counting those of `event`
/// (`None`: every event).
pub async fn delivered_per_task(
    sink: &imagegate_fakes::WebhookSink,
    event: Option<&str>,
    expected: usize,
    within: std::time::Duration,
) -> (usize, usize) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let mut seen = std::collections::HashSet::new();
        let mut dups = 0;
        for d in sink.deliveries() {
            let p: serde_json::Value = serde_json::from_str(&d.body).unwrap();
            if event.is_some_and(|e| p["type"] != e) {
                continue;
            }
            if !seen.insert(p["data"]["id"].as_str().unwrap().to_string()) {
                dups += 1;
            }
        }
        if seen.len() >= expected || std::time::Instant::now() > deadline {
            return (seen.len(), dups);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
