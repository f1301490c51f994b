//! Logging: human-readable by default, JSON with `IMAGEGATE_LOG_FORMAT=json`; filter with
//! `RUST_LOG` (default `info`). Secrets never reach the log: config secrets redact themselves
//! and request headers are not logged.

use tracing_subscriber::{EnvFilter, fmt};

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn"));
    let json = std::env::var("IMAGEGATE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
