//! The webhook outbox seen by the delivery workers (design section 7): claim sessions' queues,
//! read their pending events in order, record each attempt's outcome, and the dead letters.
//!
//! Postgres claims sessions with session-level advisory locks (one per session, skipped when
//! taken) held on one pooled connection for as long as the claim lives, so any number of workers
//! on any number of nodes never deliver one session's events concurrently. SQLite (one node, one
//! process) keeps the sessions in flight in a set instead. Outcomes are written through the
//! pool, so progress is durable while the claim is held (the workers write them in groups, and
//! always before they let a session go).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

use super::StoreResult;

/// A pending event, as a worker delivers it.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct QueuedEvent {
    pub id: Uuid,
    pub session_id: Uuid,
    pub event: String,
    pub payload: Json<Value>,
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    /// JetStream acknowledged it already (it stayed pending for its webhook).
    pub published: bool,
}

/// A dead letter: an event that will not be retried until it is replayed.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct DeadLetter {
    pub id: Uuid,
    pub event: String,
    pub payload: Json<Value>,
    pub attempts: i32,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub dead_at: Option<DateTime<Utc>>,
}

/// What one attempt (or the filter) decided for an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Delivered {
        status: i32,
    },
    /// Try again at `at`; the session's later events wait behind it.
    Retry {
        status: Option<i32>,
        error: String,
        at: DateTime<Utc>,
    },
    Dead {
        status: Option<i32>,
        error: String,
    },
    /// No enabled webhook, or its `events` list leaves this event out.
    Skipped,
    /// Not attempted: another sink it goes to first (NATS) is unavailable. Tried again at `at`
    /// without counting an attempt; the session's later events wait behind it.
    Held {
        error: String,
        at: DateTime<Utc>,
    },
}

/// Some sessions' queues, owned by one worker until [`OutboxClaim::release`] (or drop).
#[async_trait]
pub trait OutboxClaim: Send + Sync {
    /// The claimed sessions; never empty.
    fn session_ids(&self) -> &[Uuid];
    /// The first claimed session (the only one of a claim of one).
    fn session_id(&self) -> Uuid {
        self.session_ids().first().copied().unwrap_or_default()
    }
    /// Lets one claimed session go before the others (its worker is done with it).
    async fn release_session(&self, session_id: Uuid) -> StoreResult<()>;
    /// Lets every session of the claim go.
    async fn release(self: Box<Self>) -> StoreResult<()>;
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Takes up to `limit` sessions whose oldest pending event is due at `now` and that no other
    /// worker owns, among the sessions of the shards this node holds (any session while fencing
    /// is not enforced or every shard is held); `None` when there is none.
    async fn claim_sessions(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Option<Box<dyn OutboxClaim>>>;
    /// [`OutboxStore::claim_sessions`] of one session.
    async fn claim_session(&self, now: DateTime<Utc>) -> StoreResult<Option<Box<dyn OutboxClaim>>> {
        self.claim_sessions(now, 1).await
    }
    /// The session's pending events, oldest first.
    async fn queued_events(&self, session_id: Uuid, limit: i64) -> StoreResult<Vec<QueuedEvent>>;
    /// [`OutboxStore::queued_events`] of several sessions in one read: each session's first
    /// `limit` pending events, oldest first, the sessions one after another.
    async fn queued_events_of(
        &self,
        session_ids: &[Uuid],
        limit: i64,
    ) -> StoreResult<Vec<QueuedEvent>> {
        queues_one_by_one(self, session_ids, limit).await
    }
    /// Marks events as published to NATS (they stay pending for their webhook).
    async fn mark_published(&self, ids: &[Uuid]) -> StoreResult<()>;
    /// Records the outcomes of attempts, in one transaction: (event id, its session, outcome).
    async fn record_outcomes(&self, outcomes: &[(Uuid, Uuid, Outcome)]) -> StoreResult<()>;
    /// Records the outcome of an attempt on event `id` of `session_id`.
    async fn record_outcome(
        &self,
        id: Uuid,
        session_id: Uuid,
        outcome: &Outcome,
    ) -> StoreResult<()> {
        self.record_outcomes(&[(id, session_id, outcome.clone())])
            .await
    }
    /// The session's dead letters, oldest first, and how many there are.
    async fn dead_letters(
        &self,
        session_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(i64, Vec<DeadLetter>)>;
    /// Puts dead letters back in the queue (all of the session's when `ids` is `None`).
    /// `Err(NotFound)` naming the ids that are not dead letters of the session, and nothing
    /// replayed, when any is unknown.
    async fn replay_dead_letters(&self, session_id: Uuid, ids: Option<&[Uuid]>)
    -> StoreResult<u64>;
    /// Deletes delivered and skipped events created before `before`.
    async fn purge_finished(&self, before: DateTime<Utc>) -> StoreResult<u64>;
    /// Pending and dead events over every session (the metrics gauges).
    async fn outbox_depth(&self) -> StoreResult<(i64, i64)>;
    /// Notified (one waiter) whenever this store commits new or replayed outbox rows; the
    /// delivery workers wait on it between polls. Events are written by the node that owns
    /// the session, which is also the node that delivers them, so an in-process signal is
    /// enough.
    fn outbox_signal(&self) -> std::sync::Arc<tokio::sync::Notify>;
}

/// [`OutboxStore::queued_events_of`] as one read per session (a store without a single
/// statement for it).
pub(crate) async fn queues_one_by_one<S: OutboxStore + ?Sized>(
    store: &S,
    session_ids: &[Uuid],
    limit: i64,
) -> StoreResult<Vec<QueuedEvent>> {
    let mut all = Vec::new();
    for id in session_ids {
        all.extend(store.queued_events(*id, limit).await?);
    }
    Ok(all)
}

/// The statements both databases share; `$seq` is the column that orders a session's events.
/// Each store also has an inherent `queued_events_many` (the read of several queues at once).
macro_rules! impl_outbox_store {
    ($store:ty, $db:ty, $seq:literal) => {
        impl $store {
            /// Wakes a delivery worker: outbox rows were just committed.
            pub(crate) fn outbox_appended(&self) {
                self.outbox_signal.notify_one();
            }
        }

        impl $store {
            /// The outcomes of `outcomes` whose session's fence this node holds (each session
            /// checked once, its fence row locked until `tx` ends).
            async fn fenced_outcomes<'a>(
                tx: &mut sqlx::Transaction<'_, $db>,
                fences: &$crate::store::fence::Fences,
                outcomes: &'a [(uuid::Uuid, uuid::Uuid, $crate::store::outbox::Outcome)],
            ) -> $crate::store::StoreResult<
                Vec<&'a (uuid::Uuid, uuid::Uuid, $crate::store::outbox::Outcome)>,
            > {
                if !fences.enforced() {
                    return Ok(outcomes.iter().collect());
                }
                let sessions: std::collections::BTreeSet<uuid::Uuid> =
                    outcomes.iter().map(|(_, session, _)| *session).collect();
                let mut allowed = std::collections::BTreeSet::new();
                for session in sessions {
                    match check_fence(tx, fences, session).await {
                        Ok(()) => {
                            allowed.insert(session);
                        }
                        Err($crate::store::StoreError::Fenced(_)) => {}
                        Err(other) => return Err(other),
                    }
                }
                Ok(outcomes
                    .iter()
                    .filter(|(_, session, _)| allowed.contains(session))
                    .collect())
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::outbox::OutboxStore for $store {
            fn outbox_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
                self.outbox_signal.clone()
            }

            async fn claim_sessions(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                limit: usize,
            ) -> $crate::store::StoreResult<Option<Box<dyn $crate::store::outbox::OutboxClaim>>> {
                self.claim_outbox_sessions(now, limit.max(1)).await
            }

            async fn queued_events(
                &self,
                session_id: uuid::Uuid,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::outbox::QueuedEvent>> {
                sqlx::query_as::<$db, $crate::store::outbox::QueuedEvent>(concat!(
                    "SELECT id, session_id, event, payload, attempts, created_at, next_attempt_at, \
                     published FROM webhook_outbox WHERE session_id = $1 AND state = 'pending' ORDER BY ",
                    $seq,
                    " LIMIT $2"
                ))
                .bind(session_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            async fn queued_events_of(
                &self,
                session_ids: &[uuid::Uuid],
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::outbox::QueuedEvent>> {
                self.queued_events_many(session_ids, limit).await
            }

            async fn mark_published(
                &self,
                ids: &[uuid::Uuid],
            ) -> $crate::store::StoreResult<()> {
                for chunk in ids.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE webhook_outbox SET published = TRUE WHERE id IN (",
                    );
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    qb.build()
                        .execute(&self.pool)
                        .await
                        .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))?;
                }
                Ok(())
            }

            async fn record_outcomes(
                &self,
                outcomes: &[(uuid::Uuid, uuid::Uuid, $crate::store::outbox::Outcome)],
            ) -> $crate::store::StoreResult<()> {
                use $crate::store::outbox::Outcome;
                let e = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                if outcomes.is_empty() {
                    return Ok(());
                }
                let at = $crate::store::sql::now();
                let mut tx = self.begin_writing().await?;
                // Fenced per session: outcomes of a session whose shard this node no longer
                // holds are not written (its new owner delivers those events again, with the
                // same X-Webhook-Id).
                let outcomes = Self::fenced_outcomes(&mut tx, &self.fences, outcomes).await?;
                // The common outcomes (delivered with one status, skipped) in one UPDATE each.
                let mut delivered: std::collections::BTreeMap<i32, Vec<uuid::Uuid>> =
                    Default::default();
                let mut skipped = Vec::new();
                for (id, _, outcome) in outcomes.iter().copied() {
                    let q = match outcome {
                        Outcome::Delivered { status } => {
                            delivered.entry(*status).or_default().push(*id);
                            continue;
                        }
                        Outcome::Skipped => {
                            skipped.push(*id);
                            continue;
                        }
                        Outcome::Retry { status, error, at: next } => sqlx::query::<$db>(
                            "UPDATE webhook_outbox SET attempts = attempts + 1, last_status = $2, \
                             last_error = $3, next_attempt_at = $4 WHERE id = $1",
                        )
                        .bind(*id)
                        .bind(*status)
                        .bind(error.as_str())
                        .bind(*next),
                        Outcome::Held { error, at: next } => sqlx::query::<$db>(
                            "UPDATE webhook_outbox SET last_error = $2, next_attempt_at = $3 \
                             WHERE id = $1",
                        )
                        .bind(*id)
                        .bind(error.as_str())
                        .bind(*next),
                        Outcome::Dead { status, error } => sqlx::query::<$db>(
                            "UPDATE webhook_outbox SET state = 'dead', attempts = attempts + 1, \
                             last_status = $2, last_error = $3, dead_at = $4 WHERE id = $1",
                        )
                        .bind(*id)
                        .bind(*status)
                        .bind(error.as_str())
                        .bind(at),
                    };
                    q.execute(&mut *tx).await.map_err(e)?;
                }
                for (status, ids) in &delivered {
                    for chunk in ids.chunks(1000) {
                        let mut qb = sqlx::QueryBuilder::<$db>::new(
                            "UPDATE webhook_outbox SET state = 'delivered', attempts = attempts + 1, \
                             last_error = NULL, last_status = ",
                        );
                        qb.push_bind(*status).push(", delivered_at = ").push_bind(at);
                        qb.push(" WHERE id IN (");
                        let mut list = qb.separated(", ");
                        for id in chunk {
                            list.push_bind(*id);
                        }
                        qb.push(")");
                        qb.build().execute(&mut *tx).await.map_err(e)?;
                    }
                }
                for chunk in skipped.chunks(1000) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(
                        "UPDATE webhook_outbox SET state = 'skipped', delivered_at = ",
                    );
                    qb.push_bind(at).push(" WHERE id IN (");
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    qb.build().execute(&mut *tx).await.map_err(e)?;
                }
                tx.commit().await.map_err(e)
            }

            async fn dead_letters(
                &self,
                session_id: uuid::Uuid,
                limit: i64,
                offset: i64,
            ) -> $crate::store::StoreResult<(i64, Vec<$crate::store::outbox::DeadLetter>)> {
                let e = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let (total,): (i64,) = sqlx::query_as::<$db, (i64,)>(
                    "SELECT COUNT(*) FROM webhook_outbox WHERE session_id = $1 AND state = 'dead'",
                )
                .bind(session_id)
                .fetch_one(&self.pool)
                .await
                .map_err(e)?;
                let rows = sqlx::query_as::<$db, $crate::store::outbox::DeadLetter>(concat!(
                    "SELECT id, event, payload, attempts, last_status, last_error, created_at, dead_at \
                     FROM webhook_outbox WHERE session_id = $1 AND state = 'dead' ORDER BY ",
                    $seq,
                    " LIMIT $2 OFFSET $3"
                ))
                .bind(session_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await
                .map_err(e)?;
                Ok((total, rows))
            }

            async fn replay_dead_letters(
                &self,
                session_id: uuid::Uuid,
                ids: Option<&[uuid::Uuid]>,
            ) -> $crate::store::StoreResult<u64> {
                let e = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let at = $crate::store::sql::now();
                const REPLAY: &str = "UPDATE webhook_outbox SET state = 'pending', attempts = 0, \
                     next_attempt_at = $2, dead_at = NULL WHERE session_id = $1 AND state = 'dead'";
                let mut tx = self.begin_write(session_id).await?;
                let Some(ids) = ids else {
                    let n = sqlx::query::<$db>(REPLAY)
                        .bind(session_id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(e)?
                        .rows_affected();
                    tx.commit().await.map_err(e)?;
                    self.outbox_appended();
                    return Ok(n);
                };
                let mut missing = Vec::new();
                let mut n = 0;
                for id in ids {
                    let changed = sqlx::query::<$db>(
                        "UPDATE webhook_outbox SET state = 'pending', attempts = 0, \
                         next_attempt_at = $2, dead_at = NULL \
                         WHERE session_id = $1 AND state = 'dead' AND id = $3",
                    )
                    .bind(session_id)
                    .bind(at)
                    .bind(*id)
                    .execute(&mut *tx)
                    .await
                    .map_err(e)?
                    .rows_affected();
                    if changed == 0 {
                        missing.push(id.to_string());
                    }
                    n += changed;
                }
                if !missing.is_empty() {
                    tx.rollback().await.map_err(e)?;
                    return Err($crate::store::StoreError::NotFound(format!(
                        "no failed events with ids: {}",
                        missing.join(", ")
                    )));
                }
                tx.commit().await.map_err(e)?;
                self.outbox_appended();
                Ok(n)
            }

            async fn purge_finished(
                &self,
                before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                Ok(sqlx::query::<$db>(
                    "DELETE FROM webhook_outbox WHERE state IN ('delivered', 'skipped') AND created_at < $1",
                )
                .bind(before)
                .execute(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))?
                .rows_affected())
            }

            async fn outbox_depth(&self) -> $crate::store::StoreResult<(i64, i64)> {
                sqlx::query_as::<$db, (i64, i64)>(
                    "SELECT COALESCE(SUM(CASE WHEN state = 'pending' THEN 1 ELSE 0 END), 0), \
                     COALESCE(SUM(CASE WHEN state = 'dead' THEN 1 ELSE 0 END), 0) FROM webhook_outbox",
                )
                .fetch_one(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }
        }
    };
}

pub(crate) use impl_outbox_store;

#[async_trait]
impl OutboxStore for super::CachedStore {
    fn outbox_signal(&self) -> std::sync::Arc<tokio::sync::Notify> {
        self.inner().outbox_signal()
    }

    async fn claim_sessions(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> StoreResult<Option<Box<dyn OutboxClaim>>> {
        self.inner().claim_sessions(now, limit).await
    }

    async fn queued_events(&self, session_id: Uuid, limit: i64) -> StoreResult<Vec<QueuedEvent>> {
        self.inner().queued_events(session_id, limit).await
    }

    async fn queued_events_of(
        &self,
        session_ids: &[Uuid],
        limit: i64,
    ) -> StoreResult<Vec<QueuedEvent>> {
        self.inner().queued_events_of(session_ids, limit).await
    }

    async fn mark_published(&self, ids: &[Uuid]) -> StoreResult<()> {
        self.inner().mark_published(ids).await
    }

    async fn record_outcomes(&self, outcomes: &[(Uuid, Uuid, Outcome)]) -> StoreResult<()> {
        self.inner().record_outcomes(outcomes).await
    }

    async fn dead_letters(
        &self,
        session_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<(i64, Vec<DeadLetter>)> {
        self.inner().dead_letters(session_id, limit, offset).await
    }

    async fn replay_dead_letters(
        &self,
        session_id: Uuid,
        ids: Option<&[Uuid]>,
    ) -> StoreResult<u64> {
        self.inner().replay_dead_letters(session_id, ids).await
    }

    async fn purge_finished(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        self.inner().purge_finished(before).await
    }

    async fn outbox_depth(&self) -> StoreResult<(i64, i64)> {
        self.inner().outbox_depth().await
    }
}
