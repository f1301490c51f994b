//! Black-box API tests: one binary; each file is a feature. Servers run on 127.0.0.1:0 with a
//! fresh database and folder, against fake upstreams from `imagegate-fakes`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod admin_and_auth;
mod async_tasks;
mod batches;
mod batches_upstream;
mod blob_conformance;
mod database_outage;
mod durability;
mod errors;
mod export;
mod files;
mod flex;
mod gemini_surface;
mod gemini_wire;
mod generation;
mod idempotency;
mod image_edits;
mod image_inputs;
mod image_serving;
mod limits;
mod metrics;
mod openai_compat;
mod previews;
mod process;
mod replicas;
mod resilience;
mod server_limits;
mod store_conformance;
mod tasks;
mod webhooks;
