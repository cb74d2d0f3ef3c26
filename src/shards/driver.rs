//! Sessions follow their shard: the node's ownership events start and stop WhatsApp clients.
//!
//! - `Acquired`: the shard is fenced in the database at its new epoch (an older owner's writes
//!   fail from then on), then its paired sessions connect (no QR: the keys are in the database).
//! - `Releasing` (planned handoff, e.g. a drain): the shard's clients stop cleanly, the fence is
//!   let go, then the release is confirmed so the new owner gets the shard with a higher epoch.
//! - `Lost` (the lease ran out, or the shard was taken): the fence is let go at once (no write
//!   of ours may land any more), then the clients stop.
//!
//! Events that arrive together are handled together, so the 1024 `Acquired` of a node's start
//! cost one transaction and one pass over the sessions, not 1024.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use onwapp_cluster::{OwnershipEvent, shard_of};
use tokio::{sync::mpsc::UnboundedReceiver, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::Shards;
use crate::{engine::Engine, store::Store};

/// Starts the driver; it stops when `cancel` fires.
pub fn spawn(
    shards: Arc<Shards>,
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let events = shards.node().subscribe();
    let driver = Driver {
        shards,
        engine,
        store,
    };
    tokio::spawn(async move { driver.run(events, cancel).await })
}

struct Driver {
    shards: Arc<Shards>,
    engine: Arc<Engine>,
    store: Arc<dyn Store>,
}

impl Driver {
    async fn run(&self, mut events: UnboundedReceiver<OwnershipEvent>, cancel: CancellationToken) {
        loop {
            let first = tokio::select! {
                _ = cancel.cancelled() => return,
                ev = events.recv() => match ev {
                    Some(ev) => ev,
                    None => return,
                },
            };
            let mut batch = vec![first];
            while let Ok(ev) = events.try_recv() {
                batch.push(ev);
            }
            // Consecutive acquisitions are handled in one pass; anything else first flushes
            // them, so a shard acquired then lost within one batch ends stopped.
            let mut acquired: BTreeMap<u32, u64> = BTreeMap::new();
            for ev in batch {
                match ev {
                    OwnershipEvent::Acquired { shard, epoch } => {
                        acquired.insert(shard, epoch);
                    }
                    OwnershipEvent::Releasing { shard, epoch, to } => {
                        self.acquire(std::mem::take(&mut acquired)).await;
                        // Sessions first (their last writes still pass the fence), then the fence.
                        let n = self.engine.release_where(|n| shard_of(n) == shard).await;
                        self.store.fences().release(shard);
                        tracing::info!(shard, epoch, to, sessions = n, "shard handed off");
                        if let Err(e) = self.shards.node().confirm_released(shard, epoch).await {
                            tracing::warn!(shard, epoch, error = %e, "confirming a release");
                        }
                    }
                    OwnershipEvent::Lost { shard, epoch } => {
                        self.acquire(std::mem::take(&mut acquired)).await;
                        self.store.fences().release(shard);
                        let n = self.engine.release_where(|n| shard_of(n) == shard).await;
                        if n > 0 {
                            tracing::warn!(
                                shard,
                                epoch,
                                sessions = n,
                                "shard lost; sessions stopped"
                            );
                        }
                    }
                }
            }
            self.acquire(acquired).await;
        }
    }

    async fn acquire(&self, shards: BTreeMap<u32, u64>) {
        if shards.is_empty() {
            return;
        }
        let wanted: Vec<(u32, u64)> = shards.into_iter().collect();
        let held = loop {
            match self.store.acquire_fences(&wanted).await {
                Ok(held) => break held,
                Err(e) => {
                    // Without the database the sessions cannot run anyway: wait for it.
                    tracing::error!(error = %e, "fencing acquired shards; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let held: BTreeSet<u32> = held.into_iter().collect();
        tracing::info!(
            shards = held.len(),
            "shards acquired; resuming their sessions"
        );
        self.engine
            .resume_paired_where(|name| held.contains(&shard_of(name)))
            .await;
    }
}
