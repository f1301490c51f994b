//! Configuration: embedded commented defaults → `imagegate.toml` / `--config` → environment →
//! command-line flags, then validated into typed runtime values.

mod env;
mod secret;

pub use secret::{Secret, redact_url};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::domain::duration;

/// The embedded defaults: every setting, commented.
pub const DEFAULT_TOML: &str = include_str!("../../config.default.toml");

/// The file shape. Every table denies unknown keys so a typo is an error naming the key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub conversions: ConversionsConfig,
    pub timeouts: TimeoutsConfig,
    pub worker: WorkerConfig,
    pub webhooks: WebhooksConfig,
    pub inputs: InputsSection,
    pub batch: BatchSection,
    pub export: ExportSection,
    pub retry: RetrySection,
    pub breaker: BreakerSection,
    #[serde(default)]
    pub fallbacks: std::collections::BTreeMap<String, Vec<String>>,
    pub pricing: crate::domain::pricing::PriceTable,
    pub limits: LimitsSection,
    pub providers: ProvidersConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsSection {
    pub rpm: u32,
    pub max_concurrency: u32,
    pub daily_images: u32,
    pub budget_usd: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    pub max_attempts: u32,
    pub base: String,
    pub max_backoff: String,
    pub max_hint: String,
    pub try_timeout: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSection {
    pub failures: u32,
    pub cooldown: String,
    pub disabled_probe: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub name: String,
    pub api_key: Secret,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default = "one")]
    pub weight: u32,
    #[serde(default)]
    pub max_concurrency: usize,
    #[serde(default)]
    pub rpm: u32,
    /// Images per minute. Every upstream call makes one image (the gateway fans out `n`), so
    /// this is enforced by the same limiter as `rpm`: the lower of the two applies.
    #[serde(default)]
    pub ipm: u32,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    pub schedule: Vec<String>,
    pub timeout: String,
    pub allow_private: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputsSection {
    pub max_body_bytes: usize,
    pub max_image_bytes: usize,
    pub max_total_bytes: usize,
    pub allow_private_urls: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSection {
    pub upstream: bool,
    pub poll_interval: String,
    pub max_job_lines: u32,
    pub max_job_bytes: usize,
    pub flex_max_wait: String,
    pub flex_max_lines: u32,
    pub flex_realtime_margin: String,
    pub queue_share: f64,
}

/// How batches run (see `crate::batches`).
#[derive(Debug, Clone)]
pub struct BatchRuntime {
    /// Send batch lines to the provider's batch API (at the batch price) when it has one.
    pub upstream: bool,
    /// How often a running upstream job is polled.
    pub poll_interval: Duration,
    /// Lines per upstream job: a larger batch is split into several jobs.
    pub max_job_lines: u32,
    /// The largest input file of an upstream job (it is built in memory): lines past it wait
    /// for the next job. A job takes one line however large.
    pub max_job_bytes: usize,
    /// Flex tasks are pooled this long (or until `flex_max_lines` wait) before a job is made.
    pub flex_max_wait: Duration,
    pub flex_max_lines: u32,
    /// A flex task still waiting this long before its deadline is run in realtime.
    pub flex_realtime_margin: Duration,
    /// The share of a replica's worker slots batch lines may hold at once (the gateway's own
    /// queue); the rest stay free for realtime work.
    pub queue_share: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    pub schedule: Vec<String>,
    pub timeout: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub listen: String,
    pub public_url: String,
    pub admin_token: Secret,
    pub max_body_bytes: usize,
    pub shutdown_grace: String,
    pub max_connections: usize,
    pub header_read_timeout: String,
    pub secret_key: Secret,
    pub metrics_listen: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub storage_url: String,
    pub retention: String,
    pub sweep_interval: String,
    pub orphan_grace: String,
    pub url_mode: String,
    pub public_base_url: String,
    pub presign_ttl: String,
    pub durability: String,
    pub database_pool_size: usize,
    pub database_statement_timeout: String,
    pub shared_folder: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversionsConfig {
    pub concurrency: usize,
    pub queue: usize,
    pub sizes: Vec<u32>,
    pub qualities: Vec<u8>,
    pub max_variants_per_image: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeoutsConfig {
    pub image_1k: String,
    pub image_2k: String,
    pub image_4k: String,
    pub connect: String,
    pub keepalive: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub lease: String,
    pub max_claims: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvidersConfig {
    pub proxy: String,
    pub max_answer_bytes: usize,
    pub gemini: GeminiConfig,
    pub openai_compat: OpenAiCompatConfig,
    pub simulated: SimulatedConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiCompatConfig {
    pub api_key: Secret,
    pub base_url: String,
    pub max_concurrency: usize,
    pub rpm: u32,
    pub ipm: u32,
    pub models: Vec<String>,
    pub channels: Vec<ChannelConfig>,
    pub http2_prior_knowledge: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeminiConfig {
    pub api_key: Secret,
    pub base_url: String,
    pub max_concurrency: usize,
    pub rpm: u32,
    pub ipm: u32,
    pub channels: Vec<ChannelConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimulatedConfig {
    pub latency: String,
    pub failure_rate: f64,
}

/// Values given on the command line; they win over everything else.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Config {
    /// The embedded defaults alone (no file, no environment).
    pub fn defaults() -> Result<Config> {
        toml::from_str(DEFAULT_TOML).context("embedded defaults")
    }

    /// Loads the layered configuration. `file` is `--config`; without it `./imagegate.toml` is
    /// read when present.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config> {
        let mut merged: toml::Table = toml::from_str(DEFAULT_TOML).context("embedded defaults")?;
        let file = match file {
            Some(f) => Some(f.to_path_buf()),
            None => Some(PathBuf::from("imagegate.toml")).filter(|p| p.exists()),
        };
        if let Some(path) = &file {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
            let user: toml::Table =
                toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
            merge(&mut merged, user);
        }
        let mut config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| anyhow::anyhow!("invalid configuration: {}", e.message()))
            .with_context(|| match &file {
                Some(p) => format!("in {}", p.display()),
                None => "in the embedded defaults".to_string(),
            })?;
        env::apply(&mut config, |name| std::env::var(name).ok())?;
        if let Some(listen) = &overrides.listen {
            config.server.listen = listen.clone();
        }
        if let Some(dir) = &overrides.data_dir {
            config.storage.data_dir = dir.clone();
        }
        Ok(config)
    }

    /// Checks and converts every value; the error names the setting.
    pub fn runtime(&self) -> Result<Runtime> {
        let listen: SocketAddr =
            self.server.listen.parse().with_context(|| {
                format!("server.listen {:?} is not an address like 127.0.0.1:8080", self.server.listen)
            })?;
        let public_url = if self.server.public_url.is_empty() {
            format!("http://{listen}")
        } else {
            let u = url::Url::parse(&self.server.public_url)
                .with_context(|| format!("server.public_url {:?} is not a URL", self.server.public_url))?;
            if !matches!(u.scheme(), "http" | "https") {
                bail!("server.public_url must be http or https");
            }
            self.server.public_url.trim_end_matches('/').to_string()
        };
        let dur = |name: &str, v: &str| -> Result<Duration> {
            duration::parse(v).map_err(|e| anyhow::anyhow!("{name}: {e}"))
        };
        if !(self.batch.queue_share > 0.0 && self.batch.queue_share <= 1.0) {
            bail!("batch.queue_share must be above 0 and at most 1");
        }
        if !(0.0..=1.0).contains(&self.providers.simulated.failure_rate) {
            bail!("providers.simulated.failure_rate must be between 0.0 and 1.0");
        }
        if self.worker.concurrency == 0 && !self.storage.database_url.starts_with("postgres") {
            bail!("worker.concurrency = 0 (no workers here) needs a database other replicas share (postgres://…)");
        }
        let lease = dur("worker.lease", &self.worker.lease)?;
        if lease < Duration::from_secs(1) {
            bail!("worker.lease must be at least 1s");
        }
        let webhook_schedule =
            self.webhooks.schedule.iter().map(|d| dur("webhooks.schedule", d)).collect::<Result<Vec<_>>>()?;
        let export_schedule =
            self.export.schedule.iter().map(|d| dur("export.schedule", d)).collect::<Result<Vec<_>>>()?;
        let secret_key =
            self.server.secret_key.resolve().map_err(|e| anyhow::anyhow!("server.secret_key: {e}"))?.map(Secret::new);
        if let Some(k) = &secret_key {
            crate::sealing::Sealer::from_base64(k.expose()).map_err(|e| anyhow::anyhow!("server.secret_key: {e}"))?;
        }
        if self.retry.max_attempts == 0 {
            bail!("retry.max_attempts must be at least 1");
        }
        let retry = crate::domain::retry::RetryPolicy {
            max_attempts: self.retry.max_attempts,
            base: dur("retry.base", &self.retry.base)?,
            max_backoff: dur("retry.max_backoff", &self.retry.max_backoff)?,
            max_hint: dur("retry.max_hint", &self.retry.max_hint)?,
            try_timeout: Some(dur("retry.try_timeout", &self.retry.try_timeout)?).filter(|d| !d.is_zero()),
        };
        let breaker = crate::providers::channels::BreakerConfig {
            failures: self.breaker.failures.max(1),
            cooldown: dur("breaker.cooldown", &self.breaker.cooldown)?,
            disabled_probe: dur("breaker.disabled_probe", &self.breaker.disabled_probe)?,
        };
        let gemini = &self.providers.gemini;
        let gemini_channels = channels("providers.gemini", &gemini.channels)?;
        let openai = &self.providers.openai_compat;
        let openai_channels = channels("providers.openai_compat", &openai.channels)?;
        let openai_keys = keys("providers.openai_compat.api_key", &openai.api_key)?;
        for m in &openai.models {
            if crate::domain::models::resolve(m).is_none() {
                bail!("providers.openai_compat.models: unknown model {m:?} (see GET /v1/models)");
            }
        }
        let mut fallbacks = std::collections::HashMap::new();
        for (from, to) in &self.fallbacks {
            let resolve = |m: &str| {
                crate::domain::models::resolve(m)
                    .map(|x| x.upstream.to_string())
                    .ok_or_else(|| anyhow::anyhow!("fallbacks: unknown model {m:?} (see GET /v1/models)"))
            };
            let list = to.iter().map(|m| resolve(m)).collect::<Result<Vec<_>>>()?;
            fallbacks.insert(resolve(from)?, list);
        }
        let url_mode = match self.storage.url_mode.as_str() {
            "gateway" => UrlMode::Gateway,
            "public" => {
                let base = self.storage.public_base_url.trim_end_matches('/');
                if !(base.starts_with("http://") || base.starts_with("https://")) {
                    bail!("storage.public_base_url must be an http(s) URL when url_mode = \"public\"");
                }
                UrlMode::Public(base.to_string())
            }
            "presigned" => UrlMode::Presigned(dur("storage.presign_ttl", &self.storage.presign_ttl)?),
            other => bail!("storage.url_mode {other:?} must be gateway, public or presigned"),
        };
        let conv = &self.conversions;
        let mut sizes = conv.sizes.clone();
        sizes.sort_unstable();
        sizes.dedup();
        if sizes.is_empty() || sizes[0] == 0 || sizes.iter().any(|s| *s > crate::domain::variant::MAX_SIDE) {
            bail!("conversions.sizes must list sizes from 1 to {}", crate::domain::variant::MAX_SIDE);
        }
        let mut qualities = conv.qualities.clone();
        qualities.sort_unstable();
        qualities.dedup();
        if qualities.is_empty() || qualities.iter().any(|q| !(1..=100).contains(q)) {
            bail!("conversions.qualities must list qualities from 1 to 100");
        }
        let variant_rules = crate::domain::variant::Rules { sizes, qualities };
        let durability = crate::domain::durability::Durability::parse(&self.storage.durability).ok_or_else(|| {
            anyhow::anyhow!("storage.durability {:?} must be process or power", self.storage.durability)
        })?;
        let data_dir = self.storage.data_dir.clone();
        let database_url = if self.storage.database_url.is_empty() {
            format!("sqlite://{}", data_dir.join("imagegate.db").display())
        } else {
            self.storage.database_url.clone()
        };
        let storage_url = if self.storage.storage_url.is_empty() {
            format!("file://{}", data_dir.join("images").display())
        } else {
            self.storage.storage_url.clone()
        };
        if database_url.starts_with("postgres") && storage_url.starts_with("file:") && !self.storage.shared_folder {
            bail!(
                "with a PostgreSQL database several replicas may run, and images in a local folder would be \
                 served by one only: use S3 (IMAGEGATE_STORAGE_URL=s3://…), or set storage.shared_folder = true \
                 (IMAGEGATE_SHARED_FOLDER=1) when every replica mounts the same folder or only one runs"
            );
        }
        let gemini_keys = keys("providers.gemini.api_key", &self.providers.gemini.api_key)?;
        let admin_token = self
            .server
            .admin_token
            .resolve()
            .map_err(|e| anyhow::anyhow!("server.admin_token: {e}"))?
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        if admin_token.as_ref().is_some_and(|t| t.expose().len() < 16) {
            bail!("server.admin_token must be at least 16 characters");
        }
        let metrics_listen = match self.server.metrics_listen.trim() {
            "" => None,
            a => Some(
                a.parse::<SocketAddr>()
                    .with_context(|| format!("server.metrics_listen {a:?} is not an address like 127.0.0.1:9090"))?,
            ),
        };
        Ok(Runtime {
            listen,
            metrics_listen,
            public_url,
            admin_token,
            max_body_bytes: self.server.max_body_bytes,
            shutdown_grace: dur("server.shutdown_grace", &self.server.shutdown_grace)?,
            max_connections: self.server.max_connections.max(1),
            header_read_timeout: dur("server.header_read_timeout", &self.server.header_read_timeout)?,
            data_dir,
            database_url,
            storage_url,
            retention: dur("storage.retention", &self.storage.retention)?,
            sweep_interval: dur("storage.sweep_interval", &self.storage.sweep_interval)?,
            orphan_grace: dur("storage.orphan_grace", &self.storage.orphan_grace)?,
            url_mode,
            durability,
            database_pool_size: self.storage.database_pool_size.max(1),
            database_statement_timeout: dur(
                "storage.database_statement_timeout",
                &self.storage.database_statement_timeout,
            )?,
            variant_rules,
            conversion_concurrency: conv.concurrency,
            conversion_queue: conv.queue,
            max_variants_per_image: conv.max_variants_per_image,
            deadline_1k: dur("timeouts.image_1k", &self.timeouts.image_1k)?,
            deadline_2k: dur("timeouts.image_2k", &self.timeouts.image_2k)?,
            deadline_4k: dur("timeouts.image_4k", &self.timeouts.image_4k)?,
            connect_timeout: dur("timeouts.connect", &self.timeouts.connect)?,
            keepalive: dur("timeouts.keepalive", &self.timeouts.keepalive)?,
            worker_concurrency: self.worker.concurrency,
            lease,
            max_claims: self.worker.max_claims.max(1),
            gemini_keys,
            gemini_base_url: self.providers.gemini.base_url.trim_end_matches('/').to_string(),
            simulated_latency: dur("providers.simulated.latency", &self.providers.simulated.latency)?,
            simulated_failure_rate: self.providers.simulated.failure_rate,
            webhook_schedule,
            s3_access_key: std::env::var("AWS_ACCESS_KEY_ID").ok().filter(|v| !v.is_empty()),
            s3_secret_key: std::env::var("AWS_SECRET_ACCESS_KEY").ok().filter(|v| !v.is_empty()).map(Secret::new),
            webhook_timeout: dur("webhooks.timeout", &self.webhooks.timeout)?,
            webhook_allow_private: self.webhooks.allow_private,
            inputs: crate::inputs::InputLimits {
                max_body_bytes: self.inputs.max_body_bytes.max(self.server.max_body_bytes),
                max_image_bytes: self.inputs.max_image_bytes.max(1024),
                max_total_bytes: self.inputs.max_total_bytes.max(self.inputs.max_image_bytes.max(1024)),
                allow_private_urls: self.inputs.allow_private_urls,
            },
            batch: BatchRuntime {
                upstream: self.batch.upstream,
                poll_interval: dur("batch.poll_interval", &self.batch.poll_interval)?.max(Duration::from_millis(10)),
                max_job_lines: self.batch.max_job_lines.clamp(1, 50_000),
                max_job_bytes: self.batch.max_job_bytes,
                flex_max_wait: dur("batch.flex_max_wait", &self.batch.flex_max_wait)?,
                flex_max_lines: self.batch.flex_max_lines.max(1),
                flex_realtime_margin: dur("batch.flex_realtime_margin", &self.batch.flex_realtime_margin)?,
                queue_share: self.batch.queue_share,
            },
            resolver: Resolvers::system(),
            upstream_proxy: Some(self.providers.proxy.trim().to_string()).filter(|p| !p.is_empty()),
            upstream_max_answer_bytes: self.providers.max_answer_bytes.max(1024),
            secret_key,
            export_schedule,
            export_timeout: dur("export.timeout", &self.export.timeout)?,
            retry,
            breaker,
            gemini_max_concurrency: gemini.max_concurrency,
            gemini_rpm: per_minute(gemini.rpm, gemini.ipm),
            gemini_channels,
            openai_keys,
            openai_base_url: openai.base_url.trim_end_matches('/').to_string(),
            openai_max_concurrency: openai.max_concurrency,
            openai_rpm: per_minute(openai.rpm, openai.ipm),
            openai_models: openai.models.clone(),
            openai_http2_prior_knowledge: openai.http2_prior_knowledge,
            openai_channels,
            prices: self.pricing.clone(),
            fallbacks,
            default_policy: crate::domain::policy::KeyPolicy {
                retention: None,
                rpm: Some(self.limits.rpm).filter(|n| *n > 0),
                max_concurrency: Some(self.limits.max_concurrency).filter(|n| *n > 0),
                daily_images: Some(self.limits.daily_images).filter(|n| *n > 0),
                budget_usd: Some(self.limits.budget_usd).filter(|b| *b > 0.0),
                models: None,
            },
        })
    }

    /// The resolved configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> Result<String> {
        let mut shown = self.clone();
        shown.storage.database_url = redact_url(&shown.storage.database_url);
        shown.storage.storage_url = redact_url(&shown.storage.storage_url);
        Ok(toml::to_string_pretty(&shown)?)
    }
}

/// Typed, validated settings the running process uses.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub listen: SocketAddr,
    /// `/metrics` on its own address (and not on `listen`), when set.
    pub metrics_listen: Option<SocketAddr>,
    pub public_url: String,
    pub admin_token: Option<Secret>,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub storage_url: String,
    pub retention: Duration,
    pub sweep_interval: Duration,
    /// Stored objects no image record wants are deleted once this old.
    pub orphan_grace: Duration,
    pub url_mode: UrlMode,
    /// What a finished task survives: a crash of the process, or a power cut too.
    pub durability: crate::domain::durability::Durability,
    /// PostgreSQL: connections per process, and the longest a statement may run.
    pub database_pool_size: usize,
    pub database_statement_timeout: Duration,
    /// How image URL variants are normalised (size and quality steps).
    pub variant_rules: crate::domain::variant::Rules,
    /// Conversions at once (0: one per core), and anonymous ones that may wait.
    pub conversion_concurrency: usize,
    pub conversion_queue: usize,
    pub max_variants_per_image: u32,
    pub deadline_1k: Duration,
    pub deadline_2k: Duration,
    pub deadline_4k: Duration,
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    pub worker_concurrency: usize,
    pub lease: Duration,
    /// Claims a task may have (runs cut off by a crash or a lost lease) before it is given up.
    pub max_claims: u32,
    pub gemini_keys: Vec<Secret>,
    pub gemini_base_url: String,
    pub simulated_latency: Duration,
    pub simulated_failure_rate: f64,
    /// S3 credentials, from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
    pub s3_access_key: Option<String>,
    pub s3_secret_key: Option<Secret>,
    pub webhook_schedule: Vec<Duration>,
    pub webhook_timeout: Duration,
    pub webhook_allow_private: bool,
    /// Input images: body limit of the routes that take them, sizes, URL fetching.
    pub inputs: crate::inputs::InputLimits,
    pub batch: BatchRuntime,
    /// Resolves names for outbound connections that the SSRF guard checks.
    pub resolver: Resolvers,
    /// A proxy for upstream API calls, only when configured (`[providers] proxy`).
    pub upstream_proxy: Option<String>,
    /// Largest upstream answer read (bodies and image URLs).
    pub upstream_max_answer_bytes: usize,
    /// Seals stored secrets (base64 of 32 bytes); `None`: the key file in the data folder.
    pub secret_key: Option<Secret>,
    pub export_schedule: Vec<Duration>,
    pub export_timeout: Duration,
    pub retry: crate::domain::retry::RetryPolicy,
    pub breaker: crate::providers::channels::BreakerConfig,
    /// Limits of each channel made from `gemini_keys`.
    pub gemini_max_concurrency: usize,
    pub gemini_rpm: u32,
    /// Channels configured one by one (beside those made from `gemini_keys`).
    pub gemini_channels: Vec<GeminiChannel>,
    pub openai_keys: Vec<Secret>,
    pub openai_base_url: String,
    pub openai_max_concurrency: usize,
    pub openai_rpm: u32,
    /// Model ids routed to the OpenAI-compatible upstream.
    pub openai_models: Vec<String>,
    /// h2c to an http:// OpenAI-compatible upstream.
    pub openai_http2_prior_knowledge: bool,
    pub openai_channels: Vec<GeminiChannel>,
    pub prices: crate::domain::pricing::PriceTable,
    /// Upstream model → fallback upstream models, in order.
    pub fallbacks: std::collections::HashMap<String, Vec<String>>,
    /// Limits for keys without their own (retention comes from `retention`).
    pub default_policy: crate::domain::policy::KeyPolicy,
}

impl Runtime {
    /// A key's effective policy: its own values, else the configured defaults.
    pub fn policy_for(&self, own: &crate::domain::policy::KeyPolicy) -> crate::domain::policy::KeyPolicy {
        let d = &self.default_policy;
        crate::domain::policy::KeyPolicy {
            retention: own.retention.clone(),
            rpm: own.rpm.or(d.rpm),
            max_concurrency: own.max_concurrency.or(d.max_concurrency),
            daily_images: own.daily_images.or(d.daily_images),
            budget_usd: own.budget_usd.or(d.budget_usd),
            models: own.models.clone(),
        }
    }

    /// How to open the store.
    pub fn store_options(&self) -> crate::store::Options {
        crate::store::Options {
            url: self.database_url.clone(),
            durability: self.durability,
            pool_size: self.database_pool_size,
            statement_timeout: self.database_statement_timeout,
        }
    }

    /// How long a key's images are kept.
    pub fn retention_for(&self, own: &crate::domain::policy::KeyPolicy) -> Duration {
        own.retention().unwrap_or(self.retention)
    }
}

/// The resolver for guarded outbound connections (the system's, unless a test or an embedding
/// program supplies one).
#[derive(Clone)]
pub struct Resolvers(pub std::sync::Arc<dyn crate::egress::Resolver>);

impl Resolvers {
    pub fn system() -> Resolvers {
        Resolvers(std::sync::Arc::new(crate::egress::SystemResolver))
    }
}

impl std::fmt::Debug for Resolvers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolvers")
    }
}

/// How image URLs are made.
#[derive(Debug, Clone, PartialEq)]
pub enum UrlMode {
    /// Served by the gateway (`/images/…`).
    Gateway,
    /// `{base}/{blob key}` on a CDN or public bucket.
    Public(String),
    /// Presigned S3 URLs valid for this long.
    Presigned(Duration),
}

/// One configured upstream channel (Gemini or OpenAI-compatible).
pub type GeminiChannel = ChannelSettings;

#[derive(Debug, Clone)]
pub struct ChannelSettings {
    pub name: String,
    pub key: Secret,
    /// `None`: the provider's base URL.
    pub base_url: Option<String>,
    pub weight: u32,
    pub max_concurrency: usize,
    pub rpm: u32,
}

impl Runtime {
    /// The per-resolution deadline for one image.
    pub fn deadline(&self, res: crate::domain::sizes::Resolution) -> Duration {
        use crate::domain::sizes::Resolution::*;
        match res {
            K1 => self.deadline_1k,
            K2 => self.deadline_2k,
            K4 => self.deadline_4k,
        }
    }
}

/// The tighter of a requests-per-minute and an images-per-minute limit (0: unlimited).
fn per_minute(rpm: u32, ipm: u32) -> u32 {
    match (rpm, ipm) {
        (0, x) | (x, 0) => x,
        (a, b) => a.min(b),
    }
}

/// Comma-separated keys from a secret (one channel each).
fn keys(name: &str, secret: &Secret) -> Result<Vec<Secret>> {
    Ok(secret
        .resolve()
        .map_err(|e| anyhow::anyhow!("{name}: {e}"))?
        .map(|keys| keys.split(',').map(str::trim).filter(|k| !k.is_empty()).map(Secret::new).collect())
        .unwrap_or_default())
}

fn channels(section: &str, list: &[ChannelConfig]) -> Result<Vec<ChannelSettings>> {
    list.iter()
        .enumerate()
        .map(|(i, ch)| {
            let key = ch
                .api_key
                .resolve()
                .map_err(|e| anyhow::anyhow!("{section}.channels[{i}].api_key: {e}"))?
                .ok_or_else(|| anyhow::anyhow!("{section}.channels[{i}] ({}) has no api_key", ch.name))?;
            Ok(ChannelSettings {
                name: ch.name.clone(),
                key: Secret::new(key),
                base_url: ch.base_url.clone().map(|u| u.trim_end_matches('/').to_string()),
                weight: ch.weight,
                max_concurrency: ch.max_concurrency,
                rpm: per_minute(ch.rpm, ch.ipm),
            })
        })
        .collect()
}

/// Deep-merges `over` into `base` (tables merge, everything else replaces).
fn merge(base: &mut toml::Table, over: toml::Table) {
    for (k, v) in over {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_defaults_load_and_validate() {
        let c: Config = toml::from_str(DEFAULT_TOML).unwrap();
        let r = c.runtime().unwrap();
        assert_eq!(r.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(r.public_url, "http://127.0.0.1:8080");
        assert_eq!(r.deadline_4k, Duration::from_secs(600));
        assert_eq!(r.retention, Duration::from_secs(7 * 86400));
        assert_eq!(r.durability, crate::domain::durability::Durability::Process);
    }

    /// The defaults live in config.default.toml alone; these are the published ones (API.md).
    #[test]
    fn the_embedded_defaults_are_the_published_ones() {
        let r = Config::defaults().unwrap().runtime().unwrap();
        use crate::domain::models::Family;
        use crate::domain::sizes::Resolution;
        assert_eq!(r.prices.cost(Family::Pro, Resolution::K2, 1), 0.134);
        assert_eq!(r.prices.cost(Family::Pro, Resolution::K4, 1), 0.24);
        assert_eq!(r.prices.cost(Family::Flash, Resolution::K1, 1), 0.039);
        assert_eq!(r.prices.batch_factor, 0.5);
        let secs: Vec<u64> = r.webhook_schedule.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [5, 300, 1800, 7200, 18000, 36000, 36000]);
        assert_eq!(r.webhook_timeout, Duration::from_secs(15));
        assert_eq!(r.retry.max_attempts, 4);
        assert_eq!(r.retry.max_hint, Duration::from_secs(60));
        assert_eq!((r.deadline_1k, r.deadline_2k), (Duration::from_secs(300), Duration::from_secs(300)));
        assert_eq!(r.breaker.cooldown, Duration::from_secs(30));
        assert!(!r.webhook_allow_private);
        assert_eq!(r.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn a_shared_database_refuses_a_local_folder_unless_it_is_said_to_be_shared() {
        let mut c: Config = toml::from_str(DEFAULT_TOML).unwrap();
        c.storage.database_url = "postgres://ig@db/ig".into();
        let err = c.runtime().unwrap_err().to_string();
        assert!(err.contains("S3") && err.contains("shared_folder"), "{err}");
        c.storage.shared_folder = true;
        assert!(c.runtime().is_ok());
        c.storage.shared_folder = false;
        c.storage.storage_url = "s3://bucket/ig?endpoint=http://127.0.0.1:9000&region=us-east-1".into();
        assert!(c.runtime().is_ok());
        c.worker.concurrency = 0;
        assert!(c.runtime().is_ok(), "an API-only replica");
        c.storage.database_url = String::new();
        assert!(c.runtime().unwrap_err().to_string().contains("worker.concurrency = 0"));
    }

    #[test]
    fn durability_is_process_or_power() {
        let mut c: Config = toml::from_str(DEFAULT_TOML).unwrap();
        c.storage.durability = "power".into();
        assert_eq!(c.runtime().unwrap().durability, crate::domain::durability::Durability::Power);
        c.storage.durability = "always".into();
        let err = c.runtime().unwrap_err().to_string();
        assert!(err.contains("storage.durability") && err.contains("process or power"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_an_error_that_names_it() {
        let mut base: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
        merge(&mut base, toml::from_str("[server]\nlisten_addr = \"x\"").unwrap());
        let err = toml::Value::Table(base).try_into::<Config>().unwrap_err();
        assert!(err.to_string().contains("listen_addr"), "{err}");
    }

    #[test]
    fn channels_and_fallbacks_parse_from_toml() {
        let mut base: toml::Table = toml::from_str(DEFAULT_TOML).unwrap();
        let user = r#"
            [providers.gemini]
            ipm = 20
            channels = [{ name = "backup", api_key = "k2", base_url = "http://127.0.0.1:9/", rpm = 60, ipm = 30 }]
            [fallbacks]
            "nano-banana-pro" = ["nano-banana"]
        "#;
        merge(&mut base, toml::from_str(user).unwrap());
        let c: Config = toml::Value::Table(base).try_into().unwrap();
        let r = c.runtime().unwrap();
        assert_eq!(r.gemini_rpm, 20);
        assert_eq!(r.gemini_channels[0].rpm, 30, "the lower of rpm and ipm");
        assert_eq!(r.gemini_channels[0].base_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(r.fallbacks["gemini-3-pro-image-preview"], vec!["gemini-2.5-flash-image".to_string()]);
        assert_eq!(per_minute(0, 0), 0);
    }

    #[test]
    fn a_bad_duration_names_the_setting() {
        let mut c: Config = toml::from_str(DEFAULT_TOML).unwrap();
        c.timeouts.image_4k = "ten minutes".into();
        let err = c.runtime().unwrap_err().to_string();
        assert!(err.contains("timeouts.image_4k"), "{err}");
    }
}
