//! The replicated shard map and its deterministic `apply`.
//!
//! Every node applies the same commands in the same order and ends with the same map: `apply`
//! reads no clock and no randomness (the leader stamps times into the commands it proposes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{NodeId, SHARDS};

/// Where a shard is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ShardState {
    /// Owned by `owner`, who may serve it.
    Active,
    /// Planned handoff: `owner` still owns it and must disconnect, then confirm with `Released`.
    Draining { to: NodeId },
    /// Nobody owns it.
    Unassigned,
}

/// One shard of the map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub owner: Option<NodeId>,
    /// Fencing token: strictly increases every time the shard is assigned.
    pub epoch: u64,
    pub state: ShardState,
}

/// A member as the map knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    /// Advertised base URL of the node's HTTP API.
    pub api_addr: String,
    /// Wall-clock time (leader's clock, ms since the epoch) until which the lease holds.
    pub lease_until_ms: u64,
    pub draining: bool,
    pub joined_at_ms: u64,
}

/// The whole replicated state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    /// Always [`SHARDS`]; stored so that a map never silently changes its shard count.
    pub shard_count: u32,
    pub shards: Vec<Shard>,
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// The epoch the next `Assign` gets.
    pub next_epoch: u64,
}

/// A state-machine command. All times are stamped by the leader before proposing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Adds a node, or refreshes it when it is already known (new address, longer lease; the
    /// draining flag is kept: only `SetDraining` changes it).
    AddNode {
        node: NodeId,
        api_addr: String,
        at_ms: u64,
        ttl_ms: u64,
    },
    /// Forgets a node; its shards become unassigned, handoffs towards it are cancelled.
    RemoveNode {
        node: NodeId,
    },
    /// `lease_until = max(lease_until, at_ms + ttl_ms)`.
    RenewLease {
        node: NodeId,
        at_ms: u64,
        ttl_ms: u64,
    },
    SetDraining {
        node: NodeId,
        draining: bool,
    },
    /// Gives the shard to `to` with a fresh epoch.
    /// `expect_epoch`: only if the shard still has this epoch (compare-and-set).
    /// `owner_expired_at_ms`: only if the current owner (another node) has no lease at that time.
    Assign {
        shard: u32,
        to: NodeId,
        expect_epoch: Option<u64>,
        owner_expired_at_ms: Option<u64>,
    },
    /// Starts a planned handoff of an active shard to `to`; `epoch` must be the shard's epoch.
    BeginDrain {
        shard: u32,
        to: NodeId,
        epoch: u64,
    },
    /// The draining owner has disconnected: the shard goes to the handoff target with a fresh epoch
    /// in the same step (or becomes unassigned when the target is gone).
    Released {
        shard: u32,
        epoch: u64,
    },
    /// `next_epoch = max(next_epoch, at_least)`: later assignments get epochs above fences
    /// the map does not know of (a map rebuilt while the database kept its fences).
    RaiseEpochs {
        at_least: u64,
    },
    /// Makes the shard unassigned (epoch kept; the next Assign raises it).
    Unassign {
        shard: u32,
    },
    /// Several commands applied in order in one log entry (placement uses this).
    Batch {
        commands: Vec<Command>,
    },
}

/// Why a command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Reject {
    #[error("unknown node {node}")]
    UnknownNode { node: NodeId },
    #[error("unknown shard {shard}")]
    UnknownShard { shard: u32 },
    #[error("epoch mismatch: shard is at epoch {current}")]
    EpochMismatch { current: u64 },
    #[error("shard is not active")]
    NotActive,
    #[error("shard is not draining")]
    NotDraining,
    #[error("the current owner {owner} still holds a lease")]
    OwnerLeaseValid { owner: NodeId },
    #[error("the shard already belongs to {node}")]
    SameOwner { node: NodeId },
}

/// The result of applying one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum CommandResponse {
    #[default]
    Ok,
    /// The shard was assigned with this epoch.
    Assigned {
        shard: u32,
        owner: NodeId,
        epoch: u64,
    },
    Rejected(Reject),
    Batch {
        results: Vec<CommandResponse>,
    },
}

impl CommandResponse {
    pub fn is_ok(&self) -> bool {
        !matches!(self, CommandResponse::Rejected(_))
    }
}

impl Default for ShardMap {
    fn default() -> Self {
        Self::new()
    }
}

impl ShardMap {
    /// An empty map of [`SHARDS`] unassigned shards.
    pub fn new() -> Self {
        ShardMap {
            shard_count: SHARDS,
            shards: vec![
                Shard {
                    owner: None,
                    epoch: 0,
                    state: ShardState::Unassigned
                };
                SHARDS as usize
            ],
            nodes: BTreeMap::new(),
            next_epoch: 1,
        }
    }

    pub fn shard(&self, shard: u32) -> Option<&Shard> {
        self.shards.get(shard as usize)
    }

    /// Shards whose owner is `node` (active or draining).
    pub fn shards_of(&self, node: NodeId) -> impl Iterator<Item = (u32, &Shard)> {
        self.shards
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.owner == Some(node))
            .map(|(i, s)| (i as u32, s))
    }

    pub fn count_of(&self, node: NodeId) -> usize {
        self.shards_of(node).count()
    }

    /// Shards in a planned handoff.
    pub fn draining_count(&self) -> usize {
        self.shards
            .iter()
            .filter(|s| matches!(s.state, ShardState::Draining { .. }))
            .count()
    }

    pub fn unassigned_count(&self) -> usize {
        self.shards.iter().filter(|s| s.owner.is_none()).count()
    }

    /// Applies one command. Deterministic: the same map and command give the same result.
    pub fn apply(&mut self, cmd: &Command) -> CommandResponse {
        match self.try_apply(cmd) {
            Ok(r) => r,
            Err(reject) => CommandResponse::Rejected(reject),
        }
    }

    fn node_known(&self, node: NodeId) -> Result<(), Reject> {
        if self.nodes.contains_key(&node) {
            Ok(())
        } else {
            Err(Reject::UnknownNode { node })
        }
    }

    fn shard_index(&self, shard: u32) -> Result<usize, Reject> {
        if (shard as usize) < self.shards.len() {
            Ok(shard as usize)
        } else {
            Err(Reject::UnknownShard { shard })
        }
    }

    fn assign(&mut self, idx: usize, to: NodeId) -> CommandResponse {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        let s = &mut self.shards[idx];
        s.owner = Some(to);
        s.epoch = epoch;
        s.state = ShardState::Active;
        CommandResponse::Assigned {
            shard: idx as u32,
            owner: to,
            epoch,
        }
    }

    fn try_apply(&mut self, cmd: &Command) -> Result<CommandResponse, Reject> {
        match cmd {
            Command::AddNode {
                node,
                api_addr,
                at_ms,
                ttl_ms,
            } => {
                let until = at_ms.saturating_add(*ttl_ms);
                match self.nodes.get_mut(node) {
                    Some(n) => {
                        n.api_addr.clone_from(api_addr);
                        n.lease_until_ms = n.lease_until_ms.max(until);
                    }
                    None => {
                        self.nodes.insert(
                            *node,
                            NodeInfo {
                                id: *node,
                                api_addr: api_addr.clone(),
                                lease_until_ms: until,
                                draining: false,
                                joined_at_ms: *at_ms,
                            },
                        );
                    }
                }
                Ok(CommandResponse::Ok)
            }
            Command::RemoveNode { node } => {
                self.node_known(*node)?;
                self.nodes.remove(node);
                for s in &mut self.shards {
                    if s.owner == Some(*node) {
                        s.owner = None;
                        s.state = ShardState::Unassigned;
                    } else if s.state == (ShardState::Draining { to: *node }) {
                        s.state = ShardState::Active;
                    }
                }
                Ok(CommandResponse::Ok)
            }
            Command::RenewLease {
                node,
                at_ms,
                ttl_ms,
            } => {
                let n = self
                    .nodes
                    .get_mut(node)
                    .ok_or(Reject::UnknownNode { node: *node })?;
                n.lease_until_ms = n.lease_until_ms.max(at_ms.saturating_add(*ttl_ms));
                Ok(CommandResponse::Ok)
            }
            Command::RaiseEpochs { at_least } => {
                self.next_epoch = self.next_epoch.max(*at_least);
                Ok(CommandResponse::Ok)
            }
            Command::SetDraining { node, draining } => {
                let n = self
                    .nodes
                    .get_mut(node)
                    .ok_or(Reject::UnknownNode { node: *node })?;
                n.draining = *draining;
                Ok(CommandResponse::Ok)
            }
            Command::Assign {
                shard,
                to,
                expect_epoch,
                owner_expired_at_ms,
            } => {
                let idx = self.shard_index(*shard)?;
                self.node_known(*to)?;
                let s = &self.shards[idx];
                if let Some(e) = expect_epoch
                    && *e != s.epoch
                {
                    return Err(Reject::EpochMismatch { current: s.epoch });
                }
                if let (Some(now), Some(owner)) = (owner_expired_at_ms, s.owner)
                    && owner != *to
                    && let Some(n) = self.nodes.get(&owner)
                    && n.lease_until_ms > *now
                {
                    return Err(Reject::OwnerLeaseValid { owner });
                }
                Ok(self.assign(idx, *to))
            }
            Command::BeginDrain { shard, to, epoch } => {
                let idx = self.shard_index(*shard)?;
                self.node_known(*to)?;
                let s = &mut self.shards[idx];
                if s.epoch != *epoch {
                    return Err(Reject::EpochMismatch { current: s.epoch });
                }
                match (s.owner, s.state) {
                    (Some(owner), _) if owner == *to => Err(Reject::SameOwner { node: owner }),
                    (Some(_), ShardState::Active | ShardState::Draining { .. }) => {
                        s.state = ShardState::Draining { to: *to };
                        Ok(CommandResponse::Ok)
                    }
                    _ => Err(Reject::NotActive),
                }
            }
            Command::Released { shard, epoch } => {
                let idx = self.shard_index(*shard)?;
                let s = &mut self.shards[idx];
                if s.epoch != *epoch {
                    return Err(Reject::EpochMismatch { current: s.epoch });
                }
                let ShardState::Draining { to } = s.state else {
                    return Err(Reject::NotDraining);
                };
                if self.nodes.contains_key(&to) {
                    Ok(self.assign(idx, to))
                } else {
                    s.owner = None;
                    s.state = ShardState::Unassigned;
                    Ok(CommandResponse::Ok)
                }
            }
            Command::Unassign { shard } => {
                let idx = self.shard_index(*shard)?;
                let s = &mut self.shards[idx];
                s.owner = None;
                s.state = ShardState::Unassigned;
                Ok(CommandResponse::Ok)
            }
            Command::Batch { commands: cmds } => Ok(CommandResponse::Batch {
                results: cmds.iter().map(|c| self.apply(c)).collect(),
            }),
        }
    }
}
