//! Group commit of outbox-only events (`EventStore::record_events`): presence, receipts without
//! a stored message, calls, group and contact notices. Each caller still gets its answer only
//! once its rows are committed, but the calls that arrive while a transaction is in flight are
//! written together in the next one: one fence check for all their sessions, one multi-row
//! INSERT, one commit. Under load this turns five statements and a commit per event into about
//! four per batch, which is what lets one node on Postgres enqueue thousands of events a second
//! (`docs/benchmarks.md`, webhooks). A session's events stay in order: a caller's rows are inserted
//! in the order given, and a caller waits for its write before making the next.
//!
//! A batch that fails as a whole (a deleted session's foreign key, a lost connection) is written
//! again call by call, so one bad call fails alone.

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{StoreResult, events::NewEvent};

/// At most this many rows in one INSERT (8 binds each, far below both databases' bind limits).
pub(crate) const MAX_ROWS: usize = 512;

/// One `record_events` call waiting for its batch.
pub(crate) struct Append {
    pub session_id: Uuid,
    pub events: Vec<NewEvent>,
    pub done: oneshot::Sender<StoreResult<()>>,
}

/// The sending side; the writer task ends when the store (its last sender) is dropped.
pub(crate) type Appender = mpsc::UnboundedSender<Append>;

/// Takes the next batch: waits for one call, then takes whatever else is already queued, up to
/// [`MAX_ROWS`] rows. `None` when the store is gone.
pub(crate) async fn next_batch(rx: &mut mpsc::UnboundedReceiver<Append>) -> Option<Vec<Append>> {
    let first = rx.recv().await?;
    let mut rows = first.events.len();
    let mut batch = vec![first];
    while rows < MAX_ROWS {
        match rx.try_recv() {
            Ok(a) => {
                rows += a.events.len();
                batch.push(a);
            }
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The writer of both databases: `spawn_appender` starts the task that writes batches with
/// `$begin` (`BEGIN IMMEDIATE` on SQLite) and locks the sessions' fence rows with `$lock`.
macro_rules! impl_group_commit {
    ($store:ty, $db:ty, $begin:literal, $lock:literal) => {
        impl $store {
            /// Starts the writer of this store's outbox-only events.
            pub(crate) fn spawn_appender(
                pool: sqlx::Pool<$db>,
                fences: std::sync::Arc<$crate::store::fence::Fences>,
                signal: std::sync::Arc<tokio::sync::Notify>,
            ) -> $crate::store::group_commit::Appender {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(async move {
                    while let Some(batch) = $crate::store::group_commit::next_batch(&mut rx).await {
                        Self::write_appends(&pool, &fences, batch).await;
                        signal.notify_one();
                    }
                });
                tx
            }

            /// Writes a batch in one transaction and answers every caller; on a failure of the
            /// whole batch, writes each call alone.
            async fn write_appends(
                pool: &sqlx::Pool<$db>,
                fences: &$crate::store::fence::Fences,
                batch: Vec<$crate::store::group_commit::Append>,
            ) {
                match Self::try_batch(pool, fences, &batch).await {
                    Ok(verdicts) => {
                        for (a, verdict) in batch.into_iter().zip(verdicts) {
                            let result = match verdict {
                                Verdict::Written => Ok(()),
                                Verdict::Refused(msg) => {
                                    Err($crate::store::StoreError::Fenced(msg))
                                }
                                Verdict::Alone => {
                                    Self::append_alone(pool, fences, a.session_id, &a.events).await
                                }
                            };
                            let _ = a.done.send(result);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, calls = batch.len(), "outbox batch failed; writing its calls one by one");
                        for a in batch {
                            let result =
                                Self::append_alone(pool, fences, a.session_id, &a.events).await;
                            let _ = a.done.send(result);
                        }
                    }
                }
            }

            /// One call in its own fenced transaction (the path of a batch that failed).
            async fn append_alone(
                pool: &sqlx::Pool<$db>,
                fences: &$crate::store::fence::Fences,
                session_id: uuid::Uuid,
                events: &[$crate::store::events::NewEvent],
            ) -> $crate::store::StoreResult<()> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, || "conflict".to_string());
                let mut tx = begin_fenced(pool, fences, session_id).await?;
                Self::append_outbox_events(&mut tx, session_id, events)
                    .await
                    .map_err(q)?;
                tx.commit().await.map_err(q)
            }

            /// The batch in one transaction: the fence rows of its sessions locked and checked
            /// at once, then one INSERT of every accepted call's rows, in order.
            async fn try_batch(
                pool: &sqlx::Pool<$db>,
                fences: &$crate::store::fence::Fences,
                batch: &[$crate::store::group_commit::Append],
            ) -> Result<Vec<Verdict>, sqlx::Error> {
                let mut tx = pool.begin_with($begin).await?;
                let mut verdicts: Vec<Verdict> = vec![Verdict::Written; batch.len()];
                if fences.enforced() {
                    let mut ids: Vec<uuid::Uuid> = batch.iter().map(|a| a.session_id).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "SELECT s.id, s.shard, f.epoch FROM shard_fence f \
                         JOIN sessions s ON s.shard = f.shard WHERE s.id IN (",
                    );
                    let mut list = qb.separated(", ");
                    for id in &ids {
                        list.push_bind(*id);
                    }
                    qb.push(") ");
                    qb.push($lock);
                    let rows: Vec<(uuid::Uuid, i32, i64)> =
                        qb.build_query_as().fetch_all(&mut *tx).await?;
                    let checked: std::collections::HashMap<uuid::Uuid, (i32, i64)> = rows
                        .into_iter()
                        .map(|(id, shard, epoch)| (id, (shard, epoch)))
                        .collect();
                    for (a, verdict) in batch.iter().zip(verdicts.iter_mut()) {
                        *verdict = match checked.get(&a.session_id) {
                            Some(&(shard, epoch)) if fences.allows(shard, epoch) => Verdict::Written,
                            Some(&(shard, epoch)) => Verdict::Refused(fences.refused(
                                a.session_id,
                                Some(shard),
                                Some(epoch),
                            )),
                            // No fence row: the single path decides (unknown or unsharded).
                            None => Verdict::Alone,
                        };
                    }
                }
                let at = $crate::store::sql::now();
                let rows: Vec<(uuid::Uuid, &$crate::store::events::NewEvent)> = batch
                    .iter()
                    .zip(&verdicts)
                    .filter(|(_, v)| matches!(v, Verdict::Written))
                    .flat_map(|(a, _)| a.events.iter().map(move |e| (a.session_id, e)))
                    .collect();
                if !rows.is_empty() {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "INSERT INTO webhook_outbox \
                         (id, session_id, event, payload, state, attempts, created_at, next_attempt_at) ",
                    );
                    qb.push_values(rows, |mut b, (session_id, e)| {
                        b.push_bind(uuid::Uuid::now_v7())
                            .push_bind(session_id)
                            .push_bind(e.name)
                            .push_bind(sqlx::types::Json(&e.payload))
                            .push_bind("pending")
                            .push_bind(0i32)
                            .push_bind(at)
                            .push_bind(at);
                    });
                    qb.build().execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(verdicts)
            }
        }

        /// What a batch decided for one call.
        #[derive(Clone)]
        enum Verdict {
            Written,
            Refused(String),
            /// Written on its own after the batch (no fence row to check it against).
            Alone,
        }
    };
}

pub(crate) use impl_group_commit;
