//! Placement: which node should own each shard, and the commands that get the map there.
//!
//! Pure functions (the leader's loop in `node.rs` feeds them the map and the clock), so they are
//! unit-tested directly. Rendezvous hashing ranks nodes per shard; a load cap
//! (`ceil(shards / live * load_factor)`) keeps the spread even. The result depends only on the
//! set of live nodes, so nothing moves while nothing changes, and a joining node takes about its
//! fair share.

use std::collections::{BTreeMap, BTreeSet};

use crate::shard_map::{Command, ShardMap, ShardState};
use crate::types::NodeId;

/// Rendezvous score of `node` for `shard` (higher wins).
pub fn score(shard: u32, node: NodeId) -> u64 {
    let mut buf = [0u8; 12];
    buf[..4].copy_from_slice(&shard.to_le_bytes());
    buf[4..].copy_from_slice(&node.to_le_bytes());
    xxhash_rust::xxh3::xxh3_64(&buf)
}

/// Most shards one node may hold when `live` nodes share `shard_count` shards.
pub fn load_cap(shard_count: u32, live: usize, load_factor: f64) -> usize {
    if live == 0 {
        return 0;
    }
    let fair = f64::from(shard_count) / live as f64;
    ((fair * load_factor).ceil() as usize).max(fair.ceil() as usize)
}

/// The desired owner of every shard: its highest-ranked live node that is still under the cap
/// (shards taken in index order). `None` for every shard when no node is live.
pub fn desired_owners(
    shard_count: u32,
    live: &BTreeSet<NodeId>,
    load_factor: f64,
) -> Vec<Option<NodeId>> {
    if live.is_empty() {
        return vec![None; shard_count as usize];
    }
    let cap = load_cap(shard_count, live.len(), load_factor);
    let mut load: BTreeMap<NodeId, usize> = live.iter().map(|n| (*n, 0)).collect();
    let mut ranked: Vec<(u64, NodeId)> = Vec::with_capacity(live.len());
    (0..shard_count)
        .map(|shard| {
            ranked.clear();
            ranked.extend(live.iter().map(|n| (score(shard, *n), *n)));
            ranked.sort_unstable_by(|a, b| b.cmp(a));
            let pick = ranked
                .iter()
                .map(|(_, n)| *n)
                .find(|n| load.get(n).is_some_and(|l| *l < cap));
            let pick = pick.or_else(|| ranked.first().map(|(_, n)| *n));
            if let Some(l) = pick.and_then(|n| load.get_mut(&n)) {
                *l += 1;
            }
            pick
        })
        .collect()
}

/// What the leader knows when it plans.
#[derive(Debug, Clone)]
pub struct PlanInput<'a> {
    pub map: &'a ShardMap,
    /// Nodes that may receive shards: lease valid and not draining.
    pub live: BTreeSet<NodeId>,
    /// Nodes whose lease is valid (live ones plus draining ones): their shards move by handoff.
    pub alive: BTreeSet<NodeId>,
    /// Leader's wall clock (ms), stamped into guarded `Assign`s.
    pub now_ms: u64,
    /// Draining shards whose handoff deadline has passed.
    pub overdue: BTreeSet<u32>,
    /// Most handoffs in flight at once.
    pub max_in_flight: usize,
    pub load_factor: f64,
}

/// The commands of one placement round, with counts for logs and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub commands: Vec<Command>,
    /// Unassigned shards and shards of dead owners, assigned directly.
    pub assigns: usize,
    /// Planned handoffs started (`BeginDrain`).
    pub handoffs: usize,
    /// Overdue handoffs forced (`Assign` to the target).
    pub forced: usize,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

/// Computes the commands that move the map towards the desired placement.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let mut plan = Plan::default();
    if input.live.is_empty() {
        return plan;
    }
    let map = input.map;
    let desired = desired_owners(map.shard_count, &input.live, input.load_factor);
    let mut budget = input.max_in_flight.saturating_sub(map.draining_count());
    for (idx, shard) in map.shards.iter().enumerate() {
        let idx32 = idx as u32;
        let Some(want) = desired.get(idx).copied().flatten() else {
            continue;
        };
        match (shard.owner, shard.state) {
            (None, _) | (Some(_), ShardState::Unassigned) => {
                plan.commands.push(Command::Assign {
                    shard: idx32,
                    to: want,
                    expect_epoch: Some(shard.epoch),
                    owner_expired_at_ms: None,
                });
                plan.assigns += 1;
            }
            (Some(owner), _) if !input.alive.contains(&owner) => {
                // Dead owner (lease expired or node removed): assign directly, guarded so that a
                // renewal that lands first makes the command a no-op.
                let to = match shard.state {
                    ShardState::Draining { to } if input.live.contains(&to) => to,
                    _ => want,
                };
                plan.commands.push(Command::Assign {
                    shard: idx32,
                    to,
                    expect_epoch: Some(shard.epoch),
                    owner_expired_at_ms: Some(input.now_ms),
                });
                plan.assigns += 1;
            }
            (Some(owner), ShardState::Draining { to }) => {
                if input.overdue.contains(&idx32) {
                    // Missed deadline: force it (to the owner itself when the target is gone and
                    // the owner is still the best choice, which ends the handoff with a new epoch).
                    let to = if input.live.contains(&to) { to } else { want };
                    plan.commands.push(Command::Assign {
                        shard: idx32,
                        to,
                        expect_epoch: Some(shard.epoch),
                        owner_expired_at_ms: None,
                    });
                    plan.forced += 1;
                } else if !input.live.contains(&to) && want != owner && want != to {
                    plan.commands.push(Command::BeginDrain {
                        shard: idx32,
                        to: want,
                        epoch: shard.epoch,
                    });
                }
            }
            (Some(owner), ShardState::Active) => {
                if owner != want && budget > 0 {
                    plan.commands.push(Command::BeginDrain {
                        shard: idx32,
                        to: want,
                        epoch: shard.epoch,
                    });
                    plan.handoffs += 1;
                    budget -= 1;
                }
            }
        }
    }
    plan
}
