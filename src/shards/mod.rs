//! The server's side of the cluster (design sections 1, 3 and 4). The `onwapp-cluster` crate
//! keeps the Raft-replicated shard map; here it is started with the node's settings, its
//! ownership events drive the engine (`driver`), and requests for a session owned elsewhere are
//! forwarded to the owner (`forward`). A single node is a one-voter cluster on the same path.

pub mod driver;
pub mod forward;
pub mod peer;
pub mod settings;
pub mod tls;
pub mod tls_listen;

use std::{sync::Arc, time::Duration};

use http::{HeaderMap, HeaderValue};
use onwapp_cluster::{ClusterConfig, Node, Owner, shard_of};

use crate::{config::Config, observability::Metrics, store::Fences};

/// Header naming the node that forwarded a request.
pub const FORWARDED_BY: &str = "x-onwapp-forwarded-by";
/// Header with the epoch of the shard as the forwarding node saw it.
pub const SHARD_EPOCH: &str = "x-shard-epoch";
/// Header proving a forwarded request comes from a member (`Bearer <CLUSTER_SECRET>`).
pub const CLUSTER_AUTH: &str = "x-onwapp-cluster-auth";
/// Response header of a session's request: the epoch of the shard the serving node owned
/// when it served it (forwarded answers keep the owner's).
pub const SERVED_EPOCH: &str = "x-onwapp-served-epoch";
/// Header of an owner's answer to a member: the route template it matched, which the entry
/// node counts the request under (and takes off before relaying the answer).
pub const ROUTE: &str = "x-onwapp-route";
/// Header of a 421 answer: the URL of the node that owns the session.
pub const OWNER: &str = "x-onwapp-owner";

/// Where a session's requests are served.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    /// This node owns the session's shard, at this epoch.
    Local { shard: u32, epoch: u64 },
    /// Another node does.
    Remote { shard: u32, owner: Owner },
    /// Nobody does right now (a failover or a handoff in progress).
    Unowned { shard: u32 },
}

/// This node's membership: the running cluster node and what forwarding needs.
pub struct Shards {
    node: Node,
    /// The epochs the store holds: a shard is served here once its fence is held.
    fences: Arc<Fences>,
    /// `Bearer <CLUSTER_SECRET>`, as forwarded requests carry it.
    member_proof: HeaderValue,
    node_id: u64,
    /// This node's id as forwarded requests carry it ([`FORWARDED_BY`]).
    node_id_header: HeaderValue,
    peers: peer::Peers,
    /// TLS between nodes, when the member URLs are `https://`.
    tls: Option<tls::ClusterTls>,
    /// Forwarding and ownership counters (`onwapp_cluster_*`).
    metrics: Arc<Metrics>,
}

impl Shards {
    /// Starts the node (one voter of its own when no peers are configured) and, for a cluster
    /// of one, waits until it owns every shard, so requests never wait for placement.
    /// `epoch_floor` is the highest epoch the database's fences have seen: a map rebuilt from
    /// nothing (a wiped data directory) numbers its epochs above it.
    pub async fn start(
        config: &Config,
        fences: Arc<Fences>,
        epoch_floor: u64,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Shards> {
        let s = &config.cluster;
        let secret = s
            .secret
            .clone()
            .unwrap_or_else(|| hex::encode(rand::random::<[u8; 24]>()));
        let addr = s
            .advertise_url
            .clone()
            .unwrap_or_else(|| format!("http://127.0.0.1:{}", config.port));
        let tls = s
            .tls
            .as_ref()
            .map(tls::load)
            .transpose()
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let peers = match &tls {
            Some(t) => peer::Peers::with_tls(t.connector.clone()),
            None => peer::Peers::default(),
        };
        let mut cc = ClusterConfig::new(s.node_id, addr, &config.data_dir, secret.clone());
        if tls.is_some() {
            // Raft goes through the same TLS client as forwarded requests.
            cc.transport = Some(onwapp_cluster::network::SharedTransport(Arc::new(
                peers.clone(),
            )));
        }
        cc.peers = s.peers.clone();
        cc.voters = s.voters;
        cc.lease_renew = s.lease_renew;
        cc.lease_ttl = s.lease_ttl;
        cc.epoch_floor = epoch_floor;
        if !s.clustered() {
            // A cluster of one has nobody to hand its shards to: a stalled disk must not make
            // it stop its own sessions, so its lease is long.
            cc.lease_ttl = cc.lease_ttl.max(Duration::from_secs(300));
        } else if s.lease_ttl < Duration::from_secs(5) {
            // Short leases (tests, drills) want elections and handoffs on the same scale.
            cc = cc.fast();
            cc.lease_renew = s.lease_renew;
            cc.lease_ttl = s.lease_ttl;
        }
        let node = Node::start(cc)
            .await
            .map_err(|e| anyhow::anyhow!("cluster: {e}"))?;
        let shards = Shards {
            node,
            fences,
            member_proof: HeaderValue::from_str(&format!("Bearer {secret}"))
                .map_err(|_| anyhow::anyhow!("CLUSTER_SECRET: must be printable ASCII"))?,
            node_id: s.node_id,
            node_id_header: HeaderValue::from(s.node_id),
            peers,
            tls,
            metrics,
        };
        if !s.clustered() {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while shards.node.owned_shards().len() < onwapp_cluster::SHARDS as usize {
                if tokio::time::Instant::now() > deadline {
                    anyhow::bail!("cluster: this node did not take its shards within 10 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        Ok(shards)
    }

    pub fn node(&self) -> &Node {
        &self.node
    }

    pub fn node_id(&self) -> u64 {
        self.node_id
    }

    pub(crate) fn node_id_header(&self) -> &HeaderValue {
        &self.node_id_header
    }

    pub(crate) fn peers(&self) -> &peer::Peers {
        &self.peers
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Where `session`'s requests go, by the local copy of the map.
    pub fn route(&self, session: &str) -> Route {
        let shard = shard_of(session);
        if let Some(epoch) = self.node.owned_epoch(shard) {
            // Owned, but served only once the driver has fenced it (writes fail before).
            if self.fences.held(shard) == Some(epoch) {
                return Route::Local { shard, epoch };
            }
            return Route::Unowned { shard };
        }
        match self.node.owner_of(shard) {
            Some(owner) if owner.node != self.node_id => Route::Remote { shard, owner },
            _ => Route::Unowned { shard },
        }
    }

    /// [`Shards::route`], waiting up to `limit` for the map to name an owner.
    pub async fn wait_route(&self, session: &str, limit: Duration) -> Route {
        // The common case, without a clock read or a watch of the map.
        let route = self.route(session);
        if !matches!(route, Route::Unowned { .. }) {
            return route;
        }
        let deadline = tokio::time::Instant::now() + limit;
        let mut watch = self.node.map_watch();
        loop {
            let route = self.route(session);
            if !matches!(route, Route::Unowned { .. }) {
                return route;
            }
            // The map changes, or this node's lease comes back: look again.
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return route;
            }
            let step = (deadline - now).min(Duration::from_millis(100));
            if let Ok(Err(_)) = tokio::time::timeout(step, watch.changed()).await {
                tokio::time::sleep(step).await;
            }
        }
    }

    /// Whether `headers` carry a valid member's proof (`X-Onwapp-Cluster-Auth`).
    pub fn is_member_request(&self, headers: &HeaderMap, extensions: &http::Extensions) -> bool {
        headers.contains_key(FORWARDED_BY)
            && self.over_member_channel(extensions)
            && self
                .node
                .verify_secret(headers.get(CLUSTER_AUTH).and_then(|v| v.to_str().ok()))
    }

    /// With TLS between nodes, a member's request counts only when it came over TLS.
    pub fn over_member_channel(&self, extensions: &http::Extensions) -> bool {
        self.tls.is_none() || extensions.get::<tls::ViaTls>().is_some()
    }

    /// TLS between nodes, when configured.
    pub fn tls(&self) -> Option<&tls::ClusterTls> {
        self.tls.as_ref()
    }

    /// `Bearer <secret>`, as forwarded requests carry it.
    pub(crate) fn member_proof(&self) -> &HeaderValue {
        &self.member_proof
    }

    /// Stops the node (its shards are given up through lease expiry; `drain` first to hand
    /// them over cleanly).
    pub async fn shutdown(&self) {
        self.node.shutdown().await;
    }
}
