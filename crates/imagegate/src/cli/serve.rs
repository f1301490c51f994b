//! `imagegate serve`.

use anyhow::Result;

use crate::config::Config;

pub async fn run(config: Config) -> Result<()> {
    let rt = config.runtime()?;
    // The handlers are in place before the server answers anything: a SIGTERM that arrives as
    // soon as /healthz answers (a supervisor's rolling restart) drains instead of killing.
    let stop = Stop::listen();
    let server = crate::app::start(rt).await?;
    let app = &server.app;
    if !app.providers.is_simulated() && app.providers.summary().contains("simulated") {
        tracing::warn!(providers = app.providers.summary(), "some models are served by the SIMULATED provider");
    }
    if app.providers.is_simulated() {
        tracing::warn!(
            "NO UPSTREAM KEY CONFIGURED: every model is served by the built-in SIMULATED provider \
             (generated test images, no cost). Set GEMINI_API_KEY to use Gemini."
        );
    }
    tracing::info!(
        addr = %server.addr,
        public_url = %app.rt.public_url,
        database = %crate::config::redact_url(&app.rt.database_url),
        storage = %app.rt.storage_url,
        provider = app.providers.summary(),
        admin_api = app.rt.admin_token.is_some(),
        "imagegate is listening"
    );
    tracing::info!("dashboard at http://{}/ui, API docs at http://{}/docs", server.addr, server.addr);
    stop.wait().await;
    server.shutdown();
    server.wait().await;
    Ok(())
}

/// SIGTERM or SIGINT, listened for from creation.
struct Stop {
    #[cfg(unix)]
    signals: Option<(tokio::signal::unix::Signal, tokio::signal::unix::Signal)>,
}

impl Stop {
    fn listen() -> Stop {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Stop { signals: signal(SignalKind::terminate()).ok().zip(signal(SignalKind::interrupt()).ok()) }
        }
        #[cfg(not(unix))]
        Stop {}
    }

    async fn wait(self) {
        #[cfg(unix)]
        if let Some((mut term, mut int)) = self.signals {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
