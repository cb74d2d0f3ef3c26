//! SQLite: the embedded store of a single node, a file under the data directory.

use std::{
    collections::HashSet,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::ConnectOptions;

pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// Sessions whose webhook queue a worker owns (one process uses the file).
    outbox_in_flight: Arc<Mutex<HashSet<uuid::Uuid>>>,
    /// Wakes a delivery worker after outbox rows are committed (`OutboxStore::outbox_signal`).
    pub(crate) outbox_signal: Arc<tokio::sync::Notify>,
    /// The writer of outbox-only events (`store::group_commit`).
    pub(crate) appender: super::group_commit::Appender,
    /// The shard epochs this node holds (`store::fence`).
    pub(crate) fences: Arc<super::Fences>,
}

impl SqliteStore {
    pub const KIND: &'static str = "sqlite";

    pub async fn connect(opts: &ConnectOptions) -> anyhow::Result<Self> {
        let conn = SqliteConnectOptions::from_str(&opts.url)?
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        if let Some(dir) = conn.get_filename().parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)?;
        }
        let pool = SqlitePoolOptions::new()
            .max_connections(opts.max_connections.min(8))
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(conn)
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        let fences = super::Fences::new();
        let outbox_signal: std::sync::Arc<tokio::sync::Notify> = Default::default();
        let appender = Self::spawn_appender(pool.clone(), fences.clone(), outbox_signal.clone());
        let store = SqliteStore {
            pool,
            outbox_in_flight: Arc::default(),
            appender,
            outbox_signal,
            fences,
        };
        store.backfill_shards().await?;
        Ok(store)
    }
}

super::sql::impl_sql_store!(SqliteStore, sqlx::Sqlite);
super::device::impl_device_store!(SqliteStore, sqlx::Sqlite);
super::chat::impl_message_store!(SqliteStore, sqlx::Sqlite);
super::chat_state::impl_chat_state_store!(SqliteStore, sqlx::Sqlite);
super::poll::impl_poll_store!(SqliteStore, sqlx::Sqlite);
super::outgoing::impl_outgoing_store!(SqliteStore, sqlx::Sqlite);
super::contacts::impl_contact_store!(SqliteStore, sqlx::Sqlite);
super::events::impl_event_store!(SqliteStore, sqlx::Sqlite);
super::media::impl_media_store!(SqliteStore, sqlx::Sqlite);
super::outbox::impl_outbox_store!(SqliteStore, sqlx::Sqlite, "rowid");
super::fence::impl_fence_store!(SqliteStore, sqlx::Sqlite, "BEGIN IMMEDIATE", "");
super::group_commit::impl_group_commit!(SqliteStore, sqlx::Sqlite, "BEGIN IMMEDIATE", "");

/// Sessions' queues, owned while their ids are in the in-flight set.
struct SqliteClaim {
    session_ids: Vec<uuid::Uuid>,
    in_flight: Arc<Mutex<HashSet<uuid::Uuid>>>,
}

impl Drop for SqliteClaim {
    fn drop(&mut self) {
        if let Ok(mut set) = self.in_flight.lock() {
            for id in &self.session_ids {
                set.remove(id);
            }
        }
    }
}

#[async_trait::async_trait]
impl super::outbox::OutboxClaim for SqliteClaim {
    fn session_ids(&self) -> &[uuid::Uuid] {
        &self.session_ids
    }

    async fn release_session(&self, session_id: uuid::Uuid) -> super::StoreResult<()> {
        if let Ok(mut set) = self.in_flight.lock() {
            set.remove(&session_id);
        }
        Ok(())
    }

    async fn release(self: Box<Self>) -> super::StoreResult<()> {
        Ok(())
    }
}

impl SqliteStore {
    /// Several sessions' queues: one indexed read each (a local file, no round trips to save).
    async fn queued_events_many(
        &self,
        session_ids: &[uuid::Uuid],
        limit: i64,
    ) -> super::StoreResult<Vec<super::outbox::QueuedEvent>> {
        super::outbox::queues_one_by_one(self, session_ids, limit).await
    }

    async fn claim_outbox_sessions(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> super::StoreResult<Option<Box<dyn super::outbox::OutboxClaim>>> {
        let due: Vec<(uuid::Uuid, Option<i32>)> = sqlx::query_as(
            "SELECT s.id, s.shard FROM sessions s \
             WHERE (SELECT o.next_attempt_at FROM webhook_outbox o \
                    WHERE o.session_id = s.id AND o.state = 'pending' \
                    ORDER BY o.rowid LIMIT 1) <= $1",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| super::StoreError::from_sqlx(e, String::new))?;
        let Ok(mut set) = self.outbox_in_flight.lock() else {
            return Ok(None);
        };
        // Only sessions of the shards this node holds (all of them when fencing is off).
        let every = !self.fences.enforced() || self.fences.holds_all();
        let owned = |shard: Option<i32>| {
            every
                || shard
                    .and_then(|s| u32::try_from(s).ok())
                    .is_some_and(|s| self.fences.held(s).is_some())
        };
        let session_ids: Vec<uuid::Uuid> = due
            .into_iter()
            .filter(|(id, shard)| owned(*shard) && !set.contains(id))
            .map(|(id, _)| id)
            .take(limit)
            .collect();
        if session_ids.is_empty() {
            return Ok(None);
        }
        set.extend(session_ids.iter().copied());
        Ok(Some(Box::new(SqliteClaim {
            session_ids,
            in_flight: self.outbox_in_flight.clone(),
        })))
    }
}
