//! Configuration of a cluster node.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::ClusterError;
use crate::types::{ClusterNode, NodeId};

/// Everything a node needs to start. Build it with [`ClusterConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id; must be stable across restarts and unique (not 0-based constraint).
    pub node_id: NodeId,
    /// Advertised base URL of this node's HTTP API, e.g. `http://10.0.0.5:8080`.
    pub api_addr: String,
    /// Known members `(id, api_addr)`. The first `voters` entries by id are the initial voters
    /// (this node is one of them only when it is listed). Empty: a one-node cluster of itself.
    pub peers: Vec<(NodeId, String)>,
    /// Number of raft voters to form (default 3); other nodes are learners.
    pub voters: usize,
    /// Data directory; the raft log lives in `<data_dir>/raft/raft.redb`.
    pub data_dir: PathBuf,
    /// Shared secret of the `/cluster/*` endpoints (`Authorization: Bearer <secret>`).
    pub secret: String,
    /// How often the node renews its lease (default 1 s).
    pub lease_renew: Duration,
    /// Lease time-to-live as the leader sees it (default 7 s: a dead owner's sessions are back on
    /// another node in under 10 s, see `benches/cluster.rs`).
    pub lease_ttl: Duration,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Period of the leader's placement loop (it also runs when the map changes).
    pub placement_interval: Duration,
    /// A planned handoff not confirmed within this time is forced (default 15 s).
    pub handoff_deadline: Duration,
    /// Most planned handoffs in flight at once (default 64).
    pub max_handoffs: usize,
    /// Load cap factor of placement: a node holds at most `ceil(shards / live * load_factor)`.
    pub load_factor: f64,
    /// Build a state-machine snapshot (and purge the log) every this many log entries.
    pub snapshot_every: u64,
    /// Run placement when this node leads (default true; off only for benchmarks and drills).
    pub placement_enabled: bool,
    /// The highest epoch the fences outside the map (the database) have seen. When this node
    /// leads and the map's next epoch is not above it, it raises it first: a map rebuilt from
    /// nothing (wiped data directories) would otherwise hand out epochs every fence refuses.
    pub epoch_floor: u64,
    /// The client of the `/cluster/*` calls when the application brings its own (TLS between
    /// nodes); `None`: plain HTTP through reqwest.
    pub transport: Option<crate::network::SharedTransport>,
}

impl ClusterConfig {
    /// A config with the production defaults.
    pub fn new(
        node_id: NodeId,
        api_addr: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        secret: impl Into<String>,
    ) -> Self {
        ClusterConfig {
            node_id,
            api_addr: api_addr.into(),
            peers: Vec::new(),
            voters: 3,
            data_dir: data_dir.into(),
            secret: secret.into(),
            lease_renew: Duration::from_secs(1),
            lease_ttl: Duration::from_secs(7),
            // openraft waits `election_timeout_max + a random election timeout` after the last
            // heartbeat before a follower stands (1.8-2.4 s here): a leader's death must be
            // over, and the members renewed with the new leader, well within their local
            // validity (TTL - 1.5 renewals = 5.5 s), or every survivor drops its sessions.
            heartbeat_interval: Duration::from_millis(200),
            election_timeout_min: Duration::from_millis(600),
            election_timeout_max: Duration::from_millis(1200),
            placement_interval: Duration::from_secs(1),
            handoff_deadline: Duration::from_secs(15),
            max_handoffs: 64,
            load_factor: 1.05,
            snapshot_every: 1000,
            placement_enabled: true,
            epoch_floor: 0,
            transport: None,
        }
    }

    /// Short timings for tests: renew 200 ms, TTL 2 s (local validity 1.7 s: room for slow
    /// fsyncs on a busy CI machine), fast elections and placement.
    pub fn fast(mut self) -> Self {
        self.lease_renew = Duration::from_millis(200);
        self.lease_ttl = Duration::from_secs(2);
        self.heartbeat_interval = Duration::from_millis(50);
        self.election_timeout_min = Duration::from_millis(300);
        self.election_timeout_max = Duration::from_millis(600);
        self.placement_interval = Duration::from_millis(100);
        self.handoff_deadline = Duration::from_secs(3);
        self
    }

    pub fn validate(&self) -> Result<(), ClusterError> {
        let bad = |s: &str| Err(ClusterError::Config(s.to_string()));
        if self.api_addr.is_empty() {
            return bad("api_addr is empty");
        }
        if self.secret.is_empty() {
            return bad("secret is empty");
        }
        if self.voters == 0 {
            return bad("voters must be at least 1");
        }
        if self.lease_renew.is_zero()
            || self.lease_ttl < self.lease_renew * 2 + self.lease_renew / 2
        {
            return bad("lease_ttl must be at least 2.5 x lease_renew");
        }
        if self.election_timeout_min <= self.heartbeat_interval
            || self.election_timeout_max <= self.election_timeout_min
        {
            return bad("need heartbeat_interval < election_timeout_min < election_timeout_max");
        }
        if self.load_factor < 1.0 {
            return bad("load_factor must be >= 1.0");
        }
        if self.peers.iter().any(|(id, _)| *id == self.node_id)
            && !self
                .peers
                .iter()
                .any(|(id, a)| *id == self.node_id && a == &self.api_addr)
        {
            return bad("this node is listed in peers with another api_addr");
        }
        Ok(())
    }

    /// The initial voters when this node is one of them (empty otherwise): the first `voters`
    /// peers by id, or this node alone when there are no peers.
    pub fn initial_voters(&self) -> BTreeMap<NodeId, ClusterNode> {
        let mut all: BTreeMap<NodeId, ClusterNode> = self
            .peers
            .iter()
            .map(|(id, addr)| {
                (
                    *id,
                    ClusterNode {
                        api_addr: addr.clone(),
                    },
                )
            })
            .collect();
        if all.is_empty() {
            all.insert(
                self.node_id,
                ClusterNode {
                    api_addr: self.api_addr.clone(),
                },
            );
        }
        let voters: BTreeMap<NodeId, ClusterNode> = all.into_iter().take(self.voters).collect();
        if voters.contains_key(&self.node_id) {
            voters
        } else {
            BTreeMap::new()
        }
    }

    pub(crate) fn raft_config(&self) -> Result<openraft::Config, ClusterError> {
        let ms = |d: Duration| d.as_millis() as u64;
        let cfg = openraft::Config {
            cluster_name: "onwapp".to_string(),
            heartbeat_interval: ms(self.heartbeat_interval),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: 100,
            install_snapshot_timeout: 2000,
            ..Default::default()
        };
        cfg.validate()
            .map_err(|e| ClusterError::Config(e.to_string()))
    }
}
