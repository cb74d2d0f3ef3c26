//! The transport-neutral side of the cluster endpoints: paths, request and answer bodies.
//!
//! Every endpoint is `POST /cluster/...` with a JSON body and `Authorization: Bearer <secret>`.
//! The server hands the path's [`RpcKind`] and the body bytes to [`crate::Node::handle_rpc`] and
//! answers 200 with the returned bytes (JSON), or `ClusterError::http_status()` on error.

use serde::{Deserialize, Serialize};

use crate::shard_map::{Command, CommandResponse};
use crate::types::NodeId;

/// Every cluster endpoint lives under this prefix.
pub const RPC_PREFIX: &str = "/cluster/";

/// Which cluster endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcKind {
    /// `/cluster/raft/append`: openraft AppendEntries.
    Append,
    /// `/cluster/raft/vote`: openraft Vote.
    Vote,
    /// `/cluster/raft/snapshot`: openraft InstallSnapshot (one chunk per request).
    Snapshot,
    /// `/cluster/write`: a write for the leader (never forwarded again by the receiver).
    Write,
    /// `/cluster/join`: a node asks to join; forwarded once to the leader when needed.
    Join,
}

impl RpcKind {
    pub const ALL: [RpcKind; 5] = [
        RpcKind::Append,
        RpcKind::Vote,
        RpcKind::Snapshot,
        RpcKind::Write,
        RpcKind::Join,
    ];

    /// The path of the endpoint, e.g. `/cluster/raft/vote`.
    pub fn path(self) -> &'static str {
        match self {
            RpcKind::Append => "/cluster/raft/append",
            RpcKind::Vote => "/cluster/raft/vote",
            RpcKind::Snapshot => "/cluster/raft/snapshot",
            RpcKind::Write => "/cluster/write",
            RpcKind::Join => "/cluster/join",
        }
    }

    /// The kind of a request path (`None` for any other path).
    pub fn from_path(path: &str) -> Option<RpcKind> {
        RpcKind::ALL.into_iter().find(|k| k.path() == path)
    }
}

/// Body of `/cluster/write` and `/cluster/join`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "req", rename_all = "snake_case")]
pub enum WriteRequest {
    /// Propose a state-machine command (the leader stamps lease times into it).
    Command { command: Command },
    /// Add `node` as a raft learner (unless already a member) and commit `AddNode`.
    Join { node: NodeId, api_addr: String },
    /// Commit `RemoveNode` and take `node` out of the raft membership (promoting a learner when
    /// the voter count would fall below the configured one).
    Leave { node: NodeId },
}

/// Successful answer of a write: where it landed in the log and what apply said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteReply {
    pub log_index: u64,
    pub response: CommandResponse,
}
