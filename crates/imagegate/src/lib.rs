//! imagegate: a self-hostable image-generation gateway.
//!
//! The folder tree is the architecture: `domain` (pure rules), and one module per seam —
//! `providers` (upstreams), `store` (tasks, queue, keys), `blobs` (image bytes), `worker`
//! (claim → generate → store → finish), `api` (HTTP), `cli`.

pub mod api;
pub mod app;
pub mod batches;
pub mod blobs;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod egress;
pub mod flush;
pub mod http;
pub mod imaging;
pub mod inputs;
pub mod keys;
pub mod outbox;
pub mod providers;
pub mod replicas;
pub mod sealing;
pub mod stats;
pub mod store;
pub mod task_view;
pub mod telemetry;
pub mod webhooks;
pub mod worker;

/// Installs the process-wide rustls crypto provider (ring) once; every HTTP client needs it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
