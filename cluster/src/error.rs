//! Errors of the cluster crate.

use serde::{Deserialize, Serialize};

use crate::types::NodeId;

/// Errors returned by [`crate::Node`] and the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    #[error("storage: {0}")]
    Storage(String),
    #[error("raft: {0}")]
    Raft(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("unauthorized")]
    Unauthorized,
    #[error("no leader is known (election in progress?)")]
    NoLeader,
    #[error("transport: {0}")]
    Transport(String),
    #[error("command rejected: {0}")]
    Rejected(String),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("the node is shut down")]
    Shutdown,
}

impl ClusterError {
    /// The HTTP status the server should answer with when `handle_rpc` fails.
    pub fn http_status(&self) -> u16 {
        match self {
            ClusterError::BadRequest(_) => 400,
            ClusterError::Unauthorized => 401,
            ClusterError::Shutdown | ClusterError::NoLeader => 503,
            ClusterError::Timeout(_) => 504,
            _ => 500,
        }
    }
}

impl From<redb::Error> for ClusterError {
    fn from(e: redb::Error) -> Self {
        ClusterError::Storage(e.to_string())
    }
}

/// An application-level failure carried inside an RPC answer body (`/cluster/write`, `/cluster/join`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum WireError {
    /// The receiver is not the leader; `leader` is the one it knows, with its api address.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader { leader: Option<(NodeId, String)> },
    #[error("{0}")]
    Failed(String),
}

impl From<WireError> for ClusterError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::NotLeader { .. } => ClusterError::NoLeader,
            WireError::Failed(s) => ClusterError::Raft(s),
        }
    }
}
