//! What the device store's SQL shares: errors in wacore's error type, conversions between
//! wacore's values and our columns, and batch helpers.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    sync::Arc,
};

use serde::{Serialize, de::DeserializeOwned};
use wacore::store::{
    Device,
    error::StoreError as WaError,
    traits::{MsgSecretEntry, merge_msg_secret_expiry, merge_msg_secret_message_ts},
};

pub(crate) type WaResult<T> = Result<T, WaError>;

/// Rows per multi-row statement: far below both databases' limits on bound parameters
/// (SQLite 32766, Postgres 65535) at 8 parameters a row.
pub(crate) const CHUNK: usize = 500;

/// A database error in wacore's terms: unreachable database or failed operation.
pub(crate) fn db(e: sqlx::Error) -> WaError {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed => WaError::Connection(Box::new(e)),
        _ => WaError::Database(Box::new(e)),
    }
}

/// A store error in wacore's terms; a refused (fenced) write is a failed operation whose source
/// is our [`StoreError::Fenced`](crate::store::StoreError::Fenced).
pub(crate) fn fenced(e: crate::store::StoreError) -> WaError {
    match e {
        crate::store::StoreError::Unavailable(_) => WaError::Connection(Box::new(e)),
        _ => WaError::Database(Box::new(e)),
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> WaResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| WaError::Serialization(Box::new(e)))
}

pub(crate) fn from_json<T: DeserializeOwned>(value: serde_json::Value) -> WaResult<T> {
    serde_json::from_value(value).map_err(|e| WaError::Serialization(Box::new(e)))
}

/// A stored blob that must have exactly `N` bytes.
pub(crate) fn fixed<const N: usize>(what: &str, bytes: Vec<u8>) -> WaResult<[u8; N]> {
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| WaError::Validation(format!("{what}: expected {N} bytes, found {len}")))
}

/// A stored integer that must fit the trait's narrower type.
pub(crate) fn narrow<T: TryFrom<i64>>(what: &str, v: i64) -> WaResult<T> {
    T::try_from(v).map_err(|_| WaError::Validation(format!("{what}: {v} is out of range")))
}

/// A number of rows, as the trait counts them.
pub(crate) fn count(rows: u64) -> u32 {
    u32::try_from(rows).unwrap_or(u32::MAX)
}

/// A value of the trait that must fit a BIGINT column.
pub(crate) fn widen(what: &str, v: u64) -> WaResult<i64> {
    i64::try_from(v).map_err(|_| WaError::Validation(format!("{what}: {v} does not fit")))
}

/// The last write of each key, in the order of those last writes: a batch applied in one
/// statement must not name a row twice (Postgres refuses), and the last write wins as if the
/// batch had been applied one item after another.
pub(crate) fn last_wins<'a, T, K: Eq + Hash>(
    items: &'a [T],
    key: impl Fn(&'a T) -> K,
) -> Vec<&'a T> {
    let mut seen = HashSet::with_capacity(items.len());
    let mut out: Vec<&T> = items.iter().rev().filter(|i| seen.insert(key(i))).collect();
    out.reverse();
    out
}

/// One entry per key: later entries of a batch merge into earlier ones exactly as they would
/// merge into a stored row (the secret is replaced; deadline and parent time merge).
pub(crate) fn merge_msg_secrets(entries: Vec<MsgSecretEntry>) -> Vec<MsgSecretEntry> {
    type Key = (Arc<str>, Arc<str>, Arc<str>);
    let mut at: HashMap<Key, usize> = HashMap::new();
    let mut out: Vec<MsgSecretEntry> = Vec::with_capacity(entries.len());
    for e in entries {
        let key = (e.chat.clone(), e.sender.clone(), e.msg_id.clone());
        match at.get(&key).and_then(|&i| out.get_mut(i)) {
            Some(row) => {
                row.secret = e.secret;
                row.expires_at = merge_msg_secret_expiry(row.expires_at, e.expires_at);
                row.message_ts = merge_msg_secret_message_ts(row.message_ts, e.message_ts);
            }
            None => {
                at.insert(key, out.len());
                out.push(e);
            }
        }
    }
    out
}

/// The device as whatsapp-rust's own SQLite store gives it back: the fields serde skips
/// (device properties, client profile) take the values of a fresh start.
pub(crate) fn restored_device(mut device: Device) -> Device {
    device.device_props = Arc::new(wacore::store::device::DEVICE_PROPS.clone());
    device.client_profile = wacore::client_profile::ClientProfile::web();
    device
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_wins_keeps_the_last_write_of_each_key_in_order() {
        let items = [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)];
        let kept: Vec<_> = last_wins(&items, |i| i.0).into_iter().copied().collect();
        assert_eq!(kept, [("a", 3), ("c", 4), ("b", 5)]);
    }

    #[test]
    fn secrets_of_one_batch_merge_like_stored_rows() {
        let e = |id: &str, secret: u8, expires_at: i64, message_ts: i64| MsgSecretEntry {
            chat: Arc::from("c"),
            sender: Arc::from("s"),
            msg_id: Arc::from(id),
            secret: [secret; 32],
            expires_at,
            message_ts,
        };
        let out = merge_msg_secrets(vec![e("1", 1, 50, 7), e("2", 2, 0, 0), e("1", 3, 40, 0)]);
        let got: Vec<_> = out
            .iter()
            .map(|r| {
                (
                    r.msg_id.to_string(),
                    r.secret[0],
                    r.expires_at,
                    r.message_ts,
                )
            })
            .collect();
        assert_eq!(got, [("1".into(), 3, 50, 7), ("2".into(), 2, 0, 0)]);
    }

    #[test]
    fn blobs_of_the_wrong_size_are_refused() {
        assert_eq!(fixed::<2>("k", vec![1, 2]).ok(), Some([1, 2]));
        assert!(matches!(
            fixed::<2>("k", vec![1]),
            Err(WaError::Validation(_))
        ));
        assert!(matches!(
            narrow::<u32>("id", -1),
            Err(WaError::Validation(_))
        ));
        assert!(matches!(widen("v", u64::MAX), Err(WaError::Validation(_))));
    }
}
