//! Name resolution for outbound connections, behind a trait so that a deployment (or a test)
//! can supply its own: the SSRF guard judges whatever addresses it returns, at the check before
//! a URL is accepted and again when the connection is made.

use futures_util::future::BoxFuture;
use std::net::SocketAddr;

pub type Lookup = BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>;

pub trait Resolver: Send + Sync {
    /// The addresses of `host` (with `port` on each).
    fn lookup(&self, host: &str, port: u16) -> Lookup;
}

/// The system's resolver (getaddrinfo, on the blocking pool).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup(&self, host: &str, port: u16) -> Lookup {
        let host = host.to_string();
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), port)).await?.collect()) })
    }
}
