//! SQLite: the embedded store of a single node, a file under the data directory.

use std::{str::FromStr, time::Duration};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::ConnectOptions;

pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
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
        Ok(SqliteStore { pool })
    }
}

super::sql::impl_sql_store!(SqliteStore, sqlx::Sqlite);
super::device::impl_device_store!(SqliteStore, sqlx::Sqlite);
super::chat::impl_message_store!(SqliteStore, sqlx::Sqlite);
super::chat_state::impl_chat_state_store!(SqliteStore, sqlx::Sqlite);
super::poll::impl_poll_store!(SqliteStore, sqlx::Sqlite);
super::contacts::impl_contact_store!(SqliteStore, sqlx::Sqlite);
super::events::impl_event_store!(SqliteStore, sqlx::Sqlite, "BEGIN IMMEDIATE");
super::media::impl_media_store!(SqliteStore, sqlx::Sqlite);
