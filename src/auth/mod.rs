//! Authentication: the global key reaches everything, a session key only its own session.
//!
//! Keys are compared in constant time. Session keys are found by their SHA-256 hash, so the
//! database lookup itself never compares secrets.

mod attempts;
mod keys;
mod misses;

use std::sync::Arc;

use axum::http::HeaderValue;
use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::{
    error::ApiError,
    store::{Store, StoreError},
};

pub use attempts::FailedAttempts;
pub use keys::{
    GLOBAL_KEY_FILE, ensure_global_key, generate_key, hash_key, kept_global_key, keys_file_hint,
};
pub use misses::RecentMisses;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Global,
    Session { id: Uuid, name: String },
}

impl Principal {
    /// May this caller act on the session called `name`?
    pub fn may_access(&self, name: &str) -> bool {
        match self {
            Principal::Global => true,
            Principal::Session { name: own, .. } => own == name,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error("invalid authorization token")]
    Invalid,
    #[error("access denied to this session")]
    Forbidden,
    #[error("global API key required")]
    GlobalRequired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::Missing => ApiError::Unauthorized("missing Authorization header"),
            AuthError::Invalid => ApiError::Unauthorized("invalid authorization token"),
            AuthError::Forbidden => ApiError::Forbidden("access denied to this session"),
            AuthError::GlobalRequired => ApiError::Forbidden("global API key required"),
            AuthError::Store(e) => e.into(),
        }
    }
}

pub struct Authenticator {
    global_key: String,
    store: Arc<dyn Store>,
    misses: RecentMisses,
}

impl Authenticator {
    pub fn new(global_key: String, store: Arc<dyn Store>) -> Self {
        Authenticator {
            global_key,
            store,
            misses: RecentMisses::default(),
        }
    }

    /// A session was just given the key with this hash: it must not be refused from memory.
    pub fn key_created(&self, hash: &str) {
        self.misses.remove(hash);
    }

    /// Resolves the `Authorization` header (a raw key; a `Bearer ` prefix is tolerated).
    pub async fn authenticate(&self, header: Option<&HeaderValue>) -> Result<Principal, AuthError> {
        let raw = header.ok_or(AuthError::Missing)?;
        let key = bare_key(raw.to_str().map_err(|_| AuthError::Invalid)?);
        if key.is_empty() {
            return Err(AuthError::Missing);
        }
        if self.is_global_key(key) {
            return Ok(Principal::Global);
        }
        let hash = hash_key(key);
        if self.misses.contains(&hash) {
            return Err(AuthError::Invalid);
        }
        let generation = self.misses.generation();
        let Some(rec) = self.store.session_by_key_hash(&hash).await? else {
            self.misses.insert(hash, generation);
            return Err(AuthError::Invalid);
        };
        if bool::from(key.as_bytes().ct_eq(rec.api_key.as_bytes())) {
            Ok(Principal::Session {
                id: rec.id,
                name: rec.name,
            })
        } else {
            Err(AuthError::Invalid)
        }
    }
}

/// The key an `Authorization` value carries: trimmed, a `Bearer ` prefix tolerated.
fn bare_key(raw: &str) -> &str {
    let key = raw.trim();
    key.strip_prefix("Bearer ").map(str::trim).unwrap_or(key)
}

impl Authenticator {
    /// Whether the `Authorization` header carries the global key (constant time, no lookup).
    pub fn is_global(&self, header: Option<&HeaderValue>) -> bool {
        header
            .and_then(|h| h.to_str().ok())
            .is_some_and(|raw| self.is_global_key(bare_key(raw)))
    }

    fn is_global_key(&self, key: &str) -> bool {
        bool::from(key.as_bytes().ct_eq(self.global_key.as_bytes()))
    }

    /// The global key (to refuse it as a session key).
    pub fn global_key(&self) -> &str {
        &self.global_key
    }
}
