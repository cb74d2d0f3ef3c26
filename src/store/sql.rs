//! The SQL shared by the Postgres and SQLite stores.
//!
//! Both databases accept the same statements (`$n` parameters, `ON CONFLICT`, `RETURNING`), and
//! sqlx encodes our column types for each, so one macro implements every storage trait for a
//! store type that has a `pool` field of the given database.

use chrono::{DateTime, SubsecRound, Utc};

/// Now, at the precision both databases keep (microseconds).
pub(crate) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub(crate) const SESSION_COLS: &str =
    "id, name, api_key, status, device_jid, phone, push_name, created_at, updated_at";
pub(crate) const SETTINGS_COLS: &str = "id, session_id, always_online, auto_reject_calls, sync_history, \
     last_seen, online, profile_photo, status, read_receipts, group_add, call_add, \
     default_disappearing_timer, privacy_synced_at, privacy_pending, created_at, updated_at";
pub(crate) const WEBHOOK_COLS: &str =
    "id, session_id, url, events, enabled, secret, created_at, updated_at";

macro_rules! impl_sql_store {
    ($store:ty, $db:ty) => {
        use async_trait::async_trait;
        use sqlx::{AssertSqlSafe, types::Json};
        use uuid::Uuid;

        use $crate::store::{
            DeviceUpdate, HealthCheck, NewSession, SessionRecord, SessionStore, SettingsPatch, SettingsRecord,
            SettingsStore, StoreError, StoreResult, WebhookConfig, WebhookRecord, WebhookStore,
            sql::{SESSION_COLS, SETTINGS_COLS, WEBHOOK_COLS, now},
        };

        fn q(e: sqlx::Error) -> StoreError {
            StoreError::from_sqlx(e, || "conflict".to_string())
        }

        impl $store {
            /// The id of session `name` (its fenced writes check the shard by id).
            async fn session_id_of(&self, name: &str) -> StoreResult<Option<Uuid>> {
                sqlx::query_scalar::<$db, Uuid>("SELECT id FROM sessions WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(q)
            }
        }

        #[async_trait]
        impl SessionStore for $store {
            async fn create_session(&self, new: NewSession) -> StoreResult<SessionRecord> {
                let at = now();
                let mut tx = self.pool.begin().await.map_err(q)?;
                let rec = sqlx::query_as::<$db, SessionRecord>(AssertSqlSafe(format!(
                    "INSERT INTO sessions (id, name, api_key, api_key_hash, status, created_at, updated_at, shard) \
                     VALUES ($1, $2, $3, $4, 'disconnected', $5, $5, $6) RETURNING {SESSION_COLS}"
                )))
                .bind(Uuid::now_v7())
                .bind(&new.name)
                .bind(&new.api_key)
                .bind(&new.api_key_hash)
                .bind(at)
                .bind($crate::store::fence::shard_of(&new.name) as i32)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| {
                    let name_taken = e.to_string().contains("name");
                    StoreError::from_sqlx(e, || {
                        if name_taken {
                            format!("session {} already exists", new.name)
                        } else {
                            "apiKey already in use by another session".to_string()
                        }
                    })
                })?;
                sqlx::query::<$db>(
                    "INSERT INTO session_settings (id, session_id, created_at, updated_at) VALUES ($1, $2, $3, $3)",
                )
                .bind(Uuid::now_v7())
                .bind(rec.id)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)?;
                Ok(rec)
            }

            async fn get_session(&self, name: &str) -> StoreResult<Option<SessionRecord>> {
                sqlx::query_as::<$db, SessionRecord>(AssertSqlSafe(format!(
                    "SELECT {SESSION_COLS} FROM sessions WHERE name = $1"
                )))
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(q)
            }

            async fn list_sessions(&self) -> StoreResult<Vec<SessionRecord>> {
                sqlx::query_as::<$db, SessionRecord>(AssertSqlSafe(format!(
                    "SELECT {SESSION_COLS} FROM sessions ORDER BY created_at, name"
                )))
                .fetch_all(&self.pool)
                .await
                .map_err(q)
            }

            async fn delete_session(&self, name: &str) -> StoreResult<bool> {
                let Some(id) = self.session_id_of(name).await? else {
                    return Ok(false);
                };
                // Fenced: a node that lost the session's shard deletes nothing.
                let mut tx = self.begin_write(id).await?;
                let r = sqlx::query::<$db>("DELETE FROM sessions WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?;
                tx.commit().await.map_err(q)?;
                Ok(r.rows_affected() > 0)
            }

            async fn update_session_device(&self, name: &str, d: &DeviceUpdate) -> StoreResult<bool> {
                let Some(id) = self.session_id_of(name).await? else {
                    return Ok(false);
                };
                let mut tx = self.begin_write(id).await?;
                let r = sqlx::query::<$db>(
                    "UPDATE sessions SET status = $2, device_jid = $3, phone = $4, push_name = $5, \
                     updated_at = $6 WHERE name = $1",
                )
                .bind(name)
                .bind(&d.status)
                .bind(d.device_jid.as_deref())
                .bind(d.phone.as_deref())
                .bind(d.push_name.as_deref())
                .bind(now())
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)?;
                Ok(r.rows_affected() > 0)
            }

            async fn session_by_key_hash(&self, hash: &str) -> StoreResult<Option<SessionRecord>> {
                sqlx::query_as::<$db, SessionRecord>(AssertSqlSafe(format!(
                    "SELECT {SESSION_COLS} FROM sessions WHERE api_key_hash = $1"
                )))
                .bind(hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(q)
            }
        }

        #[async_trait]
        impl SettingsStore for $store {
            async fn get_settings(&self, session_id: Uuid) -> StoreResult<Option<SettingsRecord>> {
                sqlx::query_as::<$db, SettingsRecord>(AssertSqlSafe(format!(
                    "SELECT {SETTINGS_COLS} FROM session_settings WHERE session_id = $1"
                )))
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(q)
            }

            async fn update_settings(
                &self,
                session_id: Uuid,
                p: &SettingsPatch,
            ) -> StoreResult<Option<SettingsRecord>> {
                if p.is_empty() {
                    return self.get_settings(session_id).await;
                }
                let mut tx = self.begin_write(session_id).await?;
                let rec = sqlx::query_as::<$db, SettingsRecord>(AssertSqlSafe(format!(
                    "UPDATE session_settings SET \
                       always_online = COALESCE($2, always_online), \
                       auto_reject_calls = COALESCE($3, auto_reject_calls), \
                       sync_history = COALESCE($4, sync_history), \
                       last_seen = COALESCE($5, last_seen), \
                       online = COALESCE($6, online), \
                       profile_photo = COALESCE($7, profile_photo), \
                       status = COALESCE($8, status), \
                       read_receipts = COALESCE($9, read_receipts), \
                       group_add = COALESCE($10, group_add), \
                       call_add = COALESCE($11, call_add), \
                       default_disappearing_timer = COALESCE($12, default_disappearing_timer), \
                       privacy_pending = COALESCE($14, privacy_pending), \
                       privacy_synced_at = COALESCE($15, privacy_synced_at), \
                       updated_at = $13 \
                     WHERE session_id = $1 RETURNING {SETTINGS_COLS}"
                )))
                .bind(session_id)
                .bind(p.always_online)
                .bind(p.auto_reject_calls)
                .bind(p.sync_history)
                .bind(p.last_seen.as_deref())
                .bind(p.online.as_deref())
                .bind(p.profile_photo.as_deref())
                .bind(p.status.as_deref())
                .bind(p.read_receipts.as_deref())
                .bind(p.group_add.as_deref())
                .bind(p.call_add.as_deref())
                .bind(p.default_disappearing_timer.as_deref())
                .bind(now())
                .bind(p.privacy_pending.as_deref())
                .bind(p.privacy_synced_at)
                .fetch_optional(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)?;
                Ok(rec)
            }
        }

        #[async_trait]
        impl WebhookStore for $store {
            async fn get_webhook(&self, session_id: Uuid) -> StoreResult<Option<WebhookRecord>> {
                sqlx::query_as::<$db, WebhookRecord>(AssertSqlSafe(format!(
                    "SELECT {WEBHOOK_COLS} FROM webhooks WHERE session_id = $1"
                )))
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(q)
            }

            async fn get_webhooks(&self, session_ids: &[Uuid]) -> StoreResult<Vec<WebhookRecord>> {
                let mut found = Vec::with_capacity(session_ids.len());
                for chunk in session_ids.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
                        "SELECT {WEBHOOK_COLS} FROM webhooks WHERE session_id IN ("
                    ));
                    let mut list = qb.separated(", ");
                    for id in chunk {
                        list.push_bind(*id);
                    }
                    qb.push(")");
                    found.extend(qb.build_query_as::<WebhookRecord>().fetch_all(&self.pool).await.map_err(q)?);
                }
                Ok(found)
            }

            async fn upsert_webhook(
                &self,
                session_id: Uuid,
                c: &WebhookConfig,
            ) -> StoreResult<WebhookRecord> {
                let mut tx = self.begin_write(session_id).await?;
                let rec = sqlx::query_as::<$db, WebhookRecord>(AssertSqlSafe(format!(
                    "INSERT INTO webhooks (id, session_id, url, events, enabled, secret, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7) \
                     ON CONFLICT (session_id) DO UPDATE SET url = excluded.url, events = excluded.events, \
                       enabled = excluded.enabled, secret = excluded.secret, updated_at = excluded.updated_at \
                     RETURNING {WEBHOOK_COLS}"
                )))
                .bind(Uuid::now_v7())
                .bind(session_id)
                .bind(&c.url)
                .bind(Json(&c.events))
                .bind(c.enabled)
                .bind(c.secret.as_deref())
                .bind(now())
                .fetch_one(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)?;
                Ok(rec)
            }

            async fn replace_webhook(
                &self,
                session_id: Uuid,
                c: &WebhookConfig,
            ) -> StoreResult<Option<WebhookRecord>> {
                let mut tx = self.begin_write(session_id).await?;
                let rec = sqlx::query_as::<$db, WebhookRecord>(AssertSqlSafe(format!(
                    "UPDATE webhooks SET url = $2, events = $3, enabled = $4, secret = $5, updated_at = $6 \
                     WHERE session_id = $1 RETURNING {WEBHOOK_COLS}"
                )))
                .bind(session_id)
                .bind(&c.url)
                .bind(Json(&c.events))
                .bind(c.enabled)
                .bind(c.secret.as_deref())
                .bind(now())
                .fetch_optional(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)?;
                Ok(rec)
            }

            async fn delete_webhook(&self, session_id: Uuid) -> StoreResult<bool> {
                let mut tx = self.begin_write(session_id).await?;
                let r = sqlx::query::<$db>("DELETE FROM webhooks WHERE session_id = $1")
                    .bind(session_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(q)?;
                tx.commit().await.map_err(q)?;
                Ok(r.rows_affected() > 0)
            }
        }

        #[async_trait]
        impl HealthCheck for $store {
            async fn ping(&self) -> StoreResult<()> {
                sqlx::query::<$db>("SELECT 1")
                    .execute(&self.pool)
                    .await
                    .map(|_| ())
                    .map_err(q)
            }

            fn kind(&self) -> &'static str {
                Self::KIND
            }
        }
    };
}

pub(crate) use impl_sql_store;
