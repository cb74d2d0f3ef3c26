//! One client per session, always.
//!
//! Starting a client awaits (the device store, the durability probe), and connects come from
//! several places at once: the API, a restart's resume, the shard driver's resume after an
//! acquisition. Each session has a gate, an async mutex held for the whole of a connect,
//! disconnect, logout or release, so a second connect waits for the first and then finds its
//! client. A release (the shard moves) also goes through the gates of connects still in
//! flight, so a client that was starting is stopped once it is listed, never left running
//! unlisted. Shards being handed off are marked leaving for the length of the handoff: a
//! connect that gets its gate then refuses to start a client there, as it does for any shard
//! this node does not hold.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex},
};

use tokio::sync::Mutex as AsyncMutex;

#[derive(Default)]
pub(super) struct Gates {
    gates: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
    leaving: Mutex<BTreeSet<u32>>,
}

impl Gates {
    /// The gate of session `name` (created at its first use).
    pub(super) fn of(&self, name: &str) -> Arc<AsyncMutex<()>> {
        match self.gates.lock() {
            Ok(mut m) => m.entry(name.to_string()).or_default().clone(),
            // A poisoned map still hands out a gate; it is just not shared.
            Err(_) => Arc::default(),
        }
    }

    /// Sessions whose gate is held right now (a connect, stop or release in flight).
    pub(super) fn busy(&self) -> Vec<String> {
        self.gates
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(_, g)| g.try_lock().is_err())
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Marks shards as being handed off (`true`) or no longer (`false`).
    pub(super) fn set_leaving(&self, shards: &BTreeSet<u32>, leaving: bool) {
        if let Ok(mut l) = self.leaving.lock() {
            if leaving {
                l.extend(shards.iter().copied());
            } else {
                l.retain(|s| !shards.contains(s));
            }
        }
    }

    pub(super) fn is_leaving(&self, shard: u32) -> bool {
        self.leaving.lock().map_or(true, |l| l.contains(&shard))
    }
}
