//! Sessions follow their shard: the node's ownership events start and stop WhatsApp clients.
//!
//! - `Acquired`: the shard's paired sessions connect (no QR: the keys are in the database).
//! - `Releasing` (planned handoff, e.g. a drain): the shard's clients stop cleanly, then the
//!   release is confirmed so the new owner gets the shard with a higher epoch.
//! - `Lost` (the lease ran out, or the shard was taken): the clients stop at once.
//!
//! Events that arrive together are handled together, so the 1024 `Acquired` of a node's start
//! cost one pass over the sessions, not 1024.

use std::{collections::BTreeMap, sync::Arc};

use onwapp_cluster::{OwnershipEvent, shard_of};
use tokio::{sync::mpsc::UnboundedReceiver, task::JoinHandle};
use tokio_util::sync::CancellationToken;

use super::Shards;
use crate::engine::Engine;

/// Starts the driver; it stops when `cancel` fires.
pub fn spawn(
    shards: Arc<Shards>,
    engine: Arc<Engine>,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    let events = shards.node().subscribe();
    tokio::spawn(async move { run(shards, engine, events, cancel).await })
}

async fn run(
    shards: Arc<Shards>,
    engine: Arc<Engine>,
    mut events: UnboundedReceiver<OwnershipEvent>,
    cancel: CancellationToken,
) {
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
        // Consecutive acquisitions are resumed in one pass; anything else first flushes them,
        // so a shard acquired then lost within one batch ends stopped.
        let mut acquired: BTreeMap<u32, u64> = BTreeMap::new();
        for ev in batch {
            match ev {
                OwnershipEvent::Acquired { shard, epoch } => {
                    acquired.insert(shard, epoch);
                }
                OwnershipEvent::Releasing { shard, epoch, to } => {
                    acquire(&engine, std::mem::take(&mut acquired)).await;
                    let n = engine.release_where(|name| shard_of(name) == shard).await;
                    tracing::info!(shard, epoch, to, sessions = n, "shard handed off");
                    if let Err(e) = shards.node().confirm_released(shard, epoch).await {
                        tracing::warn!(shard, epoch, error = %e, "confirming a release");
                    }
                }
                OwnershipEvent::Lost { shard, epoch } => {
                    acquire(&engine, std::mem::take(&mut acquired)).await;
                    let n = engine.release_where(|name| shard_of(name) == shard).await;
                    if n > 0 {
                        tracing::warn!(
                            shard,
                            epoch,
                            sessions = n,
                            "shard lost; its sessions stopped"
                        );
                    }
                }
            }
        }
        acquire(&engine, acquired).await;
    }
}

async fn acquire(engine: &Arc<Engine>, shards: BTreeMap<u32, u64>) {
    if shards.is_empty() {
        return;
    }
    tracing::info!(
        shards = shards.len(),
        "shards acquired; resuming their sessions"
    );
    engine
        .resume_paired_where(|name| shards.contains_key(&shard_of(name)))
        .await;
}
