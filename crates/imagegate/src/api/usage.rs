//! `GET /v1/usage` (the key's images and cost by day and model) and `GET /admin/v1/usage`.

use crate::api::extract::Query;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use super::auth::{Admin, Caller};
use super::error::ApiError;
use crate::api::openapi::schemas as doc;
use crate::app::App;
use crate::domain::pricing::round6;
use crate::domain::{now_secs, utc_day};
use crate::store::UsageRow;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    utoipa_axum::router::OpenApiRouter::new()
        .routes(utoipa_axum::routes!(key_usage))
        .routes(utoipa_axum::routes!(all_usage))
}

#[derive(Debug, Deserialize)]
pub struct UsageQuery {
    days: Option<String>,
}

fn since(q: &UsageQuery) -> Result<String, ApiError> {
    let days = match q.days.as_deref() {
        None | Some("") => 30,
        Some(d) => d.parse::<i64>().ok().filter(|d| (1..=366).contains(d)).ok_or_else(|| {
            ApiError::bad_request("invalid_value", "'days' must be an integer from 1 to 366.").with_param("days")
        })?,
    };
    Ok(utc_day(now_secs() - (days - 1) * 86_400))
}

fn rows_json(rows: &[UsageRow], with_key: bool) -> (Vec<Value>, i64, f64) {
    let data = rows
        .iter()
        .filter(|r| r.images != 0 || r.cost_usd != 0.0)
        .map(|r| {
            let mut v = json!({"date": r.day, "model": r.model, "images": r.images, "cost_usd": round6(r.cost_usd)});
            if with_key {
                v["key_id"] = json!(r.owner);
            }
            v
        })
        .collect();
    let images = rows.iter().map(|r| r.images).sum();
    let cost = round6(rows.iter().map(|r| r.cost_usd).sum());
    (data, images, cost)
}

#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "Usage",
    summary = "The key's usage",
    description = "Images and cost by day and model; spend and budget.",
    params(("days" = Option<u32>, Query, description = "How many days back, 1 to 366 (default 30)")),
    responses(
        (status = 200, description = "Usage", body = doc::tasks::UsageReport),
        doc::common::KeyErrors,
    )
)]
async fn key_usage(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Query(q): Query<UsageQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let rows = app.store.usage(Some(&key.id), &since(&q)?).await?;
    let (data, images, cost) = rows_json(&rows, false);
    // The caller's record may be a second old (see `crate::keys`); spend must be current.
    let key = app.store.get_key(&key.id).await?.unwrap_or(key);
    let policy = app.rt.policy_for(&key.policy);
    Ok(axum::Json(json!({
        "object": "usage",
        "data": data,
        "total_images": images,
        "total_cost_usd": cost,
        "spent_usd": round6(key.spent_usd),
        "reserved_usd": round6(key.reserved_usd),
        "budget_usd": policy.budget_usd,
        "daily_images": policy.daily_images,
    })))
}

#[utoipa::path(
    get,
    path = "/admin/v1/usage",
    tag = "Admin",
    summary = "Every key's usage",
    params(("days" = Option<u32>, Query, description = "How many days back, 1 to 366 (default 30)")),
    responses(
        (status = 200, description = "Usage by day, model and key", body = doc::tasks::UsageReport),
        doc::common::AdminErrors,
    )
)]
async fn all_usage(
    State(app): State<Arc<App>>,
    _admin: Admin,
    Query(q): Query<UsageQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let rows = app.store.usage(None, &since(&q)?).await?;
    let (data, images, cost) = rows_json(&rows, true);
    Ok(axum::Json(json!({"object": "usage", "data": data, "total_images": images, "total_cost_usd": cost})))
}
