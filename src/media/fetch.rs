//! Downloads the media URL of a send request (wire-facts §3.13): http(s) only, 30 s, at most
//! 5 redirects, a size limit, `User-Agent: OnWapp/1.0`, and an SSRF guard that refuses
//! localhost names and private, loopback and link-local addresses at every hop. The guard
//! checks the addresses a name resolves to and connects to the checked address itself, so a
//! second DNS answer cannot slip a private address in.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, header};
use url::Url;

use super::web::{self, Exchange, WebError, human_size};

pub const USER_AGENT: &str = "OnWapp/1.0";
pub const MAX_REDIRECTS: usize = 5;
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Why a URL could not be fetched. The texts follow OnWapp's (`url: ...`, `file: ...`).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("url: only http and https schemes are allowed")]
    Scheme,
    #[error("url: invalid URL: {0}")]
    Invalid(String),
    #[error("url: localhost URLs are not allowed")]
    Localhost,
    #[error("url: URLs pointing to private/internal IPs are not allowed")]
    Private,
    #[error("url: failed to download: {0}")]
    Status(String),
    #[error("url: stopped after {MAX_REDIRECTS} redirects")]
    Redirects,
    #[error("url: redirect without a valid Location")]
    BadRedirect,
    #[error("url: no answer within {} s", TIMEOUT.as_secs())]
    Timeout,
    #[error("file: file size exceeds the {} limit", human_size(*.0))]
    TooLarge(u64),
    #[error("url: {0}")]
    Transport(String),
}

/// The body and the `Content-Type` it came with.
#[derive(Debug)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct Fetcher {
    pub max_bytes: u64,
    /// Lets URLs reach private and loopback addresses (tests, trusted networks).
    pub allow_private: bool,
}

impl Fetcher {
    pub async fn fetch(&self, raw: &str) -> Result<Fetched, FetchError> {
        tokio::time::timeout(TIMEOUT, self.follow(raw))
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    /// The checks [`Fetcher::fetch`] makes before it connects (scheme, host, addresses), without
    /// connecting: a forbidden URL is refused as soon as a request names it.
    /// A name that does not resolve now is left to the download, which tries again.
    pub async fn check(&self, raw: &str) -> Result<(), FetchError> {
        let url = Url::parse(raw.trim()).map_err(|e| FetchError::Invalid(e.to_string()))?;
        match tokio::time::timeout(TIMEOUT, self.target(&url)).await {
            Err(_) | Ok(Err(FetchError::Transport(_))) | Ok(Ok(_)) => Ok(()),
            Ok(Err(refused)) => Err(refused),
        }
    }

    async fn follow(&self, raw: &str) -> Result<Fetched, FetchError> {
        let mut url = Url::parse(raw.trim()).map_err(|e| FetchError::Invalid(e.to_string()))?;
        let headers = [
            (header::USER_AGENT.to_string(), USER_AGENT.to_string()),
            (header::ACCEPT.to_string(), "*/*".to_string()),
        ];
        for hop in 0..=MAX_REDIRECTS {
            let addr = self.target(&url).await?;
            let res = web::exchange(
                addr,
                &Exchange {
                    method: Method::GET,
                    url: &url,
                    headers: &headers,
                    body: Bytes::new(),
                    max_body: self.max_bytes,
                },
            )
            .await
            .map_err(|e| match e {
                WebError::TooLarge(n) => FetchError::TooLarge(n),
                other => FetchError::Transport(other.to_string()),
            })?;
            if matches!(res.status, 301 | 302 | 303 | 307 | 308) {
                if hop == MAX_REDIRECTS {
                    return Err(FetchError::Redirects);
                }
                let location = res
                    .headers
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(FetchError::BadRedirect)?;
                url = url.join(location).map_err(|_| FetchError::BadRedirect)?;
                continue;
            }
            if !(200..300).contains(&res.status) {
                let reason = http::StatusCode::from_u16(res.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                return Err(FetchError::Status(
                    format!("{} {reason}", res.status).trim_end().to_string(),
                ));
            }
            let content_type = res
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Ok(Fetched {
                bytes: res.body,
                content_type,
            });
        }
        Err(FetchError::Redirects)
    }

    /// The address to connect to for `url`, after the scheme and SSRF checks.
    async fn target(&self, url: &Url) -> Result<SocketAddr, FetchError> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Scheme);
        }
        let host = url
            .host_str()
            .ok_or_else(|| FetchError::Invalid("no host".into()))?;
        if !self.allow_private && is_localhost_name(host) {
            return Err(FetchError::Localhost);
        }
        let addrs = web::resolve(url)
            .await
            .map_err(|e| FetchError::Transport(e.to_string()))?;
        if !self.allow_private && addrs.iter().any(|a| !is_public(a.ip())) {
            return Err(FetchError::Private);
        }
        addrs
            .into_iter()
            .next()
            .ok_or_else(|| FetchError::Transport(format!("{host} has no address")))
    }
}

/// A name that always means this machine.
pub fn is_localhost_name(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost") || h == "ip6-localhost" || h == "ip6-loopback"
}

/// An address that reaches this machine or its link rather than a network service: loopback,
/// link-local (the cloud metadata address 169.254.169.254 among them), unspecified (and the
/// rest of 0.0.0.0/8), broadcast or multicast; IPv4-mapped and IPv4-compatible IPv6 addresses
/// are read as the IPv4 address they carry. Webhooks refuse these by default; private networks
/// stay allowed (a Kubernetes service, a compose neighbour).
pub fn is_local_target(ip: IpAddr) -> bool {
    let local_v4 = |v4: Ipv4Addr| {
        v4.is_loopback()
            || v4.is_link_local()
            || v4.is_unspecified()
            || v4.octets()[0] == 0
            || v4.is_broadcast()
            || v4.is_multicast()
    };
    match ip {
        IpAddr::V4(v4) => local_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => local_v4(v4),
            None => {
                v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
            }
        },
    }
}

/// The IPv4 address an IPv6 one carries: mapped (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`),
/// NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:AABB:CCDD::/48`); an address in one of these
/// forms is judged as the IPv4 address it reaches.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let low = Ipv4Addr::from_bits(v6.to_bits() as u32);
    if let Some(v4) = v6.to_ipv4_mapped() {
        Some(v4)
    } else if (s[..6] == [0; 6] && !v6.is_loopback() && !v6.is_unspecified())
        || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        Some(low)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::from_bits(
            (u32::from(s[1]) << 16) | u32::from(s[2]),
        ))
    } else {
        None
    }
}

/// An address on the public internet: not loopback, private, link-local, shared (CGNAT),
/// unspecified, broadcast, multicast or documentation space.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => public_v4(v4),
            None => public_v6(v6),
        },
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)))
}

fn public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)) // documentation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_targets_in_every_form() {
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::ffff:0.0.0.0",
            "64:ff9b::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
        ] {
            assert!(is_local_target(ip.parse().unwrap()), "{ip} is local");
        }
        for ip in [
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "100.64.0.1",
            "8.8.8.8",
            "fd00::1",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:10.0.0.1",
        ] {
            assert!(
                !is_local_target(ip.parse().unwrap()),
                "{ip} may be a webhook"
            );
        }
    }

    #[test]
    fn private_and_public_addresses() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "64:ff9b::10.0.0.1",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} is not public");
        }
        for ip in [
            "8.8.8.8",
            "157.240.1.1",
            "2a03:2880::1",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn localhost_names() {
        assert!(is_localhost_name("localhost"));
        assert!(is_localhost_name("LOCALHOST."));
        assert!(is_localhost_name("api.localhost"));
        assert!(!is_localhost_name("localhost.example.com"));
    }

    #[tokio::test]
    async fn the_guard_refuses_before_connecting() {
        let f = Fetcher {
            max_bytes: 1024,
            allow_private: false,
        };
        let e = f.fetch("ftp://example.com/x").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "url: only http and https schemes are allowed"
        );
        let e = f.fetch("http://localhost:1/x").await.unwrap_err();
        assert_eq!(e.to_string(), "url: localhost URLs are not allowed");
        let e = f.fetch("http://127.0.0.1:1/x").await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "url: URLs pointing to private/internal IPs are not allowed"
        );
        let e = f.fetch("http://[::1]:1/x").await.unwrap_err();
        assert!(matches!(e, FetchError::Private), "{e}");
    }
}
