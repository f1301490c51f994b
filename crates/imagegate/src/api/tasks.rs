//! `GET /v1/tasks/{id}`, `GET /v1/tasks`: the durable record of every request.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

use super::auth::Caller;
use super::error::ApiError;
use super::openai::with_task_header;
use crate::app::App;
use crate::domain::ids;
use crate::domain::task::TaskStatus;
use crate::store::TaskRecord;

pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/v1/tasks", axum::routing::get(list_tasks))
        .route("/v1/tasks/{id}", axum::routing::get(get_task))
}

/// The task object of API.md.
pub fn task_json(_app: &App, t: &TaskRecord) -> Value {
    let secs = |ms: Option<i64>| ms.map(|m| m / 1000);
    let error = t
        .error
        .as_ref()
        .map(|e| json!({"code": e["code"], "message": e["message"], "type": e["type"]}));
    json!({
        "id": t.id,
        "object": "image.task",
        "status": t.status.as_str(),
        "mode": t.mode.as_str(),
        "model": t.model,
        "created_at": t.created_at_ms / 1000,
        "started_at": secs(t.started_at_ms),
        "completed_at": secs(t.completed_at_ms),
        "request": request_view(&t.request),
        "result": t.result,
        "error": error,
        "attempts": t.attempts,
    })
}

/// The request as the client sees it (the stored form also keeps the resolved upstream model).
fn request_view(stored: &Value) -> Value {
    let mut v = stored.clone();
    if let Some(obj) = v.as_object_mut() {
        obj.remove("upstream_model");
        obj.remove("model");
    }
    v
}

pub async fn get_task(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found =
        || ApiError::not_found(format!("No task found with id '{id}'.")).with_param("id");
    if !ids::looks_like(&id, "task_") {
        return Err(not_found());
    }
    let task = app
        .store
        .get_task(&key.id, &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(with_task_header(
        axum::Json(task_json(&app, &task)).into_response(),
        &task.id,
    ))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

pub async fn list_tasks(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Query(q): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                "invalid_value",
                format!(
                    "Invalid status '{s}'. Use queued, running, completed, failed or cancelled."
                ),
            )
            .with_param("status")
        })?),
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => 20,
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=100).contains(l))
            .ok_or_else(|| {
                ApiError::bad_request("invalid_value", "'limit' must be an integer from 1 to 100.")
                    .with_param("limit")
            })?,
    };
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    if let Some(a) = after
        && !ids::looks_like(a, "task_")
    {
        return Err(
            ApiError::bad_request("invalid_value", "'after' must be a task id.")
                .with_param("after"),
        );
    }
    let mut tasks = app
        .store
        .list_tasks(&key.id, status, after, limit + 1)
        .await?;
    let has_more = tasks.len() > limit as usize;
    tasks.truncate(limit as usize);
    let data: Vec<Value> = tasks.iter().map(|t| task_json(&app, t)).collect();
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "first_id": tasks.first().map(|t| &t.id),
        "last_id": tasks.last().map(|t| &t.id),
        "has_more": has_more,
    })))
}
