//! This node's effective ownership and the event stream the server drives sessions with.
//!
//! Effective ownership = the shards the applied map gives this node, while its lease is valid.
//! Every change of it becomes events, in order, to every subscriber.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::shard_map::{ShardMap, ShardState};
use crate::types::NodeId;

/// A change of what this node owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum OwnershipEvent {
    /// This node owns `shard` at `epoch`: fence the store with the epoch, then connect its sessions.
    Acquired { shard: u32, epoch: u64 },
    /// Planned handoff to `to` started: disconnect the shard's sessions, then call
    /// [`crate::Node::confirm_released`] with this epoch.
    Releasing { shard: u32, epoch: u64, to: NodeId },
    /// This node no longer owns `shard` (handed off, reassigned, or lease lost): drop its
    /// sessions at once if still connected.
    Lost { shard: u32, epoch: u64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Held {
    epoch: u64,
    releasing_to: Option<NodeId>,
}

/// Owned shards and subscribers.
#[derive(Default)]
pub(crate) struct Ownership {
    held: BTreeMap<u32, Held>,
    subs: Vec<mpsc::UnboundedSender<OwnershipEvent>>,
}

impl Ownership {
    fn emit(&mut self, ev: OwnershipEvent) {
        self.subs.retain(|s| s.send(ev).is_ok());
    }

    /// Recomputes ownership from the map and the lease; emits the differences.
    pub(crate) fn update(&mut self, me: NodeId, map: &ShardMap, lease_valid: bool) {
        let mut now: BTreeMap<u32, Held> = BTreeMap::new();
        if lease_valid {
            for (shard, s) in map.shards_of(me) {
                let releasing_to = match s.state {
                    ShardState::Draining { to } => Some(to),
                    _ => None,
                };
                now.insert(
                    shard,
                    Held {
                        epoch: s.epoch,
                        releasing_to,
                    },
                );
            }
        }
        if now == self.held {
            return;
        }
        let old = std::mem::take(&mut self.held);
        let mut events = Vec::new();
        for (shard, h) in &old {
            match now.get(shard) {
                Some(n) if n.epoch == h.epoch => {}
                _ => events.push(OwnershipEvent::Lost {
                    shard: *shard,
                    epoch: h.epoch,
                }),
            }
        }
        for (shard, n) in &now {
            let before = old.get(shard).filter(|h| h.epoch == n.epoch);
            match before {
                None => {
                    events.push(OwnershipEvent::Acquired {
                        shard: *shard,
                        epoch: n.epoch,
                    });
                    if let Some(to) = n.releasing_to {
                        events.push(OwnershipEvent::Releasing {
                            shard: *shard,
                            epoch: n.epoch,
                            to,
                        });
                    }
                }
                Some(h) => match (h.releasing_to, n.releasing_to) {
                    (None, Some(to)) => events.push(OwnershipEvent::Releasing {
                        shard: *shard,
                        epoch: n.epoch,
                        to,
                    }),
                    (Some(_), None) => events.push(OwnershipEvent::Acquired {
                        shard: *shard,
                        epoch: n.epoch,
                    }),
                    _ => {}
                },
            }
        }
        self.held = now;
        for ev in events {
            self.emit(ev);
        }
    }

    /// A new subscriber; it first receives the current ownership as `Acquired` (+ `Releasing`).
    pub(crate) fn subscribe(&mut self) -> mpsc::UnboundedReceiver<OwnershipEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        for (shard, h) in &self.held {
            let _ = tx.send(OwnershipEvent::Acquired {
                shard: *shard,
                epoch: h.epoch,
            });
            if let Some(to) = h.releasing_to {
                let _ = tx.send(OwnershipEvent::Releasing {
                    shard: *shard,
                    epoch: h.epoch,
                    to,
                });
            }
        }
        self.subs.push(tx);
        rx
    }

    /// Effective ownership: `(shard, epoch)`.
    pub(crate) fn owned(&self) -> Vec<(u32, u64)> {
        self.held.iter().map(|(s, h)| (*s, h.epoch)).collect()
    }

    pub(crate) fn epoch_of(&self, shard: u32) -> Option<u64> {
        self.held.get(&shard).map(|h| h.epoch)
    }
}
