//! The running application: backends chosen once at boot behind their seams, the worker pool,
//! and the HTTP server with graceful shutdown.

use anyhow::{Context, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_util::sync::CancellationToken;

use crate::blobs::{self, BlobStore};
use crate::config::Runtime;
use crate::delivery::export::Exporter;
use crate::delivery::urls::ImageUrls;
use crate::providers::Registry;
use crate::sealing::Sealer;
use crate::store::{self, Store};
use crate::webhooks::outbox::Deliverer;
use crate::worker::{Deps, WorkerPool};

pub struct App {
    pub rt: Arc<Runtime>,
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
    pub providers: Registry,
    pub workers: Arc<WorkerPool>,
    pub deliverer: Arc<Deliverer>,
    pub exporter: Arc<Exporter>,
    /// Seals stored secrets; `None` when no key is configured and there is no data folder.
    pub sealer: Option<Arc<Sealer>>,
    /// Key records for authentication, reused for a second (see `crate::keys`).
    pub keys: Arc<crate::keys::KeyCache>,
    pub variants: crate::delivery::variants::Variants,
    /// Every image conversion runs here (variants, and the worker's output_format).
    pub conversions: Arc<crate::imaging::Pool>,
    /// Image URLs per the configured mode (presigned ones signed afresh on every read).
    pub urls: ImageUrls,
    /// Fetches `https` input images (SSRF-guarded: public addresses only unless configured).
    pub fetcher: reqwest::Client,
    /// Stops background loops (the retention sweeper) at shutdown.
    pub background: CancellationToken,
    /// Wakes the batch driver (a batch was created or cancelled).
    pub batch_wake: Arc<tokio::sync::Notify>,
    /// The queue as `/metrics` last read it, and when: scrapes (unauthenticated) reuse it for
    /// a second rather than each counting the queue in the database.
    pub queue_stats: tokio::sync::Mutex<Option<(std::time::Instant, Vec<crate::store::QueueStat>)>>,
    shutting_down: AtomicBool,
}

impl App {
    /// Opens the store (running migrations), probes the blob store and builds the providers.
    pub async fn build(rt: Runtime) -> Result<Arc<App>> {
        if rt.database_url.starts_with("sqlite:") || rt.storage_url.starts_with("file:") {
            std::fs::create_dir_all(&rt.data_dir)
                .with_context(|| format!("creating the data folder {}", rt.data_dir.display()))?;
        }
        let store = store::open_with(&rt.store_options())
            .await
            .with_context(|| format!("opening the database {}", crate::config::redact_url(&rt.database_url)))?;
        let credentials = rt.s3_access_key.clone().zip(rt.s3_secret_key.as_ref().map(|s| s.expose().to_string()));
        let blobs = blobs::open(&rt.storage_url, credentials, rt.durability)
            .with_context(|| format!("opening storage {}", rt.storage_url))?;
        blobs.probe().await.with_context(|| format!("storage {} is not writable", rt.storage_url))?;
        if let crate::config::UrlMode::Presigned(ttl) = rt.url_mode
            && blobs.presign("probe.bin", ttl).await.ok().flatten().is_none()
        {
            anyhow::bail!("storage.url_mode = \"presigned\" needs S3 storage (IMAGEGATE_STORAGE_URL=s3://…)");
        }
        let providers = Registry::from_config(&rt)?;
        if store.is_shared() {
            // Replicas share the store: they share the upstream channels' limits through it.
            providers.share(Arc::new(crate::replicas::quota::StoreQuota::new(store.clone())));
        }
        let urls = ImageUrls::new(rt.url_mode.clone(), rt.public_url.clone(), blobs.clone());
        let deliverer = Deliverer::new(
            store.clone(),
            urls.clone(),
            rt.webhook_schedule.clone(),
            rt.webhook_timeout,
            rt.webhook_allow_private,
            rt.resolver.0.clone(),
        )?;
        let sealer = open_sealer(&rt)?;
        let exporter =
            Exporter::new(store.clone(), blobs.clone(), sealer.clone(), rt.export_schedule.clone(), rt.export_timeout);
        let conversions = Arc::new(crate::imaging::Pool::new(rt.conversion_concurrency, rt.conversion_queue));
        let fetcher = crate::egress::guarded(crate::egress::Guarded {
            resolver: rt.resolver.0.clone(),
            allow_private: rt.inputs.allow_private_urls,
            timeout: std::time::Duration::from_secs(60),
            max_redirects: 3,
            user_agent: concat!("imagegate/", env!("CARGO_PKG_VERSION")),
        })?;
        let rt = Arc::new(rt);
        let keys = Arc::new(crate::keys::KeyCache::default());
        let workers = WorkerPool::new(Deps {
            keys: keys.clone(),
            rt: rt.clone(),
            store: store.clone(),
            blobs: blobs.clone(),
            providers: providers.clone(),
            deliverer: deliverer.clone(),
            exporter: exporter.clone(),
            conversions: conversions.clone(),
            urls: urls.clone(),
        });
        Ok(Arc::new(App {
            rt,
            store,
            blobs,
            providers,
            workers,
            deliverer,
            exporter,
            sealer,
            keys,
            variants: Default::default(),
            conversions,
            urls,
            fetcher,
            background: CancellationToken::new(),
            batch_wake: Default::default(),
            queue_stats: Default::default(),
            shutting_down: AtomicBool::new(false),
        }))
    }

    /// What a variant conversion needs (it runs on its own task, past its request).
    pub fn converter(&self) -> crate::delivery::variants::Converter {
        crate::delivery::variants::Converter {
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            pool: self.conversions.clone(),
            max_per_image: self.rt.max_variants_per_image,
        }
    }

    pub fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }
}

/// The sealing key: `server.secret_key` when set, else `secret.key` in the data folder (made on
/// first start) when the data folder is in use.
fn open_sealer(rt: &Runtime) -> Result<Option<Arc<Sealer>>> {
    if let Some(k) = &rt.secret_key {
        return Ok(Some(Arc::new(Sealer::from_base64(k.expose())?)));
    }
    if crate::store::backend(&rt.database_url) == Some("postgres") {
        // A key made here would be this replica's alone: what it seals, the others could not open.
        tracing::warn!(
            "no IMAGEGATE_SECRET_KEY with a shared database: export credentials can only be env:: references \
             (set the same IMAGEGATE_SECRET_KEY on every replica)"
        );
        return Ok(None);
    }
    if rt.data_dir.is_dir() {
        let path = rt.data_dir.join("secret.key");
        return Ok(Some(Arc::new(Sealer::load_or_create(&path)?)));
    }
    tracing::warn!("no IMAGEGATE_SECRET_KEY and no data folder: export credentials can only be env:: references");
    Ok(None)
}

/// A started server: its address, and the way to stop it.
pub struct Server {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Begins a graceful shutdown (as SIGTERM does).
    pub fn shutdown(&self) {
        self.stop.cancel();
    }

    /// Waits for the shutdown to finish.
    pub async fn wait(self) {
        let _ = self.done.await;
    }
}

/// Binds, starts the workers and serves until `shutdown()`. A port of 0 picks a free port, and
/// image URLs then use it too.
pub async fn start(mut rt: Runtime) -> Result<Server> {
    let listener = tokio::net::TcpListener::bind(rt.listen).await.with_context(|| format!("binding {}", rt.listen))?;
    let addr = listener.local_addr()?;
    if rt.public_url == format!("http://{}", rt.listen) {
        rt.public_url = format!("http://{addr}");
    }
    rt.listen = addr;
    crate::stats::handle();
    let app = App::build(rt).await?;
    let unfinished = app.store.count_unfinished().await?;
    if unfinished > 0 {
        tracing::info!(unfinished, "resuming unfinished tasks from before the last stop");
    }
    crate::flush::start(app.store.clone(), app.blobs.clone());
    app.workers.start();
    app.deliverer.start();
    app.exporter.start();
    crate::replicas::start(&app);
    crate::batches::start(app.clone());
    crate::delivery::sweeper::start(
        app.store.clone(),
        app.blobs.clone(),
        app.rt.sweep_interval,
        app.background.clone(),
    );
    crate::delivery::orphans::start(
        app.store.clone(),
        app.blobs.clone(),
        app.rt.sweep_interval,
        app.rt.orphan_grace,
        app.background.clone(),
    );
    let stop = CancellationToken::new();
    if let Some(at) = app.rt.metrics_listen {
        let listener = tokio::net::TcpListener::bind(at).await.with_context(|| format!("binding metrics {at}"))?;
        tracing::info!(addr = %listener.local_addr()?, "metrics served on their own address");
        tokio::spawn(crate::http::serve(
            listener,
            crate::api::metrics::own_router(app.clone()),
            app.clone(),
            stop.clone(),
        ));
    }
    let router = crate::api::router(app.clone());
    let done = tokio::spawn(crate::http::serve(listener, router, app.clone(), stop.clone()));
    Ok(Server { addr, app, stop, done })
}

pub(crate) fn mark_shutting_down(app: &App) {
    app.shutting_down.store(true, Ordering::Relaxed);
}
