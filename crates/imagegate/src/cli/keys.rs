//! `imagegate keys create|list|revoke`: key management straight on the database, so the first
//! key can be made before any admin token exists.

use anyhow::{Result, bail};
use clap::Subcommand;

use crate::config::Config;
use crate::domain::now_secs;

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
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key by id (key_…); requests with it get 401 at once.
    Revoke { id: String },
}

pub async fn run(config: Config, cmd: KeysCommand) -> Result<()> {
    let rt = config.runtime()?;
    std::fs::create_dir_all(&rt.data_dir).ok();
    let store = crate::store::open(&rt.database_url).await?;
    match cmd {
        KeysCommand::Create { name, quiet } => {
            let (record, secret) = crate::keys::issue(store.as_ref(), &name).await?;
            if quiet {
                println!("{secret}");
            } else {
                println!("Created key {} ({})", record.id, if name.is_empty() { "no name" } else { &name });
                println!();
                println!("    {secret}");
                println!();
                println!("Store it now: it is shown only once. Use it as 'Authorization: Bearer <key>'.");
            }
        }
        KeysCommand::List => {
            let keys = store.list_keys().await?;
            if keys.is_empty() {
                println!("no keys; create one with `imagegate keys create --name NAME`");
            }
            for k in keys {
                let state = if k.revoked_at.is_some() { "revoked" } else { "active" };
                println!("{}  {}…  {:8}  {}", k.id, k.prefix, state, k.name);
            }
        }
        KeysCommand::Revoke { id } => {
            if !store.revoke_key(&id, now_secs()).await? {
                bail!("no key with id {id}");
            }
            println!("revoked {id}");
        }
    }
    Ok(())
}
