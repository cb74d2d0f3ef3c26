//! A read-through cache of session rows in front of any [`Store`].
//!
//! Every request to a session route reads its session row, and requests with a session key look
//! the key up too; both are served from memory after the first read. All writes of a session go
//! through its owner, so invalidating on our own writes keeps the cache exact while this node
//! owns the session's shard. Ownership moves, so every entry is kept with the epoch this node
//! held the session's shard at when it was read (`store::fence`), and is used only while the
//! node still holds the shard at that epoch: a shard lost, or lost and acquired again (the
//! session may have been deleted, recreated or given a new key meanwhile on another node),
//! reads the database again. Nothing is cached for a shard this node does not hold (its
//! requests go to the owner). A key is remembered with the name it authenticated, and is
//! believed only while that session's record still has that key.

use std::{collections::HashMap, sync::Arc, sync::RwLock};

use async_trait::async_trait;
use uuid::Uuid;

use super::device::{Backend, DeviceStoreFactory};
use super::{
    DeviceUpdate, HealthCheck, NewSession, SessionRecord, SessionStore, SettingsPatch,
    SettingsRecord, SettingsStore, Store, StoreResult, WebhookConfig, WebhookRecord, WebhookStore,
};

pub struct CachedStore {
    inner: Arc<dyn Store>,
    /// Name → (the shard's epoch this node held when it was read, the record).
    by_name: RwLock<HashMap<String, (u64, SessionRecord)>>,
    /// API-key hash → session name, for keys that authenticated successfully.
    by_key: RwLock<HashMap<String, String>>,
}

impl CachedStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        CachedStore {
            inner,
            by_name: RwLock::new(HashMap::new()),
            by_key: RwLock::new(HashMap::new()),
        }
    }

    /// The epoch under which an entry of `name` may be cached and used: the one this node
    /// holds the session's shard at (0 while fences are not enforced: a store without a
    /// cluster, tools and tests). `None`: not held, nothing to cache.
    fn epoch(&self, name: &str) -> Option<u64> {
        let fences = self.inner.fences();
        if !fences.enforced() {
            return Some(0);
        }
        fences.held(super::fence::shard_of(name))
    }

    fn remember(&self, rec: &SessionRecord) {
        let Some(epoch) = self.epoch(&rec.name) else {
            return;
        };
        if let Ok(mut m) = self.by_name.write() {
            m.insert(rec.name.clone(), (epoch, rec.clone()));
        }
    }

    /// Drops everything cached about the session `name`.
    pub fn forget(&self, name: &str) {
        if let Ok(mut m) = self.by_name.write() {
            m.remove(name);
        }
        if let Ok(mut m) = self.by_key.write() {
            m.retain(|_, n| n != name);
        }
    }

    fn cached(&self, name: &str) -> Option<SessionRecord> {
        let epoch = self.epoch(name)?;
        let m = self.by_name.read().ok()?;
        let (at, rec) = m.get(name)?;
        (*at == epoch).then(|| rec.clone())
    }

    /// The store behind the cache, for traits that have nothing to cache.
    pub(super) fn inner(&self) -> &Arc<dyn Store> {
        &self.inner
    }
}

#[async_trait]
impl SessionStore for CachedStore {
    async fn create_session(&self, new: NewSession) -> StoreResult<SessionRecord> {
        let hash = new.api_key_hash.clone();
        let rec = self.inner.create_session(new).await?;
        self.remember(&rec);
        if let Ok(mut m) = self.by_key.write() {
            m.insert(hash, rec.name.clone());
        }
        Ok(rec)
    }

    async fn get_session(&self, name: &str) -> StoreResult<Option<SessionRecord>> {
        if let Some(r) = self.cached(name) {
            return Ok(Some(r));
        }
        let rec = self.inner.get_session(name).await?;
        if let Some(r) = &rec {
            self.remember(r);
        }
        Ok(rec)
    }

    async fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
        self.inner.list_sessions().await
    }

    async fn delete_session(&self, name: &str) -> StoreResult<bool> {
        let deleted = self.inner.delete_session(name).await;
        self.forget(name);
        deleted
    }

    async fn update_session_device(&self, name: &str, device: &DeviceUpdate) -> StoreResult<bool> {
        let updated = self.inner.update_session_device(name, device).await;
        if let Ok(mut m) = self.by_name.write() {
            m.remove(name);
        }
        updated
    }

    async fn session_by_key_hash(&self, hash: &str) -> StoreResult<Option<SessionRecord>> {
        let name = self.by_key.read().ok().and_then(|m| m.get(hash).cloned());
        if let Some(name) = name {
            // Believed only while the session still has this key (it may have been deleted and
            // created again with another).
            if let Some(r) = self.get_session(&name).await?
                && crate::auth::hash_key(&r.api_key) == hash
            {
                return Ok(Some(r));
            }
            if let Ok(mut m) = self.by_key.write() {
                m.remove(hash);
            }
        }
        let rec = self.inner.session_by_key_hash(hash).await?;
        if let Some(r) = &rec
            && self.epoch(&r.name).is_some()
        {
            self.remember(r);
            if let Ok(mut m) = self.by_key.write() {
                m.insert(hash.to_string(), r.name.clone());
            }
        }
        Ok(rec)
    }
}

#[async_trait]
impl SettingsStore for CachedStore {
    async fn get_settings(&self, session_id: Uuid) -> StoreResult<Option<SettingsRecord>> {
        self.inner.get_settings(session_id).await
    }

    async fn update_settings(
        &self,
        session_id: Uuid,
        patch: &SettingsPatch,
    ) -> StoreResult<Option<SettingsRecord>> {
        self.inner.update_settings(session_id, patch).await
    }
}

#[async_trait]
impl WebhookStore for CachedStore {
    async fn get_webhook(&self, session_id: Uuid) -> StoreResult<Option<WebhookRecord>> {
        self.inner.get_webhook(session_id).await
    }

    async fn get_webhooks(&self, session_ids: &[Uuid]) -> StoreResult<Vec<WebhookRecord>> {
        self.inner.get_webhooks(session_ids).await
    }

    async fn upsert_webhook(
        &self,
        session_id: Uuid,
        cfg: &WebhookConfig,
    ) -> StoreResult<WebhookRecord> {
        self.inner.upsert_webhook(session_id, cfg).await
    }

    async fn replace_webhook(
        &self,
        session_id: Uuid,
        cfg: &WebhookConfig,
    ) -> StoreResult<Option<WebhookRecord>> {
        self.inner.replace_webhook(session_id, cfg).await
    }

    async fn delete_webhook(&self, session_id: Uuid) -> StoreResult<bool> {
        self.inner.delete_webhook(session_id).await
    }
}

#[async_trait]
impl HealthCheck for CachedStore {
    async fn ping(&self) -> StoreResult<()> {
        self.inner.ping().await
    }

    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
}

#[async_trait]
impl DeviceStoreFactory for CachedStore {
    fn device_backend(&self, session_id: Uuid) -> Arc<dyn Backend> {
        self.inner.device_backend(session_id)
    }

    async fn delete_device_store(&self, session_id: Uuid) -> StoreResult<()> {
        self.inner.delete_device_store(session_id).await
    }
}

#[async_trait]
impl super::chat::MessageStore for CachedStore {
    async fn record_message(
        &self,
        session_id: Uuid,
        message: &super::chat::MessageRow,
        event: &str,
        payload: &serde_json::Value,
    ) -> StoreResult<bool> {
        self.inner
            .record_message(session_id, message, event, payload)
            .await
    }

    async fn list_messages(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<super::chat::MessageRow>> {
        self.inner
            .list_messages(session_id, chat_jid, limit, offset)
            .await
    }

    async fn list_chats(
        &self,
        session_id: Uuid,
        limit: i64,
        offset: i64,
        unread: bool,
    ) -> StoreResult<Vec<super::chat::ChatRow>> {
        self.inner
            .list_chats(session_id, limit, offset, unread)
            .await
    }

    async fn get_chat(
        &self,
        session_id: Uuid,
        jid: &str,
    ) -> StoreResult<Option<super::chat::ChatRow>> {
        self.inner.get_chat(session_id, jid).await
    }

    async fn get_message(
        &self,
        session_id: Uuid,
        chat_jid: &str,
        msg_id: &str,
    ) -> StoreResult<Option<super::chat::MessageRow>> {
        self.inner.get_message(session_id, chat_jid, msg_id).await
    }

    async fn pending_events(
        &self,
        session_id: Uuid,
        limit: i64,
    ) -> StoreResult<Vec<super::chat::OutboxRow>> {
        self.inner.pending_events(session_id, limit).await
    }
}
