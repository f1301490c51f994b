//! The OpenAI-compatible surface: `/v1/images/generations`, `/v1/images/edits`, `/v1/models`.

pub(crate) mod body;
mod edits;
pub(crate) mod images;
pub use images::with_task_header;
mod models;
mod stream;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use std::sync::Arc;

use crate::app::App;

/// `input_body_limit`: the body limit of the routes that take input images.
pub fn routes(input_body_limit: usize) -> Router<Arc<App>> {
    let with_inputs = Router::new()
        .route("/v1/images/generations", post(images::create_image))
        .route("/v1/images/generations/async", post(images::create_image_async))
        .route("/v1/images/edits", post(edits::edit_image))
        .route("/v1/images/edits/async", post(edits::edit_image_async))
        .route_layer(DefaultBodyLimit::max(input_body_limit));
    Router::new()
        .merge(with_inputs)
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{id}", get(models::get_model))
}
