//! PostgreSQL connections: a pool (deadpool) of tokio-postgres clients, each statement
//! prepared once per connection and reused, TLS as the URL's `sslmode` says (`tls.rs`).
//!
//! Every statement runs under the server's `statement_timeout` (set per connection from
//! config), and waiting for a free connection is bounded too: a database that stops answering
//! turns into errors (`/readyz` fails, requests answer 503) instead of requests piling up. A
//! connection that broke is dropped and replaced by the pool on its next use, so the store
//! recovers by itself when the database comes back.

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::config::SslMode;

use crate::store::{Options, StoreError};

/// How long a request waits for a free connection before it is told the database is busy.
const WAIT_FOR_CONNECTION: Duration = Duration::from_secs(10);
/// How long opening a new connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Db {
    pool: Pool,
    /// The parsed settings, for connections outside the pool (the LISTEN connection).
    pub config: tokio_postgres::Config,
    pub tls: super::tls::TlsSettings,
}

impl Db {
    pub fn open(options: &Options) -> Result<Db, StoreError> {
        let (url, tls) = super::tls::split_url(&options.url)?;
        let mut config = tokio_postgres::Config::from_str(&url)
            .map_err(|e| StoreError::Unavailable(format!("the PostgreSQL URL does not parse: {e}")))?;
        let mut server_options = config.get_options().map(str::to_string).unwrap_or_default();
        server_options.push_str(&format!(" -c statement_timeout={}", options.statement_timeout.as_millis()));
        config.options(server_options.trim());
        config.connect_timeout(CONNECT_TIMEOUT);
        // A server that vanished without closing the connection is noticed within a minute.
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("imagegate");
        }
        let manager = match config.get_ssl_mode() {
            SslMode::Disable => Manager::from_config(config.clone(), tokio_postgres::NoTls, manager_config()),
            _ => Manager::from_config(config.clone(), super::tls::connector(&tls)?, manager_config()),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT_FOR_CONNECTION))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Unavailable(format!("building the PostgreSQL pool: {e}")))?;
        Ok(Db { pool, config, tls })
    }

    /// A connection from the pool.
    pub async fn conn(&self) -> Result<Object, StoreError> {
        self.pool.get().await.map_err(|e| match e {
            deadpool_postgres::PoolError::Backend(e) => StoreError::Postgres(e),
            other => StoreError::Unavailable(format!("no PostgreSQL connection: {other}")),
        })
    }
}

fn manager_config() -> ManagerConfig {
    // `Fast`: a connection the server closed shows as closed and is replaced; one that broke
    // mid-statement is dropped by the pool when its error comes back.
    ManagerConfig { recycling_method: RecyclingMethod::Fast }
}

/// Whether an error means the statement may succeed if run again from the start: a
/// serialization failure or a deadlock the server broke.
pub fn is_retryable(e: &StoreError) -> bool {
    use tokio_postgres::error::SqlState;
    match e {
        StoreError::Postgres(e) => {
            matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
        }
        _ => false,
    }
}

/// Runs `f` again (a few times) when the database asks for it: see `is_retryable`.
pub async fn retrying<R, Fut>(mut f: impl FnMut() -> Fut) -> Result<R, StoreError>
where
    Fut: std::future::Future<Output = Result<R, StoreError>>,
{
    let mut tries = 0;
    loop {
        match f().await {
            Err(e) if is_retryable(&e) && tries < 5 => tries += 1,
            done => return done,
        }
    }
}
