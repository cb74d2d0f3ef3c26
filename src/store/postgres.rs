//! Postgres: the store of clustered deployments.

use std::{str::FromStr, time::Duration};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::ConnectOptions;

pub struct PgStore {
    pub(crate) pool: PgPool,
    /// Wakes a delivery worker after outbox rows are committed (`OutboxStore::outbox_signal`).
    pub(crate) outbox_signal: std::sync::Arc<tokio::sync::Notify>,
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
        let store = PgStore {
            pool,
            outbox_signal: Default::default(),
            fences: super::Fences::new(),
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
super::contacts::impl_contact_store!(PgStore, sqlx::Postgres);
super::events::impl_event_store!(PgStore, sqlx::Postgres);
super::media::impl_media_store!(PgStore, sqlx::Postgres);
super::outbox::impl_outbox_store!(PgStore, sqlx::Postgres, "seq");
super::fence::impl_fence_store!(PgStore, sqlx::Postgres, "BEGIN", "FOR SHARE OF f");

/// A session's queue, locked through its `webhook_cursors` row until the transaction ends.
struct PgClaim {
    session_id: uuid::Uuid,
    tx: sqlx::Transaction<'static, sqlx::Postgres>,
}

#[async_trait::async_trait]
impl super::outbox::OutboxClaim for PgClaim {
    fn session_id(&self) -> uuid::Uuid {
        self.session_id
    }

    async fn release(self: Box<Self>) -> super::StoreResult<()> {
        self.tx
            .commit()
            .await
            .map_err(|e| super::StoreError::from_sqlx(e, String::new))
    }
}

impl PgStore {
    async fn claim_outbox_session(
        &self,
        now: chrono::DateTime<chrono::Utc>,
    ) -> super::StoreResult<Option<Box<dyn super::outbox::OutboxClaim>>> {
        let e = |e| super::StoreError::from_sqlx(e, String::new);
        let mut tx = self.pool.begin().await.map_err(e)?;
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
        let row: Option<(uuid::Uuid,)> = sqlx::query_as(
            "SELECT c.session_id FROM webhook_cursors c JOIN sessions s ON s.id = c.session_id \
             WHERE ($2 OR s.shard = ANY($3)) \
               AND (SELECT o.next_attempt_at FROM webhook_outbox o \
                    WHERE o.session_id = c.session_id AND o.state = 'pending' \
                    ORDER BY o.seq LIMIT 1) <= $1 \
             LIMIT 1 FOR UPDATE OF c SKIP LOCKED",
        )
        .bind(now)
        .bind(every)
        .bind(&shards)
        .fetch_optional(&mut *tx)
        .await
        .map_err(e)?;
        match row {
            Some((session_id,)) => Ok(Some(Box::new(PgClaim { session_id, tx }))),
            None => {
                tx.rollback().await.map_err(e)?;
                Ok(None)
            }
        }
    }
}
