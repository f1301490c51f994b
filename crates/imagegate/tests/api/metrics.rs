//! `GET /metrics`: Prometheus text that moves as requests are made, with bounded labels.

use crate::support::{pro, spawn_app};
use std::collections::HashMap;

/// `name{labels} value` lines, by series (the process's recorder is shared by every server in
/// this test binary: compare before and after, not absolute values).
async fn scrape(app: &crate::support::TestApp) -> (String, HashMap<String, f64>) {
    let resp = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = resp.text().await.unwrap();
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.rsplit_once(' ').map(|(k, v)| (k.to_string(), v.parse().unwrap_or(f64::NAN))))
        .collect();
    (text, series)
}

#[tokio::test]
async fn metrics_move_with_requests_and_hold_no_ids() {
    let app = spawn_app().await;
    let (_, before) = scrape(&app).await;
    let resp = app.generate(pro("metered")).await;
    assert_eq!(resp.status(), 200);
    let (text, after) = scrape(&app).await;
    let moved = |series: &str| after.get(series).copied().unwrap_or(0.0) - before.get(series).copied().unwrap_or(0.0);
    let requests = "imagegate_http_requests_total{route=\"/v1/images/generations\",method=\"POST\",status=\"200\"}";
    assert!(moved(requests) >= 1.0, "{text}");
    assert!(moved("imagegate_images_stored_total{model=\"nano-banana-pro\"}") >= 1.0, "{text}");
    assert!(moved("imagegate_upstream_requests_total{channel=\"simulated\",outcome=\"ok\"}") >= 1.0, "{text}");
    assert!(text.contains("imagegate_http_request_duration_seconds_bucket{route=\"/v1/images/generations\""));
    assert!(text.contains("imagegate_queue_tasks{lane=\"realtime\",state=\"queued\"}"), "{text}");
    assert!(text.contains("# TYPE imagegate_http_requests_total counter"));
    // Label values: routes, methods, statuses, models, channels, outcomes; never an id.
    let values: Vec<&str> = text.split("=\"").skip(1).filter_map(|v| v.split('"').next()).collect();
    assert!(values.len() > 10);
    for v in values {
        assert!(
            !["task_", "img_", "key_", "igk_", "batch_", "file-"].iter().any(|id| v.contains(id)),
            "a label holds an id: {v}"
        );
    }
}
