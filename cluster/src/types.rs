//! Raft type configuration and the small shared types of the crate.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::shard_map::{Command, CommandResponse};

/// A node's id in the cluster (stable across restarts, e.g. the StatefulSet ordinal + 1).
pub type NodeId = u64;

/// Number of shards. Fixed forever: it is also stored in the state machine.
pub const SHARDS: u32 = 1024;

/// The shard of a session: `xxh3_64(name) % 1024`.
pub fn shard_of(session_name: &str) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(session_name.as_bytes()) % u64::from(SHARDS)) as u32
}

/// What raft knows about a member: where its HTTP API (and so its raft endpoints) lives.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Advertised base URL, e.g. `http://10.0.0.5:8080`.
    pub api_addr: String,
}

impl fmt::Display for ClusterNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.api_addr)
    }
}

openraft::declare_raft_types!(
    /// openraft type configuration of the shard map.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = ClusterNode,
        SnapshotData = Cursor<Vec<u8>>,
);

/// The raft handle of this crate.
pub type Raft = openraft::Raft<TypeConfig>;

/// Milliseconds since the Unix epoch (wall clock), as stamped into lease commands.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
