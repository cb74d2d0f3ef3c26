//! Postgres: the store of clustered deployments.

use std::{str::FromStr, time::Duration};

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::ConnectOptions;

pub struct PgStore {
    pub(crate) pool: PgPool,
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
        Ok(PgStore { pool })
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
super::events::impl_event_store!(PgStore, sqlx::Postgres, "BEGIN");
super::media::impl_media_store!(PgStore, sqlx::Postgres);
