//! SSRF guard: which outbound targets are allowed (webhooks, image URLs from upstream answers).
//! Pure address rules plus a DNS check. A URL must be http(s) and resolve only to public
//! addresses; loopback, private, link-local, CGNAT, multicast, unspecified, reserved and
//! documentation ranges are refused, as are IPv4-mapped/compatible/NAT64/6to4 IPv6 forms that
//! embed such an IPv4 address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;
use url::{Host, Url};

use super::resolver::Resolver;

/// How long a lookup may take before the target is refused.
pub const DNS_TIMEOUT: Duration = Duration::from_secs(5);

/// Messages name what the caller sent, never what a name resolved to: a client must not learn
/// the gateway's internal addresses by probing names.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GuardError {
    #[error("is not a valid URL")]
    NotAUrl,
    #[error("must use http or https")]
    Scheme,
    #[error("must not contain credentials")]
    Credentials,
    /// An address given literally (it is the caller's own text).
    #[error("points to a non-public address ({0})")]
    NotPublic(String),
    /// A name that resolves to a non-public address (which one is not told).
    #[error("host {0:?} resolves to a non-public address")]
    ResolvesPrivate(String),
    #[error("host {0:?} could not be resolved")]
    Unresolvable(String),
    #[error("host {0:?} did not resolve within {secs} s", secs = DNS_TIMEOUT.as_secs())]
    SlowDns(String),
}

/// Checks a URL's shape and, for IP literals and `localhost` names, its address.
pub fn check_url(raw: &str, allow_private: bool) -> Result<Url, GuardError> {
    let url = Url::parse(raw).map_err(|_| GuardError::NotAUrl)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(GuardError::Scheme);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(GuardError::Credentials);
    }
    match url.host() {
        None => return Err(GuardError::NotAUrl),
        Some(Host::Ipv4(ip)) => check_ip(IpAddr::V4(ip), allow_private)?,
        Some(Host::Ipv6(ip)) => check_ip(IpAddr::V6(ip), allow_private)?,
        Some(Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if !allow_private && (name == "localhost" || name.ends_with(".localhost")) {
                return Err(GuardError::ResolvesPrivate(name));
            }
        }
    }
    Ok(url)
}

pub fn check_ip(ip: IpAddr, allow_private: bool) -> Result<(), GuardError> {
    if allow_private || is_public(ip) { Ok(()) } else { Err(GuardError::NotPublic(ip.to_string())) }
}

/// Resolves `host` (within [`DNS_TIMEOUT`]) and requires every address to be public (a name
/// that mixes public and private addresses is refused: the connection could go to either).
pub async fn resolve_public(
    resolver: &dyn Resolver,
    host: &str,
    port: u16,
    allow_private: bool,
) -> Result<Vec<SocketAddr>, GuardError> {
    let addrs = match tokio::time::timeout(DNS_TIMEOUT, resolver.lookup(host, port)).await {
        Err(_) => return Err(GuardError::SlowDns(host.to_string())),
        Ok(Err(_)) => return Err(GuardError::Unresolvable(host.to_string())),
        Ok(Ok(a)) => a,
    };
    if addrs.is_empty() {
        return Err(GuardError::Unresolvable(host.to_string()));
    }
    if addrs.iter().any(|a| check_ip(a.ip(), allow_private).is_err()) {
        return Err(GuardError::ResolvesPrivate(host.to_string()));
    }
    Ok(addrs)
}

/// Full check before a URL is accepted: shape, then DNS for names.
pub async fn check_target(resolver: &dyn Resolver, raw: &str, allow_private: bool) -> Result<Url, GuardError> {
    let url = check_url(raw, allow_private)?;
    if let Some(Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        resolve_public(resolver, name, port, allow_private).await?;
    }
    Ok(url)
}

pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(o[0] == 0 // "this network", incl. 0.0.0.0
        || o[0] == 10
        || o[0] == 127
        || (o[0] == 100 && (64..128).contains(&o[1])) // CGNAT 100.64/10
        || (o[0] == 169 && o[1] == 254)
        || (o[0] == 172 && (16..32).contains(&o[1]))
        || (o[0] == 192 && o[1] == 168)
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 192 && o[1] == 0 && o[2] == 2) // TEST-NET-1
        || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
        || (o[0] == 198 && o[1] == 51 && o[2] == 100) // TEST-NET-2
        || (o[0] == 203 && o[1] == 0 && o[2] == 113) // TEST-NET-3
        || o[0] >= 224) // multicast, reserved, broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    // Forms that embed an IPv4 address: judge by that address.
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if s[0..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
        return false; // IPv4-mapped (::ffff:a.b.c.d) and IPv4-compatible (::a.b.c.d): never needed for webhooks
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0, 0, 0, 0] {
        return is_public_v4(embedded(s[6], s[7])); // NAT64 64:ff9b::/96
    }
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2])); // 6to4
    }
    !((s[0] & 0xff00) == 0xff00 // multicast
        || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (s[0] & 0xffc0) == 0xfe80 // link-local
        || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
        || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
        || (s[0] == 0x0100 && s[1..4] == [0, 0, 0])) // discard-only 100::/64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_private_form_is_refused() {
        for url in [
            "http://127.0.0.1/hook",
            "http://127.1.2.3/",
            "http://localhost:8080/",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://[::1]/",
            "http://10.0.0.5/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::127.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[2002:7f00:1::]/",
            "http://[fe80::1]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[ff02::1]/",
            "http://0.0.0.0/",
            "http://[::]/",
            "http://224.0.0.1/",
            "http://255.255.255.255/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://017700000001/",
        ] {
            assert!(
                matches!(check_url(url, false), Err(GuardError::NotPublic(_) | GuardError::ResolvesPrivate(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn bad_schemes_and_shapes_are_refused() {
        assert_eq!(check_url("file:///etc/passwd", false), Err(GuardError::Scheme));
        assert_eq!(check_url("gopher://example.com/", false), Err(GuardError::Scheme));
        assert_eq!(check_url("ftp://example.com/", false), Err(GuardError::Scheme));
        assert_eq!(check_url("not a url", false), Err(GuardError::NotAUrl));
        assert_eq!(check_url("https://user:pw@example.com/", false), Err(GuardError::Credentials));
    }

    #[test]
    fn public_targets_pass_and_the_dev_switch_allows_private() {
        assert!(check_url("https://hooks.example.com/imagegate", false).is_ok());
        assert!(check_url("http://93.184.216.34/", false).is_ok());
        assert!(check_url("http://[2606:4700::1111]/", false).is_ok());
        assert!(check_url("http://127.0.0.1:9000/", true).is_ok());
    }

    #[tokio::test]
    async fn names_that_resolve_to_loopback_are_refused_without_saying_where_they_point() {
        let r = super::super::resolver::SystemResolver;
        let err = resolve_public(&r, "localhost", 80, false).await.unwrap_err();
        assert_eq!(err, GuardError::ResolvesPrivate("localhost".into()));
        assert!(!err.to_string().contains("127.0.0.1"), "{err}");
        assert!(resolve_public(&r, "localhost", 80, true).await.is_ok());
    }

    #[tokio::test]
    async fn a_lookup_that_hangs_is_refused_in_bounded_time() {
        struct Hangs;
        impl Resolver for Hangs {
            fn lookup(&self, _: &str, _: u16) -> super::super::resolver::Lookup {
                Box::pin(std::future::pending())
            }
        }
        tokio::time::pause();
        let err = resolve_public(&Hangs, "slow.example", 443, false).await.unwrap_err();
        assert_eq!(err, GuardError::SlowDns("slow.example".into()));
    }
}
