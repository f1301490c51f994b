//! The OpenAI-compatible surface: `/v1/images/generations`, `/v1/images/edits`, `/v1/files`,
//! `/v1/batches`, `/v1/models`.

mod batches;
pub(crate) mod body;
pub(crate) mod edits;
pub mod files;
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
    let files = Router::new()
        .route("/v1/files", post(files::create_file).get(files::list_files))
        .route("/v1/files/{id}", get(files::get_file).delete(files::delete_file))
        .route("/v1/files/{id}/content", get(files::file_content))
        .route_layer(DefaultBodyLimit::max(files::MAX_FILE_BYTES as usize + 1024 * 1024));
    Router::new()
        .merge(with_inputs)
        .merge(files)
        .route("/v1/batches", post(batches::create_batch).get(batches::list_batches))
        .route("/v1/batches/{id}", get(batches::get_batch))
        .route("/v1/batches/{id}/cancel", post(batches::cancel_batch))
        .route("/v1/models", get(models::list_models))
        .route("/v1/models/{id}", get(models::get_model))
}
