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
