//! Media rows: one per media message, sent or received, with WhatsApp's download info and the
//! state of our copy (`downloaded`, `storage_key`, attempts and the last error).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::StoreResult;

/// Downloads stop being retried after this many attempts (OnWapp's rule).
pub const MAX_DOWNLOAD_ATTEMPTS: i64 = 3;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct MediaRow {
    pub id: Uuid,
    pub session_id: Uuid,
    pub msg_id: String,
    pub chat_jid: Option<String>,
    pub from_me: bool,
    /// `image`, `video`, `audio`, `document` or `sticker`.
    pub media_type: String,
    pub mime_type: Option<String>,
    pub file_size: Option<i64>,
    pub file_name: Option<String>,
    pub caption: Option<String>,
    pub push_name: Option<String>,
    pub wa_direct_path: Option<String>,
    pub wa_media_key: Option<Vec<u8>>,
    pub wa_file_sha256: Option<Vec<u8>>,
    pub wa_file_enc_sha256: Option<Vec<u8>>,
    pub wa_media_key_timestamp: Option<i64>,
    pub width: Option<i64>,
    pub height: Option<i64>,
    /// Seconds.
    pub duration: Option<i64>,
    pub storage_key: Option<String>,
    pub stored_at: Option<DateTime<Utc>>,
    pub thumbnail_key: Option<String>,
    pub downloaded: bool,
    pub download_error: Option<String>,
    pub download_attempts: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(crate) const MEDIA_COLS: &str = "id, session_id, msg_id, chat_jid, from_me, media_type, \
     mime_type, file_size, file_name, caption, push_name, wa_direct_path, wa_media_key, \
     wa_file_sha256, wa_file_enc_sha256, wa_media_key_timestamp, width, height, duration, \
     storage_key, stored_at, thumbnail_key, downloaded, download_error, download_attempts, \
     created_at, updated_at";

#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Stores the row unless the message has one already; `true` when it was inserted.
    async fn insert_media(&self, row: &MediaRow) -> StoreResult<bool>;
    /// Newest first.
    async fn list_media(
        &self,
        session_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<MediaRow>>;
    /// Not downloaded, with a direct path, fewer than [`MAX_DOWNLOAD_ATTEMPTS`] attempts;
    /// oldest first.
    async fn pending_media(&self, session_id: Uuid, limit: i64) -> StoreResult<Vec<MediaRow>>;
    async fn get_media(&self, session_id: Uuid, msg_id: &str) -> StoreResult<Option<MediaRow>>;
    /// One more attempt that stored the file under `storage_key`.
    async fn media_stored(&self, id: Uuid, storage_key: &str, file_size: i64) -> StoreResult<()>;
    /// One more attempt that failed with `error`.
    async fn media_failed(&self, id: Uuid, error: &str) -> StoreResult<()>;
}

macro_rules! impl_media_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// A fenced write of the media row `id`'s session; `None` when the row is gone.
            async fn begin_media_write(
                &self,
                id: uuid::Uuid,
            ) -> $crate::store::StoreResult<Option<sqlx::Transaction<'static, $db>>> {
                let session: Option<uuid::Uuid> =
                    sqlx::query_scalar::<$db, uuid::Uuid>("SELECT session_id FROM media WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))?;
                match session {
                    Some(session_id) => self.begin_write(session_id).await.map(Some),
                    None => Ok(None),
                }
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::media::MediaStore for $store {
            async fn insert_media(
                &self,
                m: &$crate::store::media::MediaRow,
            ) -> $crate::store::StoreResult<bool> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let mut tx = self.begin_write(m.session_id).await?;
                let inserted = sqlx::query::<$db>(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO media ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, \
                     $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27) \
                     ON CONFLICT (session_id, msg_id) DO NOTHING",
                    $crate::store::media::MEDIA_COLS
                )))
                .bind(m.id)
                .bind(m.session_id)
                .bind(&m.msg_id)
                .bind(m.chat_jid.as_deref())
                .bind(m.from_me)
                .bind(&m.media_type)
                .bind(m.mime_type.as_deref())
                .bind(m.file_size)
                .bind(m.file_name.as_deref())
                .bind(m.caption.as_deref())
                .bind(m.push_name.as_deref())
                .bind(m.wa_direct_path.as_deref())
                .bind(m.wa_media_key.as_deref())
                .bind(m.wa_file_sha256.as_deref())
                .bind(m.wa_file_enc_sha256.as_deref())
                .bind(m.wa_media_key_timestamp)
                .bind(m.width)
                .bind(m.height)
                .bind(m.duration)
                .bind(m.storage_key.as_deref())
                .bind(m.stored_at)
                .bind(m.thumbnail_key.as_deref())
                .bind(m.downloaded)
                .bind(m.download_error.as_deref())
                .bind(m.download_attempts)
                .bind(m.created_at)
                .bind(m.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(q)?
                .rows_affected();
                tx.commit().await.map_err(q)?;
                Ok(inserted > 0)
            }

            async fn list_media(
                &self,
                session_id: uuid::Uuid,
                limit: i64,
                offset: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::media::MediaRow>> {
                sqlx::query_as::<$db, $crate::store::media::MediaRow>(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM media WHERE session_id = $1 \
                     ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
                    $crate::store::media::MEDIA_COLS
                )))
                .bind(session_id)
                .bind(limit)
                .bind(offset)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            async fn pending_media(
                &self,
                session_id: uuid::Uuid,
                limit: i64,
            ) -> $crate::store::StoreResult<Vec<$crate::store::media::MediaRow>> {
                sqlx::query_as::<$db, $crate::store::media::MediaRow>(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM media WHERE session_id = $1 AND NOT downloaded \
                     AND wa_direct_path IS NOT NULL AND wa_direct_path <> '' \
                     AND download_attempts < $2 ORDER BY created_at, id LIMIT $3",
                    $crate::store::media::MEDIA_COLS
                )))
                .bind(session_id)
                .bind($crate::store::media::MAX_DOWNLOAD_ATTEMPTS)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            async fn get_media(
                &self,
                session_id: uuid::Uuid,
                msg_id: &str,
            ) -> $crate::store::StoreResult<Option<$crate::store::media::MediaRow>> {
                sqlx::query_as::<$db, $crate::store::media::MediaRow>(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM media WHERE session_id = $1 AND msg_id = $2",
                    $crate::store::media::MEDIA_COLS
                )))
                .bind(session_id)
                .bind(msg_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| $crate::store::StoreError::from_sqlx(e, String::new))
            }

            async fn media_stored(
                &self,
                id: uuid::Uuid,
                storage_key: &str,
                file_size: i64,
            ) -> $crate::store::StoreResult<()> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let Some(mut tx) = self.begin_media_write(id).await? else {
                    return Ok(());
                };
                let at = $crate::store::sql::now();
                sqlx::query::<$db>(
                    "UPDATE media SET downloaded = TRUE, storage_key = $2, file_size = $3, \
                     stored_at = $4, download_error = NULL, \
                     download_attempts = download_attempts + 1, updated_at = $4 WHERE id = $1",
                )
                .bind(id)
                .bind(storage_key)
                .bind(file_size)
                .bind(at)
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)
            }

            async fn media_failed(
                &self,
                id: uuid::Uuid,
                error: &str,
            ) -> $crate::store::StoreResult<()> {
                let q = |e| $crate::store::StoreError::from_sqlx(e, String::new);
                let Some(mut tx) = self.begin_media_write(id).await? else {
                    return Ok(());
                };
                sqlx::query::<$db>(
                    "UPDATE media SET download_error = $2, \
                     download_attempts = download_attempts + 1, updated_at = $3 WHERE id = $1",
                )
                .bind(id)
                .bind(error)
                .bind($crate::store::sql::now())
                .execute(&mut *tx)
                .await
                .map_err(q)?;
                tx.commit().await.map_err(q)
            }
        }
    };
}

pub(crate) use impl_media_store;

#[async_trait]
impl MediaStore for super::CachedStore {
    async fn insert_media(&self, row: &MediaRow) -> StoreResult<bool> {
        self.inner().insert_media(row).await
    }

    async fn list_media(
        &self,
        session_id: Uuid,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<MediaRow>> {
        self.inner().list_media(session_id, limit, offset).await
    }

    async fn pending_media(&self, session_id: Uuid, limit: i64) -> StoreResult<Vec<MediaRow>> {
        self.inner().pending_media(session_id, limit).await
    }

    async fn get_media(&self, session_id: Uuid, msg_id: &str) -> StoreResult<Option<MediaRow>> {
        self.inner().get_media(session_id, msg_id).await
    }

    async fn media_stored(&self, id: Uuid, storage_key: &str, file_size: i64) -> StoreResult<()> {
        self.inner().media_stored(id, storage_key, file_size).await
    }

    async fn media_failed(&self, id: Uuid, error: &str) -> StoreResult<()> {
        self.inner().media_failed(id, error).await
    }
}
