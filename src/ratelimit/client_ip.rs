//! Which IP a request comes from: the peer, or `X-Forwarded-For` when the peer is a trusted proxy.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

fn trusted(ip: &IpAddr, proxies: &[IpNet]) -> bool {
    proxies.iter().any(|n| n.contains(ip))
}

/// Walks `X-Forwarded-For` from the right, skipping trusted proxies, only if the peer itself is
/// trusted; the first untrusted hop is the client. Anything unparsable stops the walk.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, proxies: &[IpNet]) -> Option<IpAddr> {
    let peer = peer?;
    if proxies.is_empty() || !trusted(&peer, proxies) {
        return Some(peer);
    }
    let mut client = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.parse::<IpAddr>() else { break };
        client = ip;
        if !trusted(&ip, proxies) {
            break;
        }
    }
    Some(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(xff: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("x-forwarded-for", xff.parse().unwrap());
        m
    }

    #[test]
    fn untrusted_peer_ignores_header() {
        let p: IpAddr = "203.0.113.9".parse().unwrap();
        assert_eq!(
            client_ip(Some(p), &h("1.2.3.4"), &["10.0.0.0/8".parse().unwrap()]),
            Some(p)
        );
        assert_eq!(client_ip(Some(p), &h("1.2.3.4"), &[]), Some(p));
    }

    #[test]
    fn trusted_chain_is_walked_from_the_right() {
        let proxies = ["10.0.0.0/8".parse().unwrap()];
        let p: IpAddr = "10.0.0.1".parse().unwrap();
        let got = client_ip(Some(p), &h("6.6.6.6, 1.2.3.4, 10.0.0.7"), &proxies);
        assert_eq!(got, Some("1.2.3.4".parse().unwrap()));
        let garbage = client_ip(Some(p), &h("not-an-ip"), &proxies);
        assert_eq!(garbage, Some(p));
    }
}
