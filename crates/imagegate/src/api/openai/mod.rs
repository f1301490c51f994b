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

use axum::extract::DefaultBodyLimit;
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;

/// `input_body_limit`: the body limit of the routes that take input images.
pub fn routes(input_body_limit: usize) -> OpenApiRouter<Arc<App>> {
    let with_inputs = OpenApiRouter::new()
        .routes(routes!(images::create_image))
        .routes(routes!(images::create_image_async))
        .routes(routes!(edits::edit_image))
        .routes(routes!(edits::edit_image_async))
        .route_layer(DefaultBodyLimit::max(input_body_limit));
    let files = OpenApiRouter::new()
        .routes(routes!(files::create_file, files::list_files))
        .routes(routes!(files::get_file, files::delete_file))
        .routes(routes!(files::file_content))
        .route_layer(DefaultBodyLimit::max(files::MAX_FILE_BYTES as usize + 1024 * 1024));
    OpenApiRouter::new()
        .merge(with_inputs)
        .merge(files)
        .routes(routes!(batches::create_batch, batches::list_batches))
        .routes(routes!(batches::get_batch))
        .routes(routes!(batches::cancel_batch))
        .routes(routes!(models::list_models))
        .routes(routes!(models::get_model))
}
