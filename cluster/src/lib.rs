//! onwapp cluster: who owns which of the 1024 session shards.
//!
//! A raft group (openraft 0.9, log on redb) replicates a small shard map; nodes renew leases
//! through the leader; the leader places shards with rendezvous hashing and moves them by planned
//! handoff. See `README.md` of this crate for the API and how the server mounts it.

pub mod config;
pub mod error;
pub mod fuzzing;
pub mod lease;
pub mod log_store;
pub mod network;
mod node;
pub mod ownership;
pub mod placement;
pub mod rpc;
pub mod shard_map;
pub mod state_machine;
pub mod status;
pub mod types;

pub use config::ClusterConfig;
pub use error::{ClusterError, WireError};
pub use lease::LeaseState;
pub use node::Node;
pub use ownership::OwnershipEvent;
pub use rpc::{RPC_PREFIX, RpcKind, WriteReply, WriteRequest};
pub use shard_map::{Command, CommandResponse, NodeInfo, Reject, Shard, ShardMap, ShardState};
pub use state_machine::MapView;
pub use status::{ClusterStatus, DrainReport, NodeStatus, Owner, Readiness};
pub use types::{ClusterNode, NodeId, Raft, SHARDS, TypeConfig, shard_of};
