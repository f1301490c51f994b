//! The only HTTP client allowed to reach customer URLs: no redirects, a per-attempt timeout,
//! and a DNS resolver that refuses non-public addresses at connect time, so a name that
//! re-binds to 127.0.0.1 after the submit-time check still cannot reach it.

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::sync::Arc;
use std::time::Duration;

use super::guard;

struct PublicOnly {
    allow_private: bool,
}

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port on the addresses it gets back.
            let addrs = guard::resolve_public(name.as_str(), 0, allow_private)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

pub fn build(timeout: Duration, allow_private: bool) -> reqwest::Result<reqwest::Client> {
    crate::install_crypto_provider();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .dns_resolver(Arc::new(PublicOnly { allow_private }))
        .user_agent(concat!("imagegate-webhooks/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn names_resolving_to_private_addresses_are_refused_at_connect_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let strict = build(Duration::from_secs(2), false).unwrap();
        let err = strict.get(format!("http://localhost:{port}/")).send().await.unwrap_err();
        assert!(err.is_connect() || err.is_request(), "{err:?}");
        let lax = build(Duration::from_secs(2), true).unwrap();
        let accepted = tokio::spawn(async move { listener.accept().await.is_ok() });
        let _ = lax.get(format!("http://localhost:{port}/")).send().await;
        assert!(accepted.await.unwrap(), "with allow_private the connection is made");
    }
}
