//! Conversion flood: distinct variant requests for one 4096² image from clients that hang up
//! early, while a probe times `/healthz`. Anyone holding an image URL can do this.

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::proc::{Proc, free_port, new_key, rss_mb};

/// Distinct URLs (they snap to fewer distinct variants: that is part of the defence).
fn flood_urls(url: &str, n: usize) -> Vec<String> {
    let formats = ["webp", "jpeg", "png"];
    (0..n).map(|i| format!("{url}?w={}&format={}", 16 + i * 8, formats[i % 3])).collect()
}

#[tokio::test]
async fn a_conversion_flood_from_clients_that_hang_up_stays_bounded() {
    let (requests, clients) = if crate::full() { (500, 50) } else { (120, 20) };
    let dir = tempfile::tempdir().unwrap();
    let key = new_key(dir.path());
    let server = Proc::start(dir.path(), free_port(), None).await;
    let pid = server.child.id();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(600)).build().unwrap();
    let body = json!({"model": "nano-banana-pro", "prompt": "a flood target", "size": "4096x4096"});
    let resp = client.post(format!("{}/v1/images/generations", server.base)).bearer_auth(&key).json(&body);
    let answer: Value = resp.send().await.unwrap().json().await.unwrap();
    let url = answer["data"][0]["url"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, _) = rss_mb(pid);

    // The probe: /healthz every 25 ms, and the gateway's memory, through the flood.
    let flooding = Arc::new(AtomicBool::new(true));
    let probe = {
        let (flooding, base) = (flooding.clone(), server.base.clone());
        tokio::spawn(async move {
            let c = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
            let (mut latencies, mut peak, mut failures) = (Vec::new(), 0f64, 0);
            while flooding.load(Ordering::Relaxed) {
                let t = Instant::now();
                match c.get(format!("{base}/healthz")).send().await {
                    Ok(r) if r.status() == 200 => latencies.push(t.elapsed().as_secs_f64() * 1000.0),
                    _ => failures += 1,
                }
                peak = peak.max(rss_mb(pid).0);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            (latencies, peak, failures)
        })
    };
    let urls = Arc::new(flood_urls(&url, requests));
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|c| {
            let urls = urls.clone();
            tokio::spawn(async move {
                // Hangs up 50 ms into each request.
                let impatient = reqwest::Client::builder().timeout(Duration::from_millis(50)).build().unwrap();
                let mut refused = 0;
                for u in urls.iter().skip(c).step_by(clients) {
                    if let Ok(r) = impatient.get(u).send().await
                        && r.status() != 200
                    {
                        refused += 1;
                    }
                }
                refused
            })
        })
        .collect();
    let mut refused = 0;
    for w in workers {
        refused += w.await.unwrap();
    }
    let sent_in = started.elapsed();
    // Let what was started finish (it is not aborted: its result is kept).
    let images = dir.path().join("images");
    let count = || walk(&images).iter().filter(|n| n.contains('_') && n.starts_with("img_")).count();
    let mut last = (count(), Instant::now());
    while last.1.elapsed() < Duration::from_secs(3) && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let n = count();
        if n != last.0 {
            last = (n, Instant::now());
        }
    }
    flooding.store(false, Ordering::Relaxed);
    let (mut latencies, peak, failures) = probe.await.unwrap();
    let (_, hwm) = rss_mb(pid);
    let p99 = crate::percentile(&mut latencies, 99.0);
    let stored = count();
    crate::report(
        "flood",
        &format!(
            "Conversion flood: {requests} distinct variant URLs of a 4096×4096 image, {clients} clients hanging up after 50 ms"
        ),
        &[
            ("gateway RSS before the flood", format!("{before:.0} MB")),
            ("peak RSS during the flood (sampled every 25 ms)", format!("{peak:.0} MB (+{:.0} MB)", peak - before)),
            ("process peak RSS (VmHWM, includes rendering the 4K image)", format!("{hwm:.0} MB")),
            ("/healthz during the flood", format!("p99 {p99:.1} ms, {} probes, {failures} failed", latencies.len())),
            ("variants stored", stored.to_string()),
            ("requests answered with an error before the client hung up", refused.to_string()),
            ("flood sent in", format!("{:.1} s", sent_in.as_secs_f64())),
        ],
    );
    assert_eq!(failures, 0, "/healthz always answered");
    assert!(p99 < 1000.0, "/healthz p99 {p99:.0} ms during the flood");
    assert!(peak - before < 1200.0, "the flood raised RSS by {:.0} MB", peak - before);
    if std::env::var("IMAGEGATE_TEST_BINARY").is_err() {
        assert!(stored <= 32, "{stored} variants stored for one image");
    }
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200, "the original is still served");
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    out
}
