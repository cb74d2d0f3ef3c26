//! The cluster's variables: `NODE_ID` (or `NODE_ID_FROM_HOSTNAME`), `NODE_ADVERTISE_URL`,
//! `CLUSTER_PEERS`, `CLUSTER_SECRET`, `CLUSTER_VOTERS`, `CLUSTER_LEASE_RENEW_MS`,
//! `CLUSTER_LEASE_TTL_MS`, and for TLS between nodes `CLUSTER_TLS_CERT`, `CLUSTER_TLS_KEY`,
//! `CLUSTER_TLS_CA`, `CLUSTER_TLS_CLIENT_AUTH` (see `tls.rs`). With none of them set the node is a one-voter cluster of itself (the
//! default single-node mode).
//!
//! In a Kubernetes StatefulSet every pod has the same environment; `NODE_ID_FROM_HOSTNAME=true`
//! gives each its own id from its stable name: `onwapp-0` is node 1, `onwapp-1` node 2, and so on
//! (ids start at 1; the ordinal is the number after the last `-` of the host name).

use std::time::Duration;

use crate::config::ConfigError;

#[derive(Clone, PartialEq)]
pub struct ClusterSettings {
    /// Stable, unique id of this node (`NODE_ID`, default 1).
    pub node_id: u64,
    /// The URL other nodes reach this node's API at (`NODE_ADVERTISE_URL`; default
    /// `http://127.0.0.1:<PORT>`).
    pub advertise_url: Option<String>,
    /// The members to form or join, `id=url` (`CLUSTER_PEERS`); empty: a cluster of one.
    pub peers: Vec<(u64, String)>,
    /// Secret of the node-to-node endpoints and of forwarded requests (`CLUSTER_SECRET`;
    /// required with peers, generated for a cluster of one).
    pub secret: Option<String>,
    /// Raft voters to form (`CLUSTER_VOTERS`, default 3); later nodes join as learners.
    pub voters: usize,
    pub lease_renew: Duration,
    pub lease_ttl: Duration,
    /// TLS between nodes (`https://` member URLs).
    pub tls: Option<TlsFiles>,
}

/// PEM files of TLS between nodes.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsFiles {
    /// This node's certificate chain (`CLUSTER_TLS_CERT`), presented to members that connect
    /// and, with client authentication, to the members it connects to.
    pub cert: Option<std::path::PathBuf>,
    /// Its private key (`CLUSTER_TLS_KEY`).
    pub key: Option<std::path::PathBuf>,
    /// The CA certificates members' certificates are checked against (`CLUSTER_TLS_CA`).
    pub ca: std::path::PathBuf,
    /// Members must present a certificate signed by the CA (`CLUSTER_TLS_CLIENT_AUTH`).
    pub client_auth: bool,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        ClusterSettings {
            node_id: 1,
            advertise_url: None,
            peers: Vec::new(),
            secret: None,
            voters: 3,
            lease_renew: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(7),
            tls: None,
        }
    }
}

impl std::fmt::Debug for ClusterSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterSettings")
            .field("node_id", &self.node_id)
            .field("advertise_url", &self.advertise_url)
            .field("peers", &self.peers)
            .field("secret", &self.secret.as_ref().map(|_| "<set>"))
            .field("voters", &self.voters)
            .field("lease_renew", &self.lease_renew)
            .field("lease_ttl", &self.lease_ttl)
            .field("tls", &self.tls)
            .finish()
    }
}

fn err(var: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError {
        var,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn whole(var: &'static str, v: &str) -> Result<u64, ConfigError> {
    match v.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(err(var, v, "must be a whole number greater than zero")),
    }
}

/// [`whole`], at most `max` (a lease of days would keep a dead node's sessions down for days).
fn at_most(var: &'static str, v: &str, max: u64) -> Result<u64, ConfigError> {
    let n = whole(var, v)?;
    if n > max {
        return Err(err(var, v, &format!("must be at most {max}")));
    }
    Ok(n)
}

/// `true`/`1` or `false`/`0` (unset: false).
fn flag(get: &dyn Fn(&str) -> Option<String>, var: &'static str) -> Result<bool, ConfigError> {
    match get(var).as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(v) => Err(err(var, v, "must be true or false")),
    }
}

fn http_url(var: &'static str, v: &str) -> Result<String, ConfigError> {
    match url::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(v.trim_end_matches('/').to_string())
        }
        _ => Err(err(
            var,
            &crate::config::redact_url(v),
            "must be an http:// or https:// URL with a host",
        )),
    }
}

/// The TLS variables, checked against the member URLs: every URL has the same scheme (the
/// secret never goes out in the clear to one member and encrypted to another), `https://`
/// needs the CA, an `https://` advertise URL this node's certificate and key.
fn tls_files(
    get: &dyn Fn(&str) -> Option<String>,
    s: &ClusterSettings,
) -> Result<Option<TlsFiles>, ConfigError> {
    let path = |k: &'static str| -> Result<Option<std::path::PathBuf>, ConfigError> {
        match get(k) {
            None => Ok(None),
            Some(v) if std::path::Path::new(&v).is_file() => Ok(Some(v.into())),
            Some(v) => Err(err(k, &v, "must name a readable PEM file")),
        }
    };
    let (cert, key, ca) = (
        path("CLUSTER_TLS_CERT")?,
        path("CLUSTER_TLS_KEY")?,
        path("CLUSTER_TLS_CA")?,
    );
    let client_auth = flag(get, "CLUSTER_TLS_CLIENT_AUTH")?;
    let urls: Vec<&str> = s
        .advertise_url
        .iter()
        .map(String::as_str)
        .chain(s.peers.iter().map(|(_, u)| u.as_str()))
        .collect();
    let https = urls.iter().filter(|u| u.starts_with("https://")).count();
    if https > 0 && https < urls.len() {
        return Err(err(
            "CLUSTER_PEERS",
            &v_or(get, "CLUSTER_PEERS"),
            "NODE_ADVERTISE_URL and every member URL must all be http:// or all https://",
        ));
    }
    if https == 0 {
        let set = [
            ("CLUSTER_TLS_CERT", cert.is_some()),
            ("CLUSTER_TLS_KEY", key.is_some()),
            ("CLUSTER_TLS_CA", ca.is_some()),
            ("CLUSTER_TLS_CLIENT_AUTH", client_auth),
        ]
        .into_iter()
        .find(|(_, set)| *set);
        if let Some((var, _)) = set {
            return Err(err(
                var,
                &v_or(get, var),
                "TLS between nodes needs https:// in NODE_ADVERTISE_URL and CLUSTER_PEERS",
            ));
        }
        return Ok(None);
    }
    let Some(ca) = ca else {
        return Err(err(
            "CLUSTER_TLS_CA",
            "",
            "is required with https:// member URLs (the CA members' certificates are checked against)",
        ));
    };
    if cert.is_none() || key.is_none() {
        return Err(err(
            if cert.is_none() {
                "CLUSTER_TLS_CERT"
            } else {
                "CLUSTER_TLS_KEY"
            },
            "",
            "is required with an https:// NODE_ADVERTISE_URL (this node's certificate and key)",
        ));
    }
    Ok(Some(TlsFiles {
        cert,
        key,
        ca,
        client_auth,
    }))
}

/// The node id of a StatefulSet pod named `host` (`<name>-<ordinal>`): the ordinal plus one.
pub fn node_id_of_host(host: &str) -> Result<u64, ConfigError> {
    // A fully qualified name counts by its first label (`onwapp-2.onwapp-peers...`).
    let short = host.split('.').next().unwrap_or("");
    short
        .rsplit_once('-')
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .and_then(|n| n.checked_add(1))
        .ok_or_else(|| {
            err(
                "NODE_ID_FROM_HOSTNAME",
                host,
                "the host name must end with -<ordinal> (a StatefulSet pod, e.g. onwapp-0)",
            )
        })
}

impl ClusterSettings {
    /// Reads the variables through `get` (trimmed, empty = unset); `postgres` says whether
    /// `DATABASE_URL` names Postgres (a cluster of several nodes needs it).
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
        postgres: bool,
    ) -> Result<Self, ConfigError> {
        let mut s = ClusterSettings::default();
        let from_host = flag(get, "NODE_ID_FROM_HOSTNAME")?;
        match (get("NODE_ID"), from_host) {
            (Some(_), true) => {
                return Err(err(
                    "NODE_ID_FROM_HOSTNAME",
                    "true",
                    "cannot be used together with NODE_ID: set one of them",
                ));
            }
            (Some(v), false) => s.node_id = whole("NODE_ID", &v)?,
            (None, true) => {
                let host = get("HOSTNAME").or_else(|| {
                    std::fs::read_to_string("/proc/sys/kernel/hostname")
                        .ok()
                        .map(|h| h.trim().to_string())
                });
                s.node_id = node_id_of_host(host.as_deref().unwrap_or(""))?;
            }
            (None, false) => {}
        }
        if let Some(v) = get("NODE_ADVERTISE_URL") {
            s.advertise_url = Some(http_url("NODE_ADVERTISE_URL", &v)?);
        }
        if let Some(v) = get("CLUSTER_PEERS") {
            for item in v.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let Some((id, url)) = item.split_once('=') else {
                    return Err(err(
                        "CLUSTER_PEERS",
                        &v,
                        "each entry must be id=http://host:port",
                    ));
                };
                let id = whole("CLUSTER_PEERS", id.trim())?;
                if s.peers.iter().any(|(p, _)| *p == id) {
                    return Err(err("CLUSTER_PEERS", &v, "a node id is listed twice"));
                }
                s.peers.push((id, http_url("CLUSTER_PEERS", url.trim())?));
            }
        }
        if let Some(v) = get("CLUSTER_SECRET") {
            if v.len() < 16 {
                return Err(err(
                    "CLUSTER_SECRET",
                    "<hidden>",
                    "must be at least 16 characters",
                ));
            }
            if !v.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
                return Err(err(
                    "CLUSTER_SECRET",
                    "<hidden>",
                    "must be printable ASCII (it travels in a header)",
                ));
            }
            s.secret = Some(v);
        }
        if let Some(v) = get("CLUSTER_VOTERS") {
            s.voters = whole("CLUSTER_VOTERS", &v)? as usize;
        }
        if let Some(v) = get("CLUSTER_LEASE_RENEW_MS") {
            s.lease_renew = Duration::from_millis(at_most("CLUSTER_LEASE_RENEW_MS", &v, 60_000)?);
        }
        if let Some(v) = get("CLUSTER_LEASE_TTL_MS") {
            s.lease_ttl = Duration::from_millis(at_most("CLUSTER_LEASE_TTL_MS", &v, 600_000)?);
        }
        s.tls = tls_files(get, &s)?;
        if s.lease_ttl < s.lease_renew * 5 / 2 {
            return Err(err(
                "CLUSTER_LEASE_TTL_MS",
                &s.lease_ttl.as_millis().to_string(),
                "must be at least 2.5 times CLUSTER_LEASE_RENEW_MS",
            ));
        }
        if !s.peers.is_empty() {
            if s.secret.is_none() {
                return Err(err(
                    "CLUSTER_SECRET",
                    "",
                    "is required when CLUSTER_PEERS is set",
                ));
            }
            if !postgres {
                return Err(err(
                    "CLUSTER_PEERS",
                    &v_or(get, "CLUSTER_PEERS"),
                    "a cluster keeps its state in Postgres: set DATABASE_URL=postgres://...",
                ));
            }
            if s.advertise_url.is_none() {
                return Err(err(
                    "NODE_ADVERTISE_URL",
                    "",
                    "is required when CLUSTER_PEERS is set (the URL other nodes reach this one at)",
                ));
            }
        }
        Ok(s)
    }

    /// Whether this node runs with others (peers configured).
    pub fn clustered(&self) -> bool {
        !self.peers.is_empty()
    }
}

fn v_or(get: &dyn Fn(&str) -> Option<String>, k: &str) -> String {
    get(k).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)], postgres: bool) -> Result<ClusterSettings, ConfigError> {
        let map: std::collections::HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ClusterSettings::from_lookup(&|k| map.get(k).cloned(), postgres)
    }

    #[test]
    fn a_statefulset_pod_takes_its_ordinal_plus_one() {
        let id = |vars: &[(&str, &str)]| parse(vars, false).map(|s| s.node_id);
        let on = ("NODE_ID_FROM_HOSTNAME", "true");
        assert_eq!(id(&[on, ("HOSTNAME", "onwapp-0")]).unwrap(), 1);
        assert_eq!(id(&[on, ("HOSTNAME", "my-release-onwapp-12")]).unwrap(), 13);
        assert_eq!(
            id(&[on, ("HOSTNAME", "onwapp-2.onwapp-peers.ns.svc")]).unwrap(),
            3
        );
        for bad in ["onwapp", "onwapp-", "onwapp-x", ""] {
            let e = id(&[on, ("HOSTNAME", bad)]).unwrap_err();
            assert_eq!(e.var, "NODE_ID_FROM_HOSTNAME", "{bad}");
        }
        let both = id(&[on, ("HOSTNAME", "onwapp-0"), ("NODE_ID", "4")]).unwrap_err();
        assert_eq!(both.var, "NODE_ID_FROM_HOSTNAME");
        assert_eq!(
            id(&[("NODE_ID_FROM_HOSTNAME", "false"), ("HOSTNAME", "x")]).unwrap(),
            1
        );
        assert!(id(&[("NODE_ID_FROM_HOSTNAME", "yes")]).is_err());
    }

    #[test]
    fn defaults_are_a_cluster_of_one() {
        let s = parse(&[], false).unwrap();
        assert_eq!(s.node_id, 1);
        assert!(!s.clustered());
        assert_eq!(s.lease_ttl, Duration::from_secs(7));
    }

    #[test]
    fn peers_need_a_secret_postgres_and_an_address() {
        let peers = (
            "CLUSTER_PEERS",
            "1=http://10.0.0.1:3000, 2=http://10.0.0.2:3000",
        );
        let secret = ("CLUSTER_SECRET", "0123456789abcdef0123");
        let addr = ("NODE_ADVERTISE_URL", "http://10.0.0.1:3000/");
        assert_eq!(parse(&[peers], true).unwrap_err().var, "CLUSTER_SECRET");
        assert_eq!(
            parse(&[peers, secret, addr], false).unwrap_err().var,
            "CLUSTER_PEERS"
        );
        assert_eq!(
            parse(&[peers, secret], true).unwrap_err().var,
            "NODE_ADVERTISE_URL"
        );
        let unprintable = ("CLUSTER_SECRET", "0123456789abcdef\u{e9}0123");
        assert_eq!(
            parse(&[peers, unprintable, addr], true).unwrap_err().var,
            "CLUSTER_SECRET"
        );
        let s = parse(&[peers, secret, addr, ("NODE_ID", "2")], true).unwrap();
        assert_eq!(s.peers[1], (2, "http://10.0.0.2:3000".to_string()));
        assert_eq!(s.advertise_url.as_deref(), Some("http://10.0.0.1:3000"));
        assert!(!format!("{s:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (k, v) in [
            ("NODE_ID", "0"),
            ("NODE_ID", "x"),
            ("CLUSTER_PEERS", "1:http://a"),
            ("CLUSTER_PEERS", "1=ftp://a"),
            ("CLUSTER_SECRET", "short"),
            ("CLUSTER_LEASE_TTL_MS", "2000"),
            ("NODE_ADVERTISE_URL", "localhost:3000"),
        ] {
            assert_eq!(parse(&[(k, v)], true).unwrap_err().var, k, "{k}={v}");
        }
        let dup = parse(&[("CLUSTER_PEERS", "1=http://a:1,1=http://b:1")], true);
        assert_eq!(dup.unwrap_err().var, "CLUSTER_PEERS");
    }
}
