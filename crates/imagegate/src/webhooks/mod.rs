//! SEAM webhooks: durable, signed, at-least-once delivery of task events to customer URLs.
//!
//! Its own seam because it has its own failure model (a customer down for hours: a retry
//! schedule measured in hours), its own security boundary (SSRF: the guarded client of
//! `crate::egress`) and its own spec (Standard Webhooks: `sign`). Messages are written to the store's outbox in the same
//! transaction as the task change they announce; the `outbox` loop delivers them.

pub mod outbox;
pub mod schedule;
pub mod sign;

use serde_json::json;

use crate::domain::task::TaskStatus;
use crate::store::{NewWebhook, TaskRecord};
use crate::task_view;

/// Event names a task may subscribe to.
pub const EVENTS: [&str; 4] = ["started", "completed", "failed", "cancelled"];
/// Subscribed when `webhook_events` is not given.
pub const DEFAULT_EVENTS: [&str; 3] = ["completed", "failed", "cancelled"];

/// The webhook a task owes in its current state, if it subscribed to it.
pub fn event_for(task: &TaskRecord) -> Option<NewWebhook> {
    let target = task.webhook.as_ref()?;
    let event = match task.status {
        TaskStatus::Running => "started",
        TaskStatus::Completed => "completed",
        TaskStatus::Failed => "failed",
        TaskStatus::Cancelled => "cancelled",
        TaskStatus::Queued => return None,
    };
    if !target.events.iter().any(|e| e == event) {
        return None;
    }
    let event_type = format!("task.{event}");
    let timestamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let payload = json!({"type": event_type, "timestamp": timestamp, "data": task_view::task_object(task, None)});
    Some(NewWebhook {
        id: format!("msg_{}", ulid::Ulid::new()),
        event_type,
        url: target.url.clone(),
        payload: payload.to_string(),
    })
}
