//! Where media files live, chosen at start (`app::media_blobs`):
//! - an S3-compatible bucket when `MINIO_ENDPOINT` is set (`media::s3`), on one node or many;
//! - else, on Postgres (every cluster), the shared database (`store::blobs`): a file must
//!   outlive the node that received it, and any node may serve it after a failover;
//! - else, on the embedded SQLite default, files under `DATA_DIR/media` ([`FsBlobs`]).
//!
//! Keys are `<session id>/<sent|received>/<YYYY>/<MM>/<DD>/<message id>_<media type><ext>`:
//! always the session's id (OnWapp mixed the name and the id), the date of storing.

use std::{
    io::ErrorKind,
    path::{Path, PathBuf},
};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::kind::{MediaKind, extension};

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid media key {0:?}")]
    Key(String),
    #[error("media store I/O on {0}: {1}")]
    Io(String, std::io::Error),
    /// An object store or database answered with an error, or did not answer.
    #[error("{0}")]
    Remote(String),
}

#[async_trait]
pub trait BlobStore: Send + Sync {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError>;
    /// `None` when nothing is stored under `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError>;
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
    /// Deletes every file whose key starts with `prefix` (a session's `<id>/`); how many.
    async fn delete_prefix(&self, prefix: &str) -> Result<u64, BlobError>;
    /// A URL that serves the file without our API key (an object store's public or presigned
    /// URL); `None` when files are only served through the API.
    fn public_url(&self, _key: &str) -> Option<String> {
        None
    }
    /// Where files go, for the start-up log.
    fn describe(&self) -> String;
}

/// The key of a media file.
pub fn object_key(
    session_id: Uuid,
    from_me: bool,
    at: DateTime<Utc>,
    msg_id: &str,
    kind: MediaKind,
    mime: Option<&str>,
) -> String {
    // Message ids are hex/alphanumeric; anything else is replaced so the key stays a path.
    let id: String = msg_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{session_id}/{}/{}/{id}_{}{}",
        if from_me { "sent" } else { "received" },
        at.format("%Y/%m/%d"),
        kind.as_str(),
        mime.map(extension).unwrap_or_default(),
    )
}

/// Files under a root directory, one per key.
pub struct FsBlobs {
    root: PathBuf,
}

impl FsBlobs {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FsBlobs { root: root.into() }
    }

    fn path(&self, key: &str) -> Result<PathBuf, BlobError> {
        let ok = !key.is_empty()
            && key.split('/').all(|seg| {
                !seg.is_empty()
                    && seg != "."
                    && seg != ".."
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            });
        if !ok {
            return Err(BlobError::Key(key.to_string()));
        }
        Ok(self.root.join(Path::new(key)))
    }
}

fn io(path: &Path, e: std::io::Error) -> BlobError {
    BlobError::Io(path.display().to_string(), e)
}

#[async_trait]
impl BlobStore for FsBlobs {
    async fn put(&self, key: &str, bytes: &[u8]) -> Result<(), BlobError> {
        let path = self.path(key)?;
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(|e| io(dir, e))?;
        }
        // Written aside, then renamed: a reader never sees half a file.
        let tmp = path.with_extension(format!("part-{}", Uuid::new_v4().simple()));
        tokio::fs::write(&tmp, bytes)
            .await
            .map_err(|e| io(&tmp, e))?;
        if let Err(e) = tokio::fs::rename(&tmp, &path).await {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(io(&path, e));
        }
        Ok(())
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, BlobError> {
        let path = self.path(key)?;
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(&path, e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path, e)),
        }
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, BlobError> {
        // Prefixes are whole directories (`<session id>/`).
        let dir = self.path(prefix.trim_end_matches('/'))?;
        let mut count = 0;
        let mut stack = vec![dir.clone()];
        while let Some(d) = stack.pop() {
            let mut entries = match tokio::fs::read_dir(&d).await {
                Ok(e) => e,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&d, e)),
            };
            while let Some(entry) = entries.next_entry().await.map_err(|e| io(&d, e))? {
                let is_dir = entry.file_type().await.map_err(|e| io(&d, e))?.is_dir();
                if is_dir {
                    stack.push(entry.path());
                } else {
                    count += 1;
                }
            }
        }
        match tokio::fs::remove_dir_all(&dir).await {
            Ok(()) => Ok(count),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io(&dir, e)),
        }
    }

    fn describe(&self) -> String {
        format!("files under {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn keys_are_consistent_paths() {
        let sid = Uuid::nil();
        let at = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        assert_eq!(
            object_key(
                sid,
                false,
                at,
                "3EB0ABC",
                MediaKind::Image,
                Some("image/jpeg")
            ),
            "00000000-0000-0000-0000-000000000000/received/2026/03/04/3EB0ABC_image.jpg"
        );
        assert_eq!(
            object_key(sid, true, at, "../x", MediaKind::Document, None),
            "00000000-0000-0000-0000-000000000000/sent/2026/03/04/___x_document"
        );
    }

    #[tokio::test]
    async fn put_get_delete() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FsBlobs::new(dir.path());
        assert!(blobs.get("a/b.bin").await.unwrap().is_none());
        blobs.put("a/b.bin", b"hello").await.unwrap();
        assert_eq!(blobs.get("a/b.bin").await.unwrap().unwrap(), b"hello");
        blobs.delete("a/b.bin").await.unwrap();
        assert!(blobs.get("a/b.bin").await.unwrap().is_none());
        blobs.put("s1/x/1.bin", b"1").await.unwrap();
        blobs.put("s1/y/2.bin", b"2").await.unwrap();
        blobs.put("s2/x/3.bin", b"3").await.unwrap();
        assert_eq!(blobs.delete_prefix("s1/").await.unwrap(), 2);
        assert!(blobs.get("s1/x/1.bin").await.unwrap().is_none());
        assert_eq!(blobs.get("s2/x/3.bin").await.unwrap().unwrap(), b"3");
        assert_eq!(blobs.delete_prefix("s1/").await.unwrap(), 0);
        assert!(matches!(
            blobs.put("../escape", b"x").await,
            Err(BlobError::Key(_))
        ));
        assert!(matches!(blobs.get("/abs").await, Err(BlobError::Key(_))));
    }
}
