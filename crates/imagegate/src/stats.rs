//! Prometheus metrics: one recorder for the process (the `metrics` facade), rendered by
//! `GET /metrics`, and the names recorded, in one place. Labels are bounded: routes are the
//! router's templates, channels and models come from the configuration, outcomes from fixed
//! lists; never a task, key or image id.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Latency buckets, seconds: from a cache hit to a 4K generation.
const BUCKETS: &[f64] =
    &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0];

/// The process's recorder, installed on first use (several servers in one test process share it).
pub fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS);
            match builder.and_then(|b| b.install_recorder()) {
                Ok(h) => Some(h),
                Err(e) => {
                    tracing::warn!(error = %e, "metrics recorder could not be installed; /metrics will be empty");
                    None
                }
            }
        })
        .as_ref()
}

pub fn http_request(route: &str, method: &str, status: u16, took: Duration) {
    let labels = [("route", route.to_string()), ("method", method.to_string()), ("status", status.to_string())];
    metrics::counter!("imagegate_http_requests_total", &labels).increment(1);
    metrics::histogram!("imagegate_http_request_duration_seconds", "route" => route.to_string())
        .record(took.as_secs_f64());
}

/// One upstream call: its channel, outcome (`ok` or the error's kind) and time.
pub fn upstream_call(channel: &str, outcome: &'static str, took: Duration) {
    metrics::counter!("imagegate_upstream_requests_total", "channel" => channel.to_string(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("imagegate_upstream_request_duration_seconds", "channel" => channel.to_string())
        .record(took.as_secs_f64());
}

/// A task's end: its status, model, time from creation, and cost.
pub fn task_ended(status: &'static str, model: &str, took: Duration) {
    metrics::counter!("imagegate_tasks_ended_total", "status" => status, "model" => model.to_string()).increment(1);
    metrics::histogram!("imagegate_task_duration_seconds", "status" => status).record(took.as_secs_f64());
}

pub fn image_stored(model: &str, bytes: u64, micro_usd: u64) {
    metrics::counter!("imagegate_images_stored_total", "model" => model.to_string()).increment(1);
    metrics::counter!("imagegate_image_bytes_stored_total").increment(bytes);
    metrics::counter!("imagegate_cost_microdollars_total", "model" => model.to_string()).increment(micro_usd);
}

/// The gateway's own time on a task, apart from the upstream's: `setup` (claimed to the first
/// upstream call: the stored request and inputs, the key), `store` (an answer to its image
/// stored: sniffing or converting, the blob write), `complete` (recording the end).
pub fn overhead(phase: &'static str, took: Duration) {
    metrics::histogram!("imagegate_gateway_overhead_seconds", "phase" => phase).record(took.as_secs_f64());
}

/// A copy of an image to a key's own bucket: `exported`, `retrying` or `failed`.
pub fn export_attempt(outcome: &'static str) {
    metrics::counter!("imagegate_export_deliveries_total", "outcome" => outcome).increment(1);
}

pub fn webhook_attempt(outcome: &'static str) {
    metrics::counter!("imagegate_webhook_deliveries_total", "outcome" => outcome).increment(1);
}

pub fn conversion(outcome: &'static str, took: Duration) {
    metrics::counter!("imagegate_conversions_total", "outcome" => outcome).increment(1);
    metrics::histogram!("imagegate_conversion_duration_seconds").record(took.as_secs_f64());
}
