//! Durable state behind one trait per concern, implemented for Postgres and SQLite.
//!
//! Both implementations share their SQL (see [`sql`]); the migrations differ only in column types.
//! [`connect`] picks the implementation from the URL, once, at start-up. [`device`] holds
//! whatsapp-rust's storage backend, on the same pool.

pub mod blobs;
mod cache;
pub mod chat;
pub mod chat_state;
pub mod contacts;
pub mod device;
pub mod events;
pub mod fence;
mod group_commit;
pub mod media;
mod models;
pub mod outbox;
pub mod outgoing;
pub mod poll;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

pub use cache::CachedStore;
pub use device::{DeviceBackend, DeviceStoreFactory};
pub use fence::{FenceStore, Fences};
pub use models::*;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness rule was broken; the message is fit for the API client.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    NotFound(String),
    /// The database cannot be reached (connection refused, pool timed out, ...).
    #[error("{0}")]
    Unavailable(String),
    /// This node does not hold the epoch of the session's shard: another node owns it (or
    /// none does), so nothing of the write was kept.
    #[error("{0}")]
    Fenced(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    pub(crate) fn from_sqlx(e: sqlx::Error, conflict: impl FnOnce() -> String) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(conflict())
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_) => StoreError::Unavailable(e.to_string()),
            _ => StoreError::Other(e.into()),
        }
    }
}

/// Sessions: the name, its key and what the engine last stored about the device.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Creates the session and its default settings in one transaction.
    async fn create_session(&self, new: NewSession) -> StoreResult<SessionRecord>;
    async fn get_session(&self, name: &str) -> StoreResult<Option<SessionRecord>>;
    async fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>>;
    /// Deletes the session and (by cascade) everything that belongs to it. `false` if unknown.
    async fn delete_session(&self, name: &str) -> StoreResult<bool>;
    /// The session whose key hashes to `api_key_hash` (hex SHA-256).
    async fn session_by_key_hash(&self, api_key_hash: &str) -> StoreResult<Option<SessionRecord>>;
    /// Records what the engine knows of the session's device; `false` if the session is gone.
    async fn update_session_device(&self, name: &str, device: &DeviceUpdate) -> StoreResult<bool>;
}

/// Per-session settings; a row exists from the moment the session is created.
#[async_trait]
pub trait SettingsStore: Send + Sync {
    async fn get_settings(&self, session_id: Uuid) -> StoreResult<Option<SettingsRecord>>;
    /// Applies the fields that are `Some`; returns the row after the change.
    async fn update_settings(
        &self,
        session_id: Uuid,
        patch: &SettingsPatch,
    ) -> StoreResult<Option<SettingsRecord>>;
}

/// One webhook configuration per session.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    async fn get_webhook(&self, session_id: Uuid) -> StoreResult<Option<WebhookRecord>>;
    /// The webhooks of several sessions (of those that have one), in one read.
    async fn get_webhooks(&self, session_ids: &[Uuid]) -> StoreResult<Vec<WebhookRecord>> {
        let mut found = Vec::new();
        for id in session_ids {
            found.extend(self.get_webhook(*id).await?);
        }
        Ok(found)
    }
    /// Creates or replaces the session's webhook.
    async fn upsert_webhook(
        &self,
        session_id: Uuid,
        cfg: &WebhookConfig,
    ) -> StoreResult<WebhookRecord>;
    /// Replaces the session's webhook; `None` when it has none.
    async fn replace_webhook(
        &self,
        session_id: Uuid,
        cfg: &WebhookConfig,
    ) -> StoreResult<Option<WebhookRecord>>;
    async fn delete_webhook(&self, session_id: Uuid) -> StoreResult<bool>;
}

/// Liveness of the database itself.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
    fn kind(&self) -> &'static str;
}

/// Everything the API needs from storage.
pub trait Store:
    SessionStore
    + SettingsStore
    + WebhookStore
    + HealthCheck
    + DeviceStoreFactory
    + chat::MessageStore
    + chat_state::ChatStateStore
    + poll::PollStore
    + outgoing::OutgoingStore
    + contacts::ContactStore
    + events::EventStore
    + media::MediaStore
    + outbox::OutboxStore
    + fence::FenceStore
{
}
impl<T> Store for T where
    T: SessionStore
        + SettingsStore
        + WebhookStore
        + HealthCheck
        + DeviceStoreFactory
        + chat::MessageStore
        + chat_state::ChatStateStore
        + poll::PollStore
        + outgoing::OutgoingStore
        + contacts::ContactStore
        + events::EventStore
        + media::MediaStore
        + outbox::OutboxStore
        + fence::FenceStore
{
}

/// Connection settings shared by both databases.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub url: String,
    pub max_connections: u32,
}

/// Connects to the database named by the URL, applies its migrations and puts the session
/// cache in front.
pub async fn connect(opts: &ConnectOptions) -> anyhow::Result<Arc<dyn Store>> {
    Ok(Arc::new(CachedStore::new(connect_uncached(opts).await?)))
}

/// The database alone, without the session cache.
pub async fn connect_uncached(opts: &ConnectOptions) -> anyhow::Result<Arc<dyn Store>> {
    if opts.url.starts_with("postgres://") || opts.url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(opts).await?))
    } else {
        Ok(Arc::new(SqliteStore::connect(opts).await?))
    }
}
