//! The OpenAI-compatible surface: `/v1/images/generations`, `/v1/models`.

mod images;
pub use images::with_task_header;
mod models;

use axum::Router;
use axum::routing::{get, post};
use std::sync::Arc;

use crate::app::App;

pub fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/images/generations", post(images::create_image))
        .route("/v1/images/generations/async", post(images::create_image_async))
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{id}", get(models::get_model))
}
