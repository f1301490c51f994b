//! Upstream chaos: three channels, each failing 30 % of calls with a mix of faults (429 with and
//! without a retry hint, 500, 503, connection resets, answers cut short, garbage 200s).

use imagegate_fakes::FakeGemini;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::proc::{Proc, free_port, get_json, new_key};

const PRICE: f64 = 0.134;

#[tokio::test]
async fn thirty_percent_upstream_faults_on_three_channels_are_retried_to_success() {
    let (requests, concurrency) = if crate::full() { (3000, 32) } else { (300, 16) };
    let mut fakes = Vec::new();
    for seed in [11, 22, 33] {
        let fake = FakeGemini::start().await.unwrap();
        fake.script.set_fault_rate(0.3, seed);
        fake.script.set_delay_range(Duration::from_millis(5), Duration::from_millis(50), seed);
        fakes.push(fake);
    }
    let channels: Vec<String> = fakes
        .iter()
        .enumerate()
        .map(|(i, f)| format!("{{ name = \"ch{i}\", api_key = \"k{i}\", base_url = \"{}\" }}", f.base_url()))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("imagegate.toml");
    std::fs::write(
        &config,
        format!(
            "[retry]\nmax_attempts = 6\nbase = \"50ms\"\nmax_backoff = \"500ms\"\nmax_hint = \"5s\"\n\
             [breaker]\nfailures = 5\ncooldown = \"2s\"\n\
             [providers.gemini]\napi_key = \"\"\nchannels = [{}]\n",
            channels.join(", ")
        ),
    )
    .unwrap();
    let key = new_key(dir.path());
    let server = Proc::start(dir.path(), free_port(), Some(&config)).await;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
    let started = Instant::now();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let mut bad = Vec::new();
    let mut sent = 0;
    while sent < requests {
        let batch: Vec<_> = (sent..(sent + concurrency).min(requests))
            .map(|i| {
                let req = client
                    .post(format!("{}/v1/images/generations", server.base))
                    .bearer_auth(&key)
                    .json(&json!({"model": "nano-banana-pro", "prompt": format!("chaos {i}")}));
                async move {
                    let resp = req.send().await.unwrap();
                    (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
                }
            })
            .collect();
        sent += batch.len();
        for (status, body) in futures_util::future::join_all(batch).await {
            let code = body["error"]["code"].as_str().map(str::to_string);
            let label = match (&code, status) {
                (None, 200) => "200".to_string(),
                (Some(c), s) => format!("{s} {c}"),
                (None, s) => format!("{s} (no error body)"),
            };
            if status != 200 && (code.is_none() || ![429, 502, 503, 504].contains(&status)) {
                bad.push(label.clone());
            }
            *outcomes.entry(label).or_default() += 1;
        }
    }
    let took = started.elapsed();
    let ok = outcomes.get("200").copied().unwrap_or(0);
    let usage = get_json(&client, &format!("{}/v1/usage", server.base), &key).await;
    let spent = usage["spent_usd"].as_f64().unwrap();
    let reserved = usage["reserved_usd"].as_f64().unwrap();
    let calls: usize = fakes.iter().map(|f| f.script.call_count()).sum();
    let rate = ok as f64 * 100.0 / requests as f64;
    let failures: Vec<String> =
        outcomes.iter().filter(|(k, _)| k.as_str() != "200").map(|(k, v)| format!("{v} × {k}")).collect();
    crate::report(
        "chaos",
        &format!(
            "Upstream chaos: {requests} sync requests (concurrency {concurrency}), 3 channels each failing 30 % of calls"
        ),
        &[
            ("succeeded", format!("{ok} of {requests} ({rate:.2} %)")),
            ("failed, by status and code", if failures.is_empty() { "none".into() } else { failures.join(", ") }),
            (
                "charged",
                format!("${spent:.3} = {ok} images × ${PRICE} (failures refunded; ${reserved:.3} still reserved)"),
            ),
            ("upstream calls", format!("{calls} ({:.2} per image)", calls as f64 / requests as f64)),
            ("retry policy", "max_attempts = 6, backoff 50 ms–500 ms, breaker 5 failures / 2 s".into()),
            ("ran in", format!("{:.1} s", took.as_secs_f64())),
        ],
    );
    assert!(bad.is_empty(), "failures with the wrong shape: {bad:?}");
    assert!((spent - ok as f64 * PRICE).abs() < 1e-6, "charged ${spent} for {ok} images");
    assert!(reserved.abs() < 1e-9, "reservations all settled");
    let goal = if crate::full() { 99.9 } else { 99.0 };
    assert!(rate >= goal, "{rate:.2} % succeeded");
}
