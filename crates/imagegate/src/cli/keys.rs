//! `imagegate keys create|list|revoke`: key management straight on the database, so the first
//! key can be made before any admin token exists.

use super::outln;
use anyhow::{Result, bail};
use clap::Subcommand;

use crate::config::Config;
use crate::domain::now_secs;
use crate::domain::policy::KeyPolicy;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it (shown once; only its hash is stored).
    Create {
        /// A label for the key (e.g. the app or customer it is for).
        #[arg(long, default_value = "")]
        name: String,
        /// Print only the key, for scripts: KEY=$(imagegate keys create --quiet).
        #[arg(long, short)]
        quiet: bool,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id (key_…); requests with it get 401 at once.
    Revoke { id: String },
}

/// The same policy fields as `PATCH /admin/v1/keys/{id}`.
#[derive(Debug, clap::Args)]
pub struct PolicyArgs {
    /// How long this key's images are kept, e.g. 30d.
    #[arg(long)]
    retention: Option<String>,
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u32>,
    /// Tasks queued or running at once.
    #[arg(long)]
    max_concurrency: Option<u32>,
    /// Images per UTC day.
    #[arg(long)]
    daily_images: Option<u32>,
    /// Total spend allowed, in USD.
    #[arg(long)]
    budget_usd: Option<f64>,
    /// Models this key may use, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    models: Option<Vec<String>>,
}

impl PolicyArgs {
    fn to_policy(&self) -> Result<KeyPolicy> {
        let mut patch = serde_json::Map::new();
        let mut put = |k: &str, v: serde_json::Value| {
            patch.insert(k.to_string(), v);
        };
        if let Some(v) = &self.retention {
            put("retention", v.clone().into());
        }
        if let Some(v) = self.rpm {
            put("rpm", v.into());
        }
        if let Some(v) = self.max_concurrency {
            put("max_concurrency", v.into());
        }
        if let Some(v) = self.daily_images {
            put("daily_images", v.into());
        }
        if let Some(v) = self.budget_usd {
            put("budget_usd", v.into());
        }
        if let Some(v) = &self.models {
            put("models", v.clone().into());
        }
        let mut policy = KeyPolicy::default();
        policy.apply(&patch).map_err(|(field, message)| anyhow::anyhow!("--{}: {message}", field.replace('_', "-")))?;
        Ok(policy)
    }
}

pub async fn run(config: Config, cmd: KeysCommand) -> Result<()> {
    let rt = config.runtime()?;
    std::fs::create_dir_all(&rt.data_dir).ok();
    let store = crate::store::open_with(&rt.store_options()).await?;
    match cmd {
        KeysCommand::Create { name, quiet, policy } => {
            let policy = policy.to_policy()?;
            let (record, secret) = crate::keys::issue(store.as_ref(), &name).await?;
            if policy != KeyPolicy::default() {
                store.set_key_policy(&record.id, &policy).await?;
            }
            if quiet {
                outln!("{secret}");
            } else {
                outln!("Created key {} ({})", record.id, if name.is_empty() { "no name" } else { &name });
                outln!();
                outln!("    {secret}");
                outln!();
                outln!("Store it now: it is shown only once. Use it as 'Authorization: Bearer <key>'.");
            }
        }
        KeysCommand::List => {
            let keys = store.list_keys().await?;
            if keys.is_empty() {
                outln!("no keys; create one with `imagegate keys create --name NAME`");
            }
            for k in keys {
                let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                outln!("{}  {}…  {:8}  {}", k.id, k.prefix, state, k.name);
            }
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_key(&id, now_secs()).await? {
                bail!("no key with id {id}");
            }
            outln!("revoked {id}");
        }
    }
    Ok(())
}
