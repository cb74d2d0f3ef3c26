//! Read-only views the server shows or uses for routing.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::lease::LeaseState;
use crate::types::NodeId;

/// The owner of a shard according to the local copy of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub node: NodeId,
    /// Base URL to forward requests to.
    pub addr: String,
    pub epoch: u64,
    /// A planned handoff of this shard is in progress.
    pub draining: bool,
}

/// The outcome of [`crate::Node::drain`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainReport {
    /// Shards this node owned when the drain started.
    pub shards_before: usize,
    /// Shards still owned when the drain ended (0 unless it timed out).
    pub shards_remaining: usize,
    pub timed_out: bool,
    #[serde(with = "millis")]
    pub elapsed: Duration,
}

/// Whether this node should take client traffic (a load balancer's readiness check): it is a
/// member of the map and of the Raft group, has applied what it received and is not draining.
/// Local on purpose: the leader and the lease are reported, not required. Without a quorum
/// every node would turn unready at once and a Service would have no endpoint left to answer
/// even a 503; a node that lost its lease still forwards and answers from the database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    pub joined: bool,
    pub leader: Option<NodeId>,
    pub caught_up: bool,
    pub lease_valid: bool,
    pub draining: bool,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.joined && self.caught_up && !self.draining
    }

    /// What keeps the node from being ready, in words.
    pub fn reasons(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if !self.joined {
            out.push("not a member of the cluster yet");
        }
        if !self.caught_up {
            out.push("applying the Raft log");
        }
        if self.draining {
            out.push("draining");
        }
        out
    }
}

/// One member as seen in [`ClusterStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub id: NodeId,
    pub api_addr: String,
    pub voter: bool,
    pub lease_until_ms: u64,
    /// Lease time left by this node's wall clock (negative: expired).
    pub lease_remaining_ms: i64,
    pub draining: bool,
    pub joined_at_ms: u64,
    /// Shards the map gives this node (active or draining).
    pub shards: usize,
}

/// A snapshot of the cluster as this node sees it (serde, for `/health` or an admin route).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub node_id: NodeId,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// `leader`, `follower`, `candidate` or `learner`.
    pub role: String,
    pub last_applied: u64,
    /// Index of the last Raft log entry this node received.
    #[serde(default)]
    pub last_log_index: u64,
    pub lease: LeaseState,
    /// Local lease validity left (ms).
    pub lease_left_ms: u64,
    /// Times this node's valid lease was lost since it started (a healthy node: 0).
    pub lease_losses: u64,
    pub shard_count: u32,
    /// Shards this node owns effectively (map and lease).
    pub owned_shards: usize,
    pub unassigned: usize,
    /// Planned handoffs in flight (shards in `Draining`).
    pub moves_in_flight: usize,
    pub nodes: Vec<NodeStatus>,
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}
