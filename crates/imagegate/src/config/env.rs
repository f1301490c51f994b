//! The fixed environment names of API.md, applied over the file values.

use anyhow::{Result, bail};

use super::{Config, Secret};

/// Applies the environment (`get` reads one variable) onto `config`.
pub fn apply(config: &mut Config, get: impl Fn(&str) -> Option<String>) -> Result<()> {
    if let Some(v) = get("IMAGEGATE_LISTEN") {
        config.server.listen = v;
    }
    if let Some(v) = get("IMAGEGATE_METRICS_LISTEN") {
        config.server.metrics_listen = v;
    }
    if let Some(v) = get("IMAGEGATE_PUBLIC_URL") {
        config.server.public_url = v;
    }
    if let Some(v) = get("IMAGEGATE_ADMIN_TOKEN") {
        config.server.admin_token = Secret::new(v);
    }
    if let Some(v) = get("IMAGEGATE_SECRET_KEY") {
        config.server.secret_key = Secret::new(v);
    }
    if let Some(v) = get("IMAGEGATE_DATA_DIR") {
        config.storage.data_dir = v.into();
    }
    if let Some(v) = get("IMAGEGATE_DATABASE_URL") {
        config.storage.database_url = v;
    }
    if let Some(v) = get("IMAGEGATE_WORKERS") {
        config.worker.concurrency =
            v.trim().parse().map_err(|_| anyhow::anyhow!("IMAGEGATE_WORKERS must be a number"))?;
    }
    if let Some(v) = get("IMAGEGATE_STORAGE_URL") {
        config.storage.storage_url = v;
    }
    if let Some(v) = get("GEMINI_API_KEY") {
        config.providers.gemini.api_key = Secret::new(v);
    }
    if let Some(v) = get("IMAGEGATE_GEMINI_BASE_URL") {
        config.providers.gemini.base_url = v;
    }
    if let Some(v) = get("IMAGEGATE_OPENAI_BASE_URL") {
        config.providers.openai_compat.base_url = v;
    }
    if let Some(v) = get("IMAGEGATE_UPSTREAM_PROXY") {
        config.providers.proxy = v;
    }
    if let Some(v) = get("IMAGEGATE_SHARED_FOLDER") {
        config.storage.shared_folder = match v.as_str() {
            "1" | "true" => true,
            "0" | "false" | "" => false,
            _ => bail!("IMAGEGATE_SHARED_FOLDER must be 0 or 1"),
        };
    }
    if let Some(v) = get("IMAGEGATE_WEBHOOK_ALLOW_PRIVATE") {
        config.webhooks.allow_private = match v.as_str() {
            "1" | "true" => true,
            "0" | "false" | "" => false,
            _ => bail!("IMAGEGATE_WEBHOOK_ALLOW_PRIVATE must be 0 or 1"),
        };
    }
    if let Some(v) = get("IMAGEGATE_BATCH_UPSTREAM") {
        config.batch.upstream = match v.as_str() {
            "1" | "true" => true,
            "0" | "false" | "" => false,
            _ => bail!("IMAGEGATE_BATCH_UPSTREAM must be 0 or 1"),
        };
    }
    if let Some(v) = get("IMAGEGATE_INPUTS_ALLOW_PRIVATE") {
        config.inputs.allow_private_urls = match v.as_str() {
            "1" | "true" => true,
            "0" | "false" | "" => false,
            _ => bail!("IMAGEGATE_INPUTS_ALLOW_PRIVATE must be 0 or 1"),
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_names_override_the_file() {
        let mut c: Config = toml::from_str(super::super::DEFAULT_TOML).unwrap();
        let env = |k: &str| match k {
            "IMAGEGATE_LISTEN" => Some("127.0.0.1:9999".to_string()),
            "GEMINI_API_KEY" => Some("k1,k2".to_string()),
            "IMAGEGATE_GEMINI_BASE_URL" => Some("http://127.0.0.1:1/".to_string()),
            _ => None,
        };
        apply(&mut c, env).unwrap();
        let r = c.runtime().unwrap();
        assert_eq!(r.listen.port(), 9999);
        assert_eq!(r.gemini_keys.len(), 2);
        assert_eq!(r.gemini_base_url, "http://127.0.0.1:1");
    }
}
