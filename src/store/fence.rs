//! Epoch fencing of a session's durable writes (design section 4).
//!
//! [`Fences`] holds, per shard, the epoch this node owns it at (0: not held). The shard driver
//! raises the shard's row in `shard_fence` when it acquires a shard ([`FenceStore::acquire_fence`])
//! and records the epoch here. Once [`Fences::enforce`] was called, every transaction that writes
//! a session's durable state first reads its shard's row `FOR SHARE` and aborts with
//! [`StoreError::Fenced`](super::StoreError::Fenced) unless it holds the epoch this node holds: a
//! node that lost a shard (paused, partitioned) cannot write for its sessions, and a new owner's
//! fence UPDATE waits for the old owner's writes in flight. The check itself is
//! `impl_fence_store!`, one macro for both databases.

use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use async_trait::async_trait;
use tokio::sync::broadcast;
use uuid::Uuid;

use super::StoreResult;

pub use onwapp_cluster::{SHARDS, shard_of};

/// The epochs this node holds, per shard (0 = not held). Shared by the store and the shard driver.
pub struct Fences {
    epochs: Box<[AtomicU64]>,
    enforced: AtomicBool,
    /// Sessions whose write was just refused (a live client of such a session stops).
    fenced: broadcast::Sender<Uuid>,
}

impl Fences {
    /// Not enforced: every write is allowed (tests, tools).
    pub fn new() -> Arc<Fences> {
        Arc::new(Fences {
            epochs: (0..SHARDS).map(|_| AtomicU64::new(0)).collect(),
            enforced: AtomicBool::new(false),
            fenced: broadcast::channel(256).0,
        })
    }

    /// From now on every durable session write checks its shard's epoch (the server calls
    /// this once at start-up, single node and cluster alike).
    pub fn enforce(&self) {
        self.enforced.store(true, Ordering::SeqCst);
    }

    pub fn enforced(&self) -> bool {
        self.enforced.load(Ordering::SeqCst)
    }

    /// This node owns `shard` at `epoch` (0 releases it). Out-of-range shards are ignored.
    pub fn hold(&self, shard: u32, epoch: u64) {
        if let Some(e) = self.epochs.get(shard as usize) {
            e.store(epoch, Ordering::SeqCst);
        }
    }

    pub fn release(&self, shard: u32) {
        self.hold(shard, 0);
    }

    /// The epoch this node holds `shard` at.
    pub fn held(&self, shard: u32) -> Option<u64> {
        let e = self.epochs.get(shard as usize)?.load(Ordering::SeqCst);
        (e > 0).then_some(e)
    }

    pub fn held_shards(&self) -> Vec<u32> {
        (0..SHARDS).filter(|s| self.held(*s).is_some()).collect()
    }

    pub fn holds_all(&self) -> bool {
        (0..SHARDS).all(|s| self.held(s).is_some())
    }

    /// Holds every shard at `epoch` (a single node that fenced them all; test helpers).
    pub fn hold_all(&self, epoch: u64) {
        (0..SHARDS).for_each(|s| self.hold(s, epoch));
    }

    /// The sessions whose writes are refused from now on, one message per refused write
    /// (a lagging receiver only misses repeats: a fenced session's next write reports again).
    pub fn subscribe_fenced(&self) -> broadcast::Receiver<Uuid> {
        self.fenced.subscribe()
    }

    /// The refusal of a write of `session_id`, reported to [`Self::subscribe_fenced`].
    pub(crate) fn refused(
        &self,
        session_id: Uuid,
        shard: Option<i32>,
        owned: Option<i64>,
    ) -> String {
        let _ = self.fenced.send(session_id);
        let held = shard
            .and_then(|s| u32::try_from(s).ok())
            .and_then(|s| self.held(s))
            .map_or_else(|| "does not hold it".to_string(), |e| format!("holds {e}"));
        let msg = match (shard, owned) {
            (Some(s), Some(e)) => {
                format!("session {session_id}: shard {s} is owned at epoch {e}, this node {held}")
            }
            _ => {
                format!("session {session_id}: its shard is not known, this node may not write it")
            }
        };
        tracing::warn!(%session_id, "write fenced: {msg}");
        msg
    }

    /// Whether a write of a session of `shard` whose fence row says `epoch` may proceed.
    pub(crate) fn allows(&self, shard: i32, epoch: i64) -> bool {
        let held = u32::try_from(shard).ok().and_then(|s| self.held(s));
        matches!((held, u64::try_from(epoch)), (Some(h), Ok(e)) if h == e)
    }
}

/// The fence of each shard in the database, and the epochs this node holds.
#[async_trait]
pub trait FenceStore: Send + Sync {
    /// The epochs this node holds (each store owns one, created at connect).
    fn fences(&self) -> Arc<Fences>;
    /// Raises the shard's fence to `epoch` (`UPDATE shard_fence SET epoch = $new WHERE shard = $s
    /// AND epoch < $new`), waiting for writes in flight under the old epoch. `true` when the
    /// fence now stands at `epoch` (raised, or already there: a lease regained at the same
    /// epoch), and then this node holds the shard at `epoch` in [`Self::fences`]; `false` when
    /// the table has a higher epoch (someone newer owns it).
    async fn acquire_fence(&self, shard: u32, epoch: u64) -> StoreResult<bool>;
    /// [`Self::acquire_fence`] of every shard in one statement (a single node, test helpers).
    /// Holds the shards whose fence now stands at `epoch`; `true` when that is all of them.
    async fn acquire_all_fences(&self, epoch: u64) -> StoreResult<bool>;
    /// [`Self::acquire_fence`] of several shards at their own epochs, in one transaction (the
    /// shards a node acquires together, e.g. all of them at start-up). Returns the shards now
    /// held; the others are owned at a newer epoch.
    async fn acquire_fences(&self, shards: &[(u32, u64)]) -> StoreResult<Vec<u32>>;
    /// The highest epoch any fence has stood at (0 when none was ever taken). A shard map
    /// rebuilt from nothing numbers its epochs above it, or the fences would refuse them all.
    async fn max_fence_epoch(&self) -> StoreResult<u64>;
}

/// The statement every fenced transaction starts with, after `$lock` (`FOR SHARE OF f` on
/// Postgres; SQLite has no row locks, its `BEGIN IMMEDIATE` already excludes other writers).
macro_rules! fence_check_sql {
    ($lock:literal) => {
        concat!(
            "SELECT s.shard, f.epoch FROM shard_fence f JOIN sessions s ON s.shard = f.shard ",
            "WHERE s.id = $1 ",
            $lock
        )
    };
}
pub(crate) use fence_check_sql;

/// The fence of both databases: `$begin` starts a transaction that will write (`BEGIN
/// IMMEDIATE` on SQLite), `$lock` locks the fence row against a new owner's UPDATE.
macro_rules! impl_fence_store {
    ($store:ty, $db:ty, $begin:literal, $lock:literal) => {
        /// Checks inside `tx` that this node holds the epoch of the session's shard, locking the
        /// shard's fence row until `tx` ends. Nothing to check unless fencing is enforced. A
        /// session that does not exist passes (its writes fail or change nothing on their own).
        pub(crate) async fn check_fence(
            tx: &mut sqlx::Transaction<'_, $db>,
            fences: &$crate::store::fence::Fences,
            session_id: uuid::Uuid,
        ) -> $crate::store::StoreResult<()> {
            if !fences.enforced() {
                return Ok(());
            }
            let e = |e| $crate::store::StoreError::from_sqlx(e, String::new);
            let row: Option<(i32, i64)> =
                sqlx::query_as::<$db, (i32, i64)>($crate::store::fence::fence_check_sql!($lock))
                    .bind(session_id)
                    .fetch_optional(&mut **tx)
                    .await
                    .map_err(e)?;
            if let Some((shard, epoch)) = row {
                if fences.allows(shard, epoch) {
                    return Ok(());
                }
                return Err($crate::store::StoreError::Fenced(fences.refused(
                    session_id,
                    Some(shard),
                    Some(epoch),
                )));
            }
            // No fence row: an unknown session passes (its writes fail or change nothing on
            // their own); one without a shard may not write.
            let known = sqlx::query_scalar::<$db, i32>("SELECT 1 FROM sessions WHERE id = $1")
                .bind(session_id)
                .fetch_optional(&mut **tx)
                .await
                .map_err(e)?;
            match known {
                None => Ok(()),
                Some(_) => Err($crate::store::StoreError::Fenced(
                    fences.refused(session_id, None, None),
                )),
            }
        }

        /// Starts a transaction that writes the durable state of `session_id`, fenced.
        pub(crate) async fn begin_fenced(
            pool: &sqlx::Pool<$db>,
            fences: &$crate::store::fence::Fences,
            session_id: uuid::Uuid,
        ) -> $crate::store::StoreResult<sqlx::Transaction<'static, $db>> {
            let mut tx = pool
                .begin_with($begin)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))?;
            check_fence(&mut tx, fences, session_id).await?;
            Ok(tx)
        }

        impl $store {
            /// A transaction that will write (SQLite: `BEGIN IMMEDIATE`, so one that reads
            /// first cannot fail to upgrade its lock), without a fence check of its own.
            pub(crate) async fn begin_writing(
                &self,
            ) -> $crate::store::StoreResult<sqlx::Transaction<'static, $db>> {
                self.pool
                    .begin_with($begin)
                    .await
                    .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            /// [`begin_fenced`] on this store's pool and fences.
            pub(crate) async fn begin_write(
                &self,
                session_id: uuid::Uuid,
            ) -> $crate::store::StoreResult<sqlx::Transaction<'static, $db>> {
                begin_fenced(&self.pool, &self.fences, session_id).await
            }

            /// Sets the shard of sessions created before migration 0017 (the hash is Rust's).
            async fn backfill_shards(&self) -> anyhow::Result<()> {
                let rows: Vec<(uuid::Uuid, String)> = sqlx::query_as::<$db, (uuid::Uuid, String)>(
                    "SELECT id, name FROM sessions WHERE shard IS NULL",
                )
                .fetch_all(&self.pool)
                .await?;
                for (id, name) in &rows {
                    sqlx::query::<$db>("UPDATE sessions SET shard = $1 WHERE id = $2")
                        .bind($crate::store::fence::shard_of(name) as i32)
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                }
                if !rows.is_empty() {
                    tracing::info!(sessions = rows.len(), "session shards backfilled");
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::fence::FenceStore for $store {
            fn fences(&self) -> std::sync::Arc<$crate::store::fence::Fences> {
                self.fences.clone()
            }

            async fn acquire_fence(
                &self,
                shard: u32,
                epoch: u64,
            ) -> $crate::store::StoreResult<bool> {
                let e = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let (Ok(s), Ok(ep)) = (i32::try_from(shard), i64::try_from(epoch)) else {
                    return Err(
                        anyhow::anyhow!("shard {shard} at epoch {epoch} is out of range").into(),
                    );
                };
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                sqlx::query::<$db>(
                    "UPDATE shard_fence SET epoch = $2 WHERE shard = $1 AND epoch < $2",
                )
                .bind(s)
                .bind(ep)
                .execute(&mut *tx)
                .await
                .map_err(e)?;
                let now: Option<i64> = sqlx::query_scalar::<$db, i64>(
                    "SELECT epoch FROM shard_fence WHERE shard = $1",
                )
                .bind(s)
                .fetch_optional(&mut *tx)
                .await
                .map_err(e)?;
                tx.commit().await.map_err(e)?;
                match now {
                    Some(now) if now == ep => {
                        self.fences.hold(shard, epoch);
                        tracing::debug!(shard, epoch, "shard fence acquired");
                        Ok(true)
                    }
                    Some(now) => {
                        tracing::warn!(
                            shard,
                            epoch,
                            owned_at = now,
                            "shard fence is newer: not acquired"
                        );
                        Ok(false)
                    }
                    None => Err(anyhow::anyhow!("shard {shard} has no fence row").into()),
                }
            }

            async fn max_fence_epoch(&self) -> $crate::store::StoreResult<u64> {
                let (max,): (i64,) = sqlx::query_as::<$db, (i64,)>(
                    "SELECT COALESCE(MAX(epoch), 0) FROM shard_fence",
                )
                .fetch_one(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))?;
                Ok(u64::try_from(max).unwrap_or(0))
            }

            async fn acquire_fences(
                &self,
                shards: &[(u32, u64)],
            ) -> $crate::store::StoreResult<Vec<u32>> {
                let e = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                let mut now = Vec::with_capacity(shards.len());
                for &(shard, epoch) in shards {
                    let (Ok(s), Ok(ep)) = (i32::try_from(shard), i64::try_from(epoch)) else {
                        return Err(anyhow::anyhow!(
                            "shard {shard} at epoch {epoch} is out of range"
                        )
                        .into());
                    };
                    let at: Option<i64> = sqlx::query_scalar::<$db, i64>(
                        "UPDATE shard_fence SET epoch = CASE WHEN epoch < $2 THEN $2 ELSE epoch END \
                         WHERE shard = $1 RETURNING epoch",
                    )
                    .bind(s)
                    .bind(ep)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(e)?;
                    now.push((shard, epoch, at));
                }
                tx.commit().await.map_err(e)?;
                let mut held = Vec::with_capacity(now.len());
                for (shard, epoch, at) in now {
                    if at == i64::try_from(epoch).ok() {
                        self.fences.hold(shard, epoch);
                        held.push(shard);
                    } else {
                        tracing::warn!(shard, epoch, owned_at = ?at, "shard fence is newer: not acquired");
                    }
                }
                Ok(held)
            }

            async fn acquire_all_fences(&self, epoch: u64) -> $crate::store::StoreResult<bool> {
                let e = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let Ok(ep) = i64::try_from(epoch) else {
                    return Err(anyhow::anyhow!("epoch {epoch} is out of range").into());
                };
                let mut tx = self.pool.begin_with($begin).await.map_err(e)?;
                sqlx::query::<$db>("UPDATE shard_fence SET epoch = $1 WHERE epoch < $1")
                    .bind(ep)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?;
                let at: Vec<i32> = sqlx::query_scalar::<$db, i32>(
                    "SELECT shard FROM shard_fence WHERE epoch = $1",
                )
                .bind(ep)
                .fetch_all(&mut *tx)
                .await
                .map_err(e)?;
                tx.commit().await.map_err(e)?;
                for shard in &at {
                    if let Ok(s) = u32::try_from(*shard) {
                        self.fences.hold(s, epoch);
                    }
                }
                Ok(at.len() == $crate::store::fence::SHARDS as usize)
            }
        }
    };
}
pub(crate) use impl_fence_store;

#[async_trait]
impl FenceStore for super::CachedStore {
    fn fences(&self) -> Arc<Fences> {
        self.inner().fences()
    }

    async fn acquire_fence(&self, shard: u32, epoch: u64) -> StoreResult<bool> {
        self.inner().acquire_fence(shard, epoch).await
    }

    async fn acquire_all_fences(&self, epoch: u64) -> StoreResult<bool> {
        self.inner().acquire_all_fences(epoch).await
    }

    async fn acquire_fences(&self, shards: &[(u32, u64)]) -> StoreResult<Vec<u32>> {
        self.inner().acquire_fences(shards).await
    }

    async fn max_fence_epoch(&self) -> StoreResult<u64> {
        self.inner().max_fence_epoch().await
    }
}
