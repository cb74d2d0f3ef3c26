//! Sessions follow their shard: the node's ownership events start and stop WhatsApp clients.
//!
//! - `Acquired`: the shard is fenced in the database at its new epoch (an older owner's writes
//!   fail from then on), then its paired sessions connect (no QR: the keys are in the database),
//!   in the background, each retried with backoff until it runs or the shard goes.
//! - `Releasing` (planned handoff, e.g. a drain): the shard's clients stop cleanly and every
//!   event they had handed over is written, the fence is let go, then the release is confirmed
//!   so the new owner gets the shard with a higher epoch.
//! - `Lost` (the lease ran out, or the shard was taken): the fence is let go at once (no write
//!   of ours may land any more), then the clients stop.
//!
//! Events that arrive together are handled together, so the 1024 `Acquired` of a node's start
//! cost one transaction and one pass over the sessions, not 1024, and the handoffs placement
//! starts together (up to 64) stop their sessions in one pass and are confirmed concurrently.

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
            // Consecutive acquisitions, and consecutive handoffs, are handled in one pass each;
            // any other event first flushes them, so a shard acquired then lost within one
            // batch ends stopped.
            let mut acquired: BTreeMap<u32, u64> = BTreeMap::new();
            let mut releasing: Vec<(u32, u64, u64)> = Vec::new();
            for ev in batch {
                let kind = match ev {
                    OwnershipEvent::Acquired { .. } => "acquired",
                    OwnershipEvent::Releasing { .. } => "releasing",
                    OwnershipEvent::Lost { .. } => "lost",
                };
                self.shards
                    .metrics()
                    .cluster_shard_events
                    .with_label_values(&[kind])
                    .inc();
                match ev {
                    OwnershipEvent::Acquired { shard, epoch } => {
                        self.hand_off(std::mem::take(&mut releasing)).await;
                        acquired.insert(shard, epoch);
                    }
                    OwnershipEvent::Releasing { shard, epoch, to } => {
                        self.acquire(std::mem::take(&mut acquired)).await;
                        releasing.push((shard, epoch, to));
                    }
                    OwnershipEvent::Lost { shard, epoch } => {
                        self.acquire(std::mem::take(&mut acquired)).await;
                        self.hand_off(std::mem::take(&mut releasing)).await;
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
            self.hand_off(releasing).await;
        }
    }

    /// Planned handoffs (a drain, a rebalance): the shards' sessions stop cleanly (their last
    /// writes still pass the fence), then the fences are let go, then every release is
    /// confirmed at once (Raft pipelines the confirmations), so the new owners get the shards
    /// with higher epochs.
    async fn hand_off(&self, shards: Vec<(u32, u64, u64)>) {
        if shards.is_empty() {
            return;
        }
        let moving: BTreeSet<u32> = shards.iter().map(|(shard, ..)| *shard).collect();
        // Each client stops and its event task records what the client already handed over
        // (acknowledged to WhatsApp) before the fences are let go.
        let n = self.engine.hand_off(&moving).await;
        for shard in &moving {
            self.store.fences().release(*shard);
        }
        self.engine.handed_off(&moving);
        tracing::info!(shards = shards.len(), sessions = n, "shards handed off");
        let node = self.shards.node();
        let confirmed = futures_util::future::join_all(
            shards
                .iter()
                .map(|(shard, epoch, _)| node.confirm_released(*shard, *epoch)),
        )
        .await;
        for ((shard, epoch, to), r) in shards.iter().zip(confirmed) {
            match r {
                Ok(()) => tracing::debug!(shard, epoch, to, "shard handed off"),
                Err(e) => tracing::warn!(shard, epoch, to, error = %e, "confirming a release"),
            }
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
        // In the background: resuming (and retrying failed resumes) never holds up the next
        // ownership event. A shard lost meanwhile stops what started (`Engine::connect` and
        // `release_where` share each session's gate).
        let engine = self.engine.clone();
        tokio::spawn(async move {
            engine
                .resume_paired_where(|name| held.contains(&shard_of(name)))
                .await;
        });
    }
}
