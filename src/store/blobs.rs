//! Media files in the shared Postgres database: the blob store of a cluster without an object
//! store. A file is cut into parts of [`PART_BYTES`], one row each (`media_blobs`), written in
//! one transaction, so a reader sees all of it or nothing.
//!
//! Budget: a file costs its size plus about 40 bytes per MiB part; reading one holds it in
//! memory once (at most `MEDIA_MAX_BYTES`, 100 MiB by default). Postgres serves this well for
//! a gateway's usual media (images, voice notes, documents of a few MiB). A deployment that
//! keeps gigabytes of video sets `MINIO_ENDPOINT` instead (docs/deploy.md).

use async_trait::async_trait;
use sqlx::{PgPool, Row, postgres::PgPoolOptions};

use crate::media::blobs::{BlobError, BlobStore};

/// Bytes per stored part.
pub const PART_BYTES: usize = 1024 * 1024;

/// The `media_blobs` table on its own small pool (media writes never wait for a store
/// connection, nor the store for them).
pub struct PgBlobs {
    pool: PgPool,
}

impl PgBlobs {
    /// A pool of up to 4 connections to `url`, opened lazily (the store has applied the
    /// migrations already).
    pub fn connect_lazy(url: &str) -> Result<Self, BlobError> {
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_lazy(url)
            .map_err(db)?;
        Ok(PgBlobs { pool })
    }
}

fn db(e: sqlx::Error) -> BlobError {
    BlobError::Remote(format!("media in the database: {e}"))
}

#[async_trait]
impl BlobStore for PgBlobs {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("DELETE FROM media_blobs WHERE key = $1")
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // An empty file is one empty part: `get` tells it from a missing one.
        let parts: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[]]
        } else {
            bytes.chunks(PART_BYTES).collect()
        };
        for (i, part) in parts.into_iter().enumerate() {
            sqlx::query("INSERT INTO media_blobs (key, part, data) VALUES ($1, $2, $3)")
                .bind(key)
                .bind(i as i32)
                .bind(part)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let rows = sqlx::query("SELECT data FROM media_blobs WHERE key = $1 ORDER BY part")
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        if rows.is_empty() {
            return Ok(None);
        }
        let mut out = Vec::new();
        for row in rows {
            let part: Vec<u8> = row.try_get("data").map_err(db)?;
            out.extend_from_slice(&part);
        }
        Ok(Some(out))
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        sqlx::query("DELETE FROM media_blobs WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, BlobError> {
        let done = sqlx::query(
            "DELETE FROM media_blobs WHERE starts_with(key, $1) AND part = 0 \
             RETURNING key",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        sqlx::query("DELETE FROM media_blobs WHERE starts_with(key, $1)")
            .bind(prefix)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.len() as u64)
    }

    fn describe(&self) -> String {
        "the shared Postgres database (media_blobs)".into()
    }
}
