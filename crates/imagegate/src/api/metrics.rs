//! `GET /metrics`: Prometheus text format. What the process recorded (`crate::stats`:
//! requests, upstream calls, task ends, images, webhooks, conversions), and what is read at
//! scrape time (the queue read at most once a second, so scrapes cannot load the database):
//! the queue by lane and state with its oldest task's age, and each upstream
//! channel's state. Unauthenticated, like most exporters: labels hold no id, key or prompt.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::fmt::Write;
use std::sync::Arc;

use crate::app::App;
use crate::domain::now_millis;
use crate::providers::channels::ChannelState;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    utoipa_axum::router::OpenApiRouter::new().routes(utoipa_axum::routes!(metrics))
}

/// Counts every routed request by its route template, method and status, with its time.
pub async fn track(req: Request, next: Next) -> Response {
    // Cheap clones (a shared string, a method) rather than copies made for every request.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let started = std::time::Instant::now();
    let resp = next.run(req).await;
    if let Some(route) = route
        && route.as_str() != "/metrics"
    {
        crate::stats::http_request(route.as_str(), method.as_str(), resp.status().as_u16(), started.elapsed());
    }
    resp
}

fn lane_name(lane: i64) -> &'static str {
    use crate::store::{LANE_BATCH, LANE_REALTIME};
    match lane {
        LANE_REALTIME => "realtime",
        LANE_BATCH => "batch",
        _ => "upstream_batch",
    }
}

/// How long a reading of the queue serves scrapes.
const QUEUE_STATS_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// The queue's counts, read at most once a second whoever scrapes (concurrent scrapes wait for
/// one reading).
async fn queue_stats(app: &App) -> Option<Vec<crate::store::QueueStat>> {
    let mut cached = app.queue_stats.lock().await;
    if let Some((at, stats)) = cached.as_ref()
        && at.elapsed() < QUEUE_STATS_TTL
    {
        return Some(stats.clone());
    }
    let stats = app.store.queue_stats().await.ok()?;
    *cached = Some((std::time::Instant::now(), stats.clone()));
    Some(stats)
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "Operations",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String),
    )
)]
async fn metrics(State(app): State<Arc<App>>) -> Response {
    if app.rt.metrics_listen.is_some() {
        return super::error::ApiError::not_found(
            "Metrics are served on the metrics address ([server] metrics_listen).",
        )
        .with_code("unknown_route")
        .into_response();
    }
    render(&app).await
}

/// `/metrics` alone, for `[server] metrics_listen`.
pub fn own_router(app: Arc<App>) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(|State(app): State<Arc<App>>| async move { render(&app).await }))
        .with_state(app)
}

async fn render(app: &App) -> Response {
    let mut text = crate::stats::handle().map(|h| h.render()).unwrap_or_default();
    let _ = writeln!(text, "# HELP imagegate_queue_tasks Tasks queued or running, by lane and state.");
    let _ = writeln!(text, "# TYPE imagegate_queue_tasks gauge");
    let _ = writeln!(text, "# HELP imagegate_queue_oldest_age_seconds Age of the oldest task in each lane and state.");
    let _ = writeln!(text, "# TYPE imagegate_queue_oldest_age_seconds gauge");
    let mut seen = Vec::new();
    if let Some(stats) = queue_stats(app).await {
        for s in stats {
            let (lane, status) = (lane_name(s.lane), s.status.as_str());
            let age = (now_millis() - s.oldest_created_ms).max(0) as f64 / 1000.0;
            let _ = writeln!(text, "imagegate_queue_tasks{{lane=\"{lane}\",state=\"{status}\"}} {}", s.count);
            let _ = writeln!(text, "imagegate_queue_oldest_age_seconds{{lane=\"{lane}\",state=\"{status}\"}} {age:.3}");
            seen.push((lane, status.to_string()));
        }
    }
    // An empty lane reads 0 rather than vanishing.
    for lane in ["realtime", "batch", "upstream_batch"] {
        for status in ["queued", "running"] {
            if !seen.iter().any(|(l, s)| *l == lane && s == status) {
                let _ = writeln!(text, "imagegate_queue_tasks{{lane=\"{lane}\",state=\"{status}\"}} 0");
            }
        }
    }
    let _ = writeln!(text, "# HELP imagegate_channel_state Each upstream channel's state (1 for the current one).");
    let _ = writeln!(text, "# TYPE imagegate_channel_state gauge");
    for router in app.providers.routers() {
        for c in &router.channels {
            let now = c.state();
            for state in [ChannelState::Healthy, ChannelState::RateLimited, ChannelState::Open, ChannelState::Disabled]
            {
                let _ = writeln!(
                    text,
                    "imagegate_channel_state{{channel=\"{}\",state=\"{}\"}} {}",
                    c.spec.name.replace(['"', '\\', '\n'], "_"),
                    state.as_str(),
                    u8::from(state == now)
                );
            }
        }
    }
    let mut resp = text.into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    resp
}
