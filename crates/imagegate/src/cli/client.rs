//! The CLI's side of the HTTP API: any imagegate, reached at `--url` / `IMAGEGATE_URL` with
//! `--api-key` / `IMAGEGATE_API_KEY`. Progress goes to stderr, only when it is a terminal.

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::Value;
use std::io::IsTerminal;

#[derive(Debug, Args, Clone)]
pub struct Remote {
    /// The gateway's base URL.
    #[arg(long, env = "IMAGEGATE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    pub url: String,
    /// An API key of that gateway (`igk_…`).
    #[arg(long, env = "IMAGEGATE_API_KEY", hide_env_values = true, global = true)]
    pub api_key: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    pub http: reqwest::Client,
    base: String,
    key: String,
    /// Progress lines on stderr (off when stderr is not a terminal).
    pub progress: bool,
}

impl Client {
    pub fn new(remote: &Remote) -> Result<Client> {
        let key = remote.api_key.clone().context("an API key is needed: --api-key or IMAGEGATE_API_KEY")?;
        let http = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10)).build()?;
        Ok(Client {
            http,
            base: remote.url.trim_end_matches('/').to_string(),
            key,
            progress: std::io::stderr().is_terminal(),
        })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).bearer_auth(&self.key)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(&self.key)
    }

    /// Sends and reads a JSON answer; an error answer becomes an error with its message.
    pub async fn json(&self, req: reqwest::RequestBuilder) -> Result<Value> {
        let resp = req.send().await.with_context(|| format!("cannot reach {}", self.base))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            bail!("{status}: {message}");
        }
        Ok(body)
    }

    pub fn note(&self, text: &str) {
        if self.progress {
            eprintln!("{text}");
        }
    }
}
