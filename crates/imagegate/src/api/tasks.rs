//! `/v1/tasks`: the durable record of every request — get, list, cancel, live events, and the
//! webhook delivery log.

use crate::api::extract::{Path, Query};
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use super::auth::Caller;
use super::error::ApiError;
use super::openai::with_task_header;
use crate::api::openapi::schemas as doc;
use crate::api::watch::Watched;
use crate::app::App;
use crate::domain::task::TaskStatus;
use crate::domain::{ids, now_millis};
use crate::store::{CancelOutcome, TaskRecord};
use crate::task_view::{task_object, with_exports, with_inputs};
use crate::webhooks;

pub fn routes() -> utoipa_axum::router::OpenApiRouter<Arc<App>> {
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::new()
        .routes(routes!(list_tasks))
        .routes(routes!(get_task))
        .routes(routes!(cancel_task))
        .routes(routes!(task_events))
        .routes(routes!(list_webhook_deliveries))
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("No task found with id '{id}'.")).with_param("id")
}

/// The owner's task, or 404 (also for another owner's task: existence is not revealed).
async fn load(app: &App, owner: &str, id: &str) -> Result<TaskRecord, ApiError> {
    if !ids::looks_like(id, "task_") {
        return Err(not_found(id));
    }
    app.store.get_task(owner, id).await?.ok_or_else(|| not_found(id))
}

/// The task object with `queue_position` when queued.
async fn render(app: &App, task: &TaskRecord) -> Result<Value, ApiError> {
    let position = if task.status == TaskStatus::Queued { Some(app.store.queue_position(task).await?) } else { None };
    let mut v = task_object(task, position);
    app.urls.refresh_task(&mut v).await;
    if task.status == TaskStatus::Completed {
        let exports = app.store.task_exports(&task.owner, std::slice::from_ref(&task.id)).await?;
        with_exports(&mut v, &exports);
    }
    if crate::task_view::has_inputs(&v) {
        let inputs = app.store.task_inputs(&task.owner, &task.id).await?;
        with_inputs(&mut v, &inputs);
    }
    Ok(v)
}

#[utoipa::path(
    get,
    path = "/v1/tasks/{id}",
    tag = "Tasks",
    summary = "Get a task",
    description = "Status, request, result and error, even if the client went away.",
    params(("id" = String, Path, description = "`task_…`")),
    responses(
        (status = 200, description = "The task", body = doc::tasks::Task, headers(("imagegate-task-id" = String, description = "The id of the task that holds this request"))),
        doc::common::KeyErrors,
    )
)]
pub async fn get_task(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let task = load(&app, &key.id, &id).await?;
    Ok(with_task_header(axum::Json(render(&app, &task).await?).into_response(), &task.id))
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
    after: Option<String>,
}

#[utoipa::path(
    get,
    path = "/v1/tasks",
    tag = "Tasks",
    summary = "List the key's tasks",
    description = "Newest first, every surface and mode.",
    params(
        ("status" = Option<String>, Query, description = "`queued`, `running`, `completed`, `failed` or `cancelled`"),
        ("limit" = Option<u32>, Query, description = "1 to 100 (default 20)"),
        ("after" = Option<String>, Query, description = "A task id: the page after it"),
    ),
    responses(
        (status = 200, description = "A page of tasks", body = doc::tasks::TaskList),
        doc::common::KeyErrors,
    )
)]
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
                format!("Invalid status '{s}'. Use queued, running, completed, failed or cancelled."),
            )
            .with_param("status")
        })?),
    };
    let limit = match q.limit.as_deref() {
        None | Some("") => 20,
        Some(s) => s.parse::<u32>().ok().filter(|l| (1..=100).contains(l)).ok_or_else(|| {
            ApiError::bad_request("invalid_value", "'limit' must be an integer from 1 to 100.").with_param("limit")
        })?,
    };
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    if let Some(a) = after
        && !ids::looks_like(a, "task_")
    {
        return Err(ApiError::bad_request("invalid_value", "'after' must be a task id.").with_param("after"));
    }
    let mut tasks = app.store.list_tasks(&key.id, status, after, limit + 1).await?;
    let has_more = tasks.len() > limit as usize;
    tasks.truncate(limit as usize);
    let ids: Vec<String> = tasks.iter().filter(|t| t.status == TaskStatus::Completed).map(|t| t.id.clone()).collect();
    let exports = app.store.task_exports(&key.id, &ids).await?;
    let mut data = Vec::with_capacity(tasks.len());
    for t in &tasks {
        let mut v = task_object(t, None);
        app.urls.refresh_task(&mut v).await;
        let mine: Vec<_> = exports.iter().filter(|e| e.task_id == t.id).cloned().collect();
        with_exports(&mut v, &mine);
        // Only tasks given images read their inputs (one short read each).
        if crate::task_view::has_inputs(&v) {
            with_inputs(&mut v, &app.store.task_inputs(&key.id, &t.id).await?);
        }
        data.push(v);
    }
    Ok(axum::Json(json!({
        "object": "list",
        "data": data,
        "first_id": tasks.first().map(|t| &t.id),
        "last_id": tasks.last().map(|t| &t.id),
        "has_more": has_more,
    })))
}

/// queued → cancelled at once; running → the upstream calls are aborted and the task ends
/// cancelled; ended → 409.
#[utoipa::path(
    post,
    path = "/v1/tasks/{id}/cancel",
    tag = "Tasks",
    summary = "Cancel a task",
    description = "Queued: cancelled at once. Running: the upstream call is aborted. Ended: 409. Cancelled tasks are refunded.",
    params(("id" = String, Path, description = "`task_…`")),
    responses(
        (status = 200, description = "The task, cancelled", body = doc::tasks::Task),
        (status = 409, description = "The task has already ended", body = doc::common::Error),
        doc::common::KeyErrors,
    )
)]
pub async fn cancel_task(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if !ids::looks_like(&id, "task_") {
        return Err(not_found(&id));
    }
    let outcome = app.store.request_cancel(&key.id, &id, now_millis(), webhooks::event_for).await?;
    let task = match outcome {
        CancelOutcome::NotFound => return Err(not_found(&id)),
        CancelOutcome::AlreadyEnded(t) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "task_already_finished",
                format!("The task has already ended ({}); it cannot be cancelled.", t.status),
            )
            .with_task(&t.id));
        }
        CancelOutcome::Cancelled(t) => {
            app.workers.signals.finish(&t.id, Some(t.clone().into()));
            app.deliverer.notify();
            t
        }
        CancelOutcome::Requested(t) => {
            let mut changes = app.workers.signals.subscribe(&t.id);
            app.workers.cancel_local(&t.id);
            // Wait briefly for the worker (here, or on another replica at its next heartbeat).
            let deadline = tokio::time::Instant::now() + app.rt.lease.min(Duration::from_secs(10));
            loop {
                let current = load(&app, &key.id, &id).await?;
                if current.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                    break current;
                }
                tokio::select! {
                    _ = changes.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
            }
        }
    };
    Ok(with_task_header(axum::Json(render(&app, &task).await?).into_response(), &task.id))
}

/// Server-Sent Events: one event per status change (`task.queued`, `task.running`,
/// `task.completed`, …) with the task object as data; the terminal one last, then the stream
/// closes. A client that connects after the end gets the final state at once.
#[utoipa::path(
    get,
    path = "/v1/tasks/{id}/events",
    tag = "Tasks",
    summary = "Stream a task's events",
    description = "Server-sent events: `task.queued`, `task.running`, `task.partial_image` (drafts), then `task.completed`, `task.failed` or `task.cancelled`, each with the task.",
    params(("id" = String, Path, description = "`task_…`")),
    responses(
        (status = 200, description = "An event stream", content_type = "text/event-stream", body = doc::common::ServerSentEvent),
        doc::common::KeyErrors,
    )
)]
pub async fn task_events(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let first = load(&app, &key.id, &id).await?;
    let stream = events(app, key.id, first);
    Ok(with_task_header(
        Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response(),
        &id,
    ))
}

fn events(app: Arc<App>, owner: String, first: TaskRecord) -> impl Stream<Item = Result<Event, Infallible>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(8);
    tokio::spawn(async move {
        let task_id = first.id.clone();
        // As long as the client listens: the task's own deadline is not this stream's.
        let mut watched = crate::api::watch::start(app.clone(), owner, first, Duration::from_secs(7 * 86_400)).await;
        while let Some(w) = watched.recv().await {
            let (event, end) = match w {
                Watched::Status(task) => (sse_event(&app, &task).await, false),
                Watched::Draft(p) => (partial_event(&task_id, &p), false),
                Watched::End(ended) => (sse_event(&app, &ended.task).await, true),
                Watched::TimedOut(_) => return,
            };
            if tx.send(event).await.is_err() || end {
                return; // the client went away, or the task ended
            }
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok(e), rx)) })
}

/// A draft of one of the task's images: `task.partial_image` with its URL.
fn partial_event(task_id: &str, p: &crate::worker::Preview) -> Event {
    let data = json!({
        "task_id": task_id,
        "image_index": p.index,
        "partial_image_index": p.number,
        "url": p.url,
        "content_type": p.content_type,
    });
    Event::default().event("task.partial_image").id(format!("partial-{}-{}", p.index, p.number)).data(data.to_string())
}

async fn sse_event(app: &App, task: &TaskRecord) -> Event {
    let mut v = task_object(task, None);
    app.urls.refresh_task(&mut v).await;
    Event::default().event(format!("task.{}", task.status)).id(task.status.as_str()).data(v.to_string())
}

/// Each webhook delivery attempt for the task: time, url, HTTP status or error, latency.
#[utoipa::path(
    get,
    path = "/v1/tasks/{id}/webhook-deliveries",
    tag = "Tasks",
    summary = "A task's webhook attempts",
    params(("id" = String, Path, description = "`task_…`")),
    responses(
        (status = 200, description = "Every attempt: when, where, the answer or the error", body = doc::tasks::WebhookDeliveryList),
        doc::common::KeyErrors,
    )
)]
pub async fn list_webhook_deliveries(
    State(app): State<Arc<App>>,
    Caller(key): Caller,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    if !ids::looks_like(&id, "task_") {
        return Err(not_found(&id));
    }
    let attempts = app.store.list_attempts(&key.id, &id).await?.ok_or_else(|| not_found(&id))?;
    let data: Vec<Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "object": "webhook.delivery",
                "webhook_id": a.message_id,
                "event": a.event_type,
                "url": a.url,
                "attempted_at": a.attempted_at_ms / 1000,
                "status_code": a.status_code,
                "error": a.error,
                "latency_ms": a.latency_ms,
                "success": a.status_code.is_some_and(|c| (200..300).contains(&c)),
            })
        })
        .collect();
    Ok(axum::Json(json!({"object": "list", "data": data})))
}
