//! `imagegate serve`.

use anyhow::Result;

use crate::config::Config;

pub async fn run(config: Config) -> Result<()> {
    let rt = config.runtime()?;
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
    shutdown_signal().await;
    server.shutdown();
    server.wait().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
