//! The operator's cluster routes (extension): `GET /admin/cluster`, `POST /admin/drain`,
//! `POST /admin/undrain`. The `onwapp-cluster` crate keeps its own (snake_case, serde-only)
//! status types; these are the HTTP shapes, camelCase like the rest of the API.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Result of `GET /admin/cluster`: the cluster as the answering node sees it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatusResponse {
    /// The node that answered.
    pub node_id: u64,
    /// The Raft leader's node id, if one is known.
    pub leader: Option<u64>,
    pub term: u64,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: String,
    /// Last Raft log index applied to this node's shard map.
    pub last_applied: u64,
    /// This node's lease: `valid` or `lost`.
    pub lease: String,
    /// Local lease validity left (ms).
    pub lease_left_ms: u64,
    /// Times this node's valid lease was lost since it started (a healthy node: 0).
    pub lease_losses: u64,
    /// Shards in all (fixed: 1024).
    pub shard_count: u32,
    /// Shards this node owns effectively (the map gives them and its lease is valid).
    pub owned_shards: usize,
    /// Shards without an owner.
    pub unassigned: usize,
    /// Planned handoffs in flight (shards being drained to another node).
    pub moves_in_flight: usize,
    pub nodes: Vec<ClusterNodeResponse>,
}

/// One member in [`ClusterStatusResponse`].
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNodeResponse {
    pub id: u64,
    /// The URL other nodes forward this node's sessions to.
    pub api_addr: String,
    /// A Raft voter (else a learner).
    pub voter: bool,
    /// Lease end, Unix time in ms, as the leader stamped it.
    pub lease_until_ms: u64,
    /// Lease time left by the answering node's clock (negative: expired).
    pub lease_remaining_ms: i64,
    /// Handing its shards to others (`POST /admin/drain`).
    pub draining: bool,
    /// When the node joined, Unix time in ms.
    pub joined_at_ms: u64,
    /// Shards the map gives this node (active or draining).
    pub shards: usize,
}

/// Body of `POST /admin/drain` (optional).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DrainRequest {
    /// How long to wait for the handoffs, 1 to 600 (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
}

/// Result of `POST /admin/drain`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrainResponse {
    pub node_id: u64,
    /// Shards this node owned when the drain started.
    pub shards_before: usize,
    /// Shards still owned when it ended (0 unless it timed out).
    pub shards_remaining: usize,
    pub timed_out: bool,
    pub elapsed_ms: u64,
    /// Every shard was handed over in time.
    pub done: bool,
}

/// Result of `POST /admin/undrain`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UndrainResponse {
    pub node_id: u64,
    /// Always `false`: the node takes shards again.
    pub draining: bool,
}

impl From<onwapp_cluster::ClusterStatus> for ClusterStatusResponse {
    fn from(s: onwapp_cluster::ClusterStatus) -> Self {
        ClusterStatusResponse {
            node_id: s.node_id,
            leader: s.leader,
            term: s.term,
            role: s.role,
            last_applied: s.last_applied,
            lease: match s.lease {
                onwapp_cluster::LeaseState::Valid => "valid",
                onwapp_cluster::LeaseState::Lost => "lost",
            }
            .to_string(),
            lease_left_ms: s.lease_left_ms,
            lease_losses: s.lease_losses,
            shard_count: s.shard_count,
            owned_shards: s.owned_shards,
            unassigned: s.unassigned,
            moves_in_flight: s.moves_in_flight,
            nodes: s.nodes.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<onwapp_cluster::NodeStatus> for ClusterNodeResponse {
    fn from(n: onwapp_cluster::NodeStatus) -> Self {
        ClusterNodeResponse {
            id: n.id,
            api_addr: n.api_addr,
            voter: n.voter,
            lease_until_ms: n.lease_until_ms,
            lease_remaining_ms: n.lease_remaining_ms,
            draining: n.draining,
            joined_at_ms: n.joined_at_ms,
            shards: n.shards,
        }
    }
}
