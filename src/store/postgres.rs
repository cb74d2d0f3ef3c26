//! Postgres: the store of clustered deployments.

use std::{str::FromStr, time::Duration};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::ConnectOptions;

pub struct PgStore {
    pub(crate) pool: PgPool,
    /// Wakes a delivery worker after outbox rows are committed (`OutboxStore::outbox_signal`).
    pub(crate) outbox_signal: std::sync::Arc<tokio::sync::Notify>,
    /// The writer of outbox-only events (`store::group_commit`).
    pub(crate) appender: super::group_commit::Appender,
    /// The shard epochs this node holds (`store::fence`).
    pub(crate) fences: std::sync::Arc<super::Fences>,
}

impl PgStore {
    pub const KIND: &'static str = "postgres";

    pub async fn connect(opts: &ConnectOptions) -> anyhow::Result<Self> {
        let conn = PgConnectOptions::from_str(&opts.url)?.application_name("onwapp");
        let pool = PgPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(conn)
            .await?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        let fences = super::Fences::new();
        let outbox_signal: std::sync::Arc<tokio::sync::Notify> = Default::default();
        let appender = Self::spawn_appender(pool.clone(), fences.clone(), outbox_signal.clone());
        let store = PgStore {
            pool,
            appender,
            outbox_signal,
            fences,
        };
        store.backfill_shards().await?;
        Ok(store)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

super::sql::impl_sql_store!(PgStore, sqlx::Postgres);
super::device::impl_device_store!(PgStore, sqlx::Postgres);
super::chat::impl_message_store!(PgStore, sqlx::Postgres);
super::chat_state::impl_chat_state_store!(PgStore, sqlx::Postgres);
super::poll::impl_poll_store!(PgStore, sqlx::Postgres);
super::outgoing::impl_outgoing_store!(PgStore, sqlx::Postgres);
super::contacts::impl_contact_store!(PgStore, sqlx::Postgres);
super::events::impl_event_store!(PgStore, sqlx::Postgres);
super::media::impl_media_store!(PgStore, sqlx::Postgres);
super::outbox::impl_outbox_store!(PgStore, sqlx::Postgres, "seq");
super::fence::impl_fence_store!(PgStore, sqlx::Postgres, "BEGIN", "FOR SHARE OF f");
super::group_commit::impl_group_commit!(PgStore, sqlx::Postgres, "BEGIN", "FOR SHARE OF f");

/// Advisory locks of webhook claims are `(WEBHOOK_LOCK_CLASS, hashtext(session id))`: a class of
/// their own, apart from the one-key locks (sqlx's migrations use one).
const WEBHOOK_LOCK_CLASS: i32 = 0x0EB0;

/// Sessions' queues, held through session-level advisory locks on one pooled connection. An
/// advisory lock writes nothing (no transaction id, no WAL, no commit to wait for), can be let go
/// session by session as each is done, and goes with the connection if the node dies.
struct PgClaim {
    session_ids: Vec<uuid::Uuid>,
    /// `None` once released; a claim dropped unreleased closes the connection, which frees
    /// its locks (a pooled connection must never go back to the pool holding one).
    conn: Option<tokio::sync::Mutex<sqlx::pool::PoolConnection<sqlx::Postgres>>>,
}

impl Drop for PgClaim {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.into_inner().close_on_drop();
        }
    }
}

#[async_trait::async_trait]
impl super::outbox::OutboxClaim for PgClaim {
    fn session_ids(&self) -> &[uuid::Uuid] {
        &self.session_ids
    }

    async fn release_session(&self, session_id: uuid::Uuid) -> super::StoreResult<()> {
        let Some(conn) = &self.conn else {
            return Ok(());
        };
        let mut conn = conn.lock().await;
        sqlx::query("SELECT pg_advisory_unlock($1, hashtext($2::text))")
            .bind(WEBHOOK_LOCK_CLASS)
            .bind(session_id)
            .execute(&mut **conn)
            .await
            .map_err(|e| super::StoreError::from_sqlx(e, String::new))?;
        Ok(())
    }

    async fn release(mut self: Box<Self>) -> super::StoreResult<()> {
        let Some(conn) = self.conn.take() else {
            return Ok(());
        };
        let mut conn = conn.into_inner();
        match sqlx::query("SELECT pg_advisory_unlock_all()")
            .execute(&mut *conn)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                conn.close_on_drop();
                Err(super::StoreError::from_sqlx(e, String::new))
            }
        }
    }
}

impl PgStore {
    /// Several sessions' queues in one statement: each session's first `limit` pending events
    /// through the queue index (a long backlog is not read to take its head).
    async fn queued_events_many(
        &self,
        session_ids: &[uuid::Uuid],
        limit: i64,
    ) -> super::StoreResult<Vec<super::outbox::QueuedEvent>> {
        sqlx::query_as::<_, super::outbox::QueuedEvent>(
            "SELECT o.id, o.session_id, o.event, o.payload, o.attempts, o.created_at, o.next_attempt_at, \
             o.published \
             FROM unnest($1::uuid[]) WITH ORDINALITY AS s(id, n) \
             CROSS JOIN LATERAL (SELECT * FROM webhook_outbox w \
               WHERE w.session_id = s.id AND w.state = 'pending' ORDER BY w.seq LIMIT $2) o \
             ORDER BY s.n, o.seq",
        )
        .bind(session_ids)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| super::StoreError::from_sqlx(e, String::new))
    }

    async fn claim_outbox_sessions(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> super::StoreResult<Option<Box<dyn super::outbox::OutboxClaim>>> {
        let e = |e| super::StoreError::from_sqlx(e, String::new);
        let mut conn = self.pool.acquire().await.map_err(e)?;
        // Only sessions of the shards this node holds (all of them when fencing is off).
        let every = !self.fences.enforced() || self.fences.holds_all();
        let shards: Vec<i32> = if every {
            Vec::new()
        } else {
            self.fences
                .held_shards()
                .into_iter()
                .map(|s| s as i32)
                .collect()
        };
        // The due sessions are materialised first, so the lock function runs only on them, and
        // only until `limit` were locked (a lock taken on a row later dropped would leak).
        let rows: Result<Vec<(uuid::Uuid,)>, sqlx::Error> = sqlx::query_as(
            "WITH due AS MATERIALIZED ( \
               SELECT c.session_id FROM webhook_cursors c JOIN sessions s ON s.id = c.session_id \
               WHERE ($2 OR s.shard = ANY($3)) \
                 AND (SELECT o.next_attempt_at FROM webhook_outbox o \
                      WHERE o.session_id = c.session_id AND o.state = 'pending' \
                      ORDER BY o.seq LIMIT 1) <= $1) \
             SELECT session_id FROM due \
             WHERE pg_try_advisory_lock($5, hashtext(session_id::text)) LIMIT $4",
        )
        .bind(now)
        .bind(every)
        .bind(&shards)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(WEBHOOK_LOCK_CLASS)
        .fetch_all(&mut *conn)
        .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(err) => {
                // Whatever it locked before failing goes with the connection.
                conn.close_on_drop();
                return Err(e(err));
            }
        };
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(Box::new(PgClaim {
            session_ids: rows.into_iter().map(|(id,)| id).collect(),
            conn: Some(tokio::sync::Mutex::new(conn)),
        })))
    }
}
