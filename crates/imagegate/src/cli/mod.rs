//! The `imagegate` command line: `serve`, `migrate`, `keys create|list|revoke`, `health`, `config print`.

mod batch;
mod client;
mod keys;
mod serve;
mod tasks;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, Overrides};

#[derive(Debug, Parser)]
#[command(
    name = "imagegate",
    version,
    about = "Self-hostable image-generation gateway: durable sync and async image tasks, URL output, Gemini and simulated providers."
)]
pub struct Cli {
    /// Configuration file (default: ./imagegate.toml if present). Environment variables override it.
    #[arg(long, global = true, env = "IMAGEGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Data folder for the embedded SQLite database and images (overrides IMAGEGATE_DATA_DIR).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (embedded default: SQLite + ./data + the simulated provider).
    Serve {
        /// Bind address, e.g. 0.0.0.0:8080 (overrides IMAGEGATE_LISTEN).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate,
    /// Manage API keys directly in the database.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Check that a gateway answers `GET /healthz` (exit 0) or not (exit 1): the container
    /// image's health check, which has no curl.
    Health {
        /// The health URL (default: /healthz on the configured listen address).
        #[arg(long)]
        url: Option<String>,
    },
    /// Generate images on a running gateway (any imagegate: --url, --api-key), with live
    /// progress, and save them.
    Generate {
        #[command(flatten)]
        remote: client::Remote,
        #[command(flatten)]
        args: tasks::GenerateArgs,
    },
    /// Generate an image per line of a file on a running gateway, N at a time, with a
    /// progress bar; run it again to resume.
    Batch {
        #[command(flatten)]
        remote: client::Remote,
        #[command(flatten)]
        args: batch::BatchArgs,
    },
    /// List, show, cancel or watch tasks on a running gateway.
    Tasks {
        #[command(flatten)]
        remote: client::Remote,
        #[command(subcommand)]
        command: tasks::TasksCommand,
    },
    /// Print the API's OpenAPI 3.1 document (what a server answers at /openapi.json), to
    /// generate a client or check a change without running one.
    Openapi,
    /// Inspect the configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the resolved configuration (defaults + file + environment), secrets redacted.
    Print,
    /// Print the embedded defaults with their comments (a starting imagegate.toml).
    Defaults,
}

/// Writes to stdout; a reader that went away (`imagegate keys list | head -1`) ends the
/// command quietly instead of with a panic.
pub(crate) fn out(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut o = std::io::stdout().lock();
    if let Err(e) = o.write_fmt(text).and_then(|_| o.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// `println!` through [`out`].
macro_rules! outln {
    () => { $crate::cli::out(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::cli::out(format_args!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use outln;

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init();
    crate::install_crypto_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<()> {
    // The HTTP clients need no configuration of this machine's gateway.
    match cli.command {
        Command::Generate { remote, args } => return tasks::generate(&client::Client::new(&remote)?, args).await,
        Command::Tasks { remote, command } => return tasks::tasks(&client::Client::new(&remote)?, command).await,
        Command::Batch { remote, args } => return batch::run(&client::Client::new(&remote)?, args).await,
        Command::Openapi => {
            outln!("{}", crate::api::spec().to_pretty_json()?);
            return Ok(());
        }
        _ => {}
    }
    let listen = match &cli.command {
        Command::Serve { listen } => listen.clone(),
        _ => None,
    };
    let overrides = Overrides { listen, data_dir: cli.data_dir.clone() };
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    match cli.command {
        Command::Serve { .. } => serve::run(config).await,
        Command::Migrate => {
            let rt = config.runtime()?;
            std::fs::create_dir_all(&rt.data_dir).ok();
            crate::store::open_with(&rt.store_options()).await?;
            outln!("database {} is up to date", crate::config::redact_url(&rt.database_url));
            Ok(())
        }
        Command::Keys { command } => keys::run(config, command).await,
        Command::Generate { .. } | Command::Tasks { .. } | Command::Batch { .. } | Command::Openapi => Ok(()),
        Command::Health { url } => {
            let url = match url {
                Some(u) => u,
                None => {
                    let listen = config.runtime()?.listen;
                    // A wildcard bind is reached on loopback.
                    let host =
                        if listen.ip().is_unspecified() { "127.0.0.1".to_string() } else { listen.ip().to_string() };
                    format!("http://{host}:{}/healthz", listen.port())
                }
            };
            let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(5)).no_proxy().build()?;
            let resp = client.get(&url).send().await.map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
            anyhow::ensure!(resp.status().is_success(), "{url} answered {}", resp.status());
            outln!("ok");
            Ok(())
        }
        Command::Config { command: ConfigCommand::Print } => {
            let rt = config.runtime()?;
            outln!("# {}", deployment(&rt));
            out(format_args!("{}", config.to_redacted_toml()?));
            Ok(())
        }
        Command::Config { command: ConfigCommand::Defaults } => {
            out(format_args!("{}", crate::config::DEFAULT_TOML));
            Ok(())
        }
    }
}

/// One line on where state lives: the database backend and the image storage.
fn deployment(rt: &crate::config::Runtime) -> String {
    let database = match crate::store::backend(&rt.database_url) {
        Some("postgres") => "PostgreSQL (replicas may share it)",
        Some("sqlite") => "SQLite (one process)",
        _ => "unknown",
    };
    let storage = if rt.storage_url.starts_with("s3://") { "S3" } else { "local folder" };
    format!("database: {database}; image storage: {storage}")
}
