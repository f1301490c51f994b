//! The HTTP clients the gateway reaches out with, one policy per kind of target:
//! - [`guarded`]: targets a customer or an upstream answer chose (webhook URLs, image URLs in
//!   answers). Public addresses only, judged by the resolver at connect time, so a name that
//!   re-binds to 127.0.0.1 after an earlier check still cannot reach it; never through a proxy
//!   (a proxy would connect on the gateway's behalf, past that check); redirects refused or
//!   followed only to URLs that pass the same rules; time-limited.
//! - [`upstream`]: the operator's own endpoints (Gemini, OpenAI-compatible). Any address (a
//!   gateway on the same network is normal), no redirects, and a proxy only when the
//!   configuration names one (`[providers] proxy`), never from `HTTP(S)_PROXY` by accident.
//!
//! Bodies from either are read with [`read_capped`].

use bytes::Bytes;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::sync::Arc;
use std::time::Duration;

use super::guard;
use super::resolver::Resolver;

/// Connect-time check: resolves through `resolver` and refuses non-public addresses.
struct PublicOnly {
    resolver: Arc<dyn Resolver>,
    allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let (resolver, allow_private) = (Arc::clone(&self.resolver), self.allow_private);
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port on the addresses it gets back.
            let addrs = guard::resolve_public(resolver.as_ref(), name.as_str(), 0, allow_private)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// How a guarded client behaves.
#[derive(Clone)]
pub struct Guarded {
    pub resolver: Arc<dyn Resolver>,
    pub allow_private: bool,
    /// Whole-request time limit.
    pub timeout: Duration,
    /// Redirects followed (each to a URL that passes the guard); 0: none.
    pub max_redirects: usize,
    pub user_agent: &'static str,
}

pub fn guarded(g: Guarded) -> reqwest::Result<reqwest::Client> {
    crate::install_crypto_provider();
    let (allow_private, max) = (g.allow_private, g.max_redirects);
    let redirects = if max == 0 {
        reqwest::redirect::Policy::none()
    } else {
        reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                attempt.error("too many redirects")
            } else if let Err(e) = guard::check_url(attempt.url().as_str(), allow_private) {
                attempt.error(format!("redirect target {e}"))
            } else {
                attempt.follow()
            }
        })
    };
    reqwest::Client::builder()
        .no_proxy()
        .redirect(redirects)
        .timeout(g.timeout)
        .connect_timeout(g.timeout.min(Duration::from_secs(10)))
        .dns_resolver(Arc::new(PublicOnly { resolver: g.resolver, allow_private }))
        .user_agent(g.user_agent)
        .build()
}

/// A client builder for an operator-configured upstream (callers add what their protocol
/// needs, such as HTTP/2 prior knowledge).
pub fn upstream(
    connect_timeout: Duration,
    keepalive: Duration,
    proxy: Option<&str>,
) -> reqwest::Result<reqwest::ClientBuilder> {
    crate::install_crypto_provider();
    let builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .tcp_keepalive(keepalive)
        .pool_idle_timeout(Duration::from_secs(90))
        .user_agent(concat!("imagegate/", env!("CARGO_PKG_VERSION")));
    Ok(match proxy {
        Some(p) => builder.proxy(reqwest::Proxy::all(p)?),
        None => builder.no_proxy(),
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("reading the body failed")]
    Network(#[source] reqwest::Error),
}

/// Reads a whole body, refusing one larger than `max` bytes as soon as that is known (from
/// `Content-Length`, or while reading): a misbehaving peer cannot make the gateway buffer
/// without bound.
pub async fn read_capped(mut resp: reqwest::Response, max: usize) -> Result<Bytes, ReadError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(ReadError::TooLarge(max));
    }
    let mut body = Vec::with_capacity(resp.content_length().map_or(64 * 1024, |n| n as usize));
    while let Some(chunk) = resp.chunk().await.map_err(ReadError::Network)? {
        if body.len() + chunk.len() > max {
            return Err(ReadError::TooLarge(max));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::resolver::SystemResolver;

    fn opts(allow_private: bool) -> Guarded {
        Guarded {
            resolver: Arc::new(SystemResolver),
            allow_private,
            timeout: Duration::from_secs(5),
            max_redirects: 0,
            user_agent: "test",
        }
    }

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_never_connected_to() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let strict = guarded(opts(false)).unwrap();
        let err = strict.get(format!("http://localhost:{port}/")).send().await.unwrap_err();
        assert!(err.is_connect() || err.is_request(), "{err:?}");
        let accepted = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(accepted.is_err(), "the strict client never opened a connection");
        // The same request with private targets allowed does connect (so the check above can fail).
        let lax = guarded(opts(true)).unwrap();
        let request = tokio::spawn(async move { lax.get(format!("http://localhost:{port}/")).send().await });
        let accepted = tokio::time::timeout(Duration::from_secs(5), listener.accept()).await;
        assert!(accepted.is_ok_and(|a| a.is_ok()), "with allow_private the connection is made");
        request.abort();
    }
}
