//! Durable raft log, vote and committed index on redb (`<data_dir>/raft/raft.redb`).
//!
//! One redb file holds the log (`logs`: index -> JSON entry) and small values (`meta`: vote,
//! committed, last purged log id, the current state-machine snapshot). Writes commit with
//! redb's default durability (fsync) on a blocking thread.

// openraft's traits impose `StorageError` (large); helpers return it too.
#![allow(clippy::result_large_err)]

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ClusterError;
use crate::types::{NodeId, TypeConfig};

pub(crate) const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_PURGED: &str = "last_purged";
pub(crate) const KEY_SNAPSHOT: &str = "snapshot";

/// Opens (or creates) the raft database under `dir` (`dir/raft.redb`) with its tables.
pub fn open_db(dir: &Path) -> Result<Arc<Database>, ClusterError> {
    std::fs::create_dir_all(dir)
        .map_err(|e| ClusterError::Storage(format!("{}: {e}", dir.display())))?;
    let path = dir.join("raft.redb");
    // A previous node of this process may still be closing the file (its last handle drops on
    // another thread): retry "already open" for a moment.
    let mut tries = 0;
    let db = loop {
        match Database::create(&path) {
            Ok(db) => break db,
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if tries < 100 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(ClusterError::Storage(format!("{}: {e}", path.display()))),
        }
    };
    let tx = db
        .begin_write()
        .map_err(|e| ClusterError::Storage(e.to_string()))?;
    {
        tx.open_table(LOGS)
            .map_err(|e| ClusterError::Storage(e.to_string()))?;
        tx.open_table(META)
            .map_err(|e| ClusterError::Storage(e.to_string()))?;
    }
    tx.commit()
        .map_err(|e| ClusterError::Storage(e.to_string()))?;
    Ok(Arc::new(db))
}

type StErr = StorageError<NodeId>;

fn read_err(e: impl std::error::Error + 'static) -> StErr {
    StorageIOError::read(&e).into()
}

fn write_err(e: impl std::error::Error + 'static) -> StErr {
    StorageIOError::write(&e).into()
}

/// Reads one JSON value of the `meta` table.
pub(crate) fn meta_get<T: DeserializeOwned>(db: &Database, key: &str) -> Result<Option<T>, StErr> {
    let tx = db.begin_read().map_err(read_err)?;
    let table = tx.open_table(META).map_err(read_err)?;
    match table.get(key).map_err(read_err)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(read_err)?)),
        None => Ok(None),
    }
}

/// Writes one JSON value of the `meta` table, durably, on a blocking thread.
pub(crate) async fn meta_put<T: Serialize>(
    db: &Arc<Database>,
    key: &'static str,
    value: &T,
) -> Result<(), StErr> {
    let bytes = serde_json::to_vec(value).map_err(write_err)?;
    let db = db.clone();
    blocking(move || {
        let tx = db.begin_write().map_err(write_err)?;
        {
            let mut table = tx.open_table(META).map_err(write_err)?;
            table.insert(key, bytes.as_slice()).map_err(write_err)?;
        }
        tx.commit().map_err(write_err)
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StErr> + Send + 'static,
) -> Result<T, StErr> {
    tokio::task::spawn_blocking(f).await.map_err(write_err)?
}

/// The raft log store (and, cloned, its reader).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Database>,
}

impl LogStore {
    pub fn new(db: Arc<Database>) -> Self {
        LogStore { db }
    }

    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>, StErr> {
        let tx = self.db.begin_read().map_err(read_err)?;
        let table = tx.open_table(LOGS).map_err(read_err)?;
        match table.last().map_err(read_err)? {
            Some((_, v)) => Ok(Some(serde_json::from_slice(v.value()).map_err(read_err)?)),
            None => Ok(None),
        }
    }

    /// Removes the log entries whose index is in `range`, and optionally writes a meta value, in
    /// one transaction.
    async fn remove_range(
        &self,
        from: Bound<u64>,
        to: Bound<u64>,
        meta: Option<(&'static str, Vec<u8>)>,
    ) -> Result<(), StErr> {
        let db = self.db.clone();
        blocking(move || {
            let tx = db.begin_write().map_err(write_err)?;
            {
                let mut table = tx.open_table(LOGS).map_err(write_err)?;
                let keys: Vec<u64> = table
                    .range::<u64>((from, to))
                    .map_err(write_err)?
                    .map(|r| r.map(|(k, _)| k.value()))
                    .collect::<Result<_, _>>()
                    .map_err(write_err)?;
                for k in keys {
                    table.remove(k).map_err(write_err)?;
                }
                if let Some((key, value)) = meta {
                    let mut m = tx.open_table(META).map_err(write_err)?;
                    m.insert(key, value.as_slice()).map_err(write_err)?;
                }
            }
            tx.commit().map_err(write_err)
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StErr> {
        let tx = self.db.begin_read().map_err(read_err)?;
        let table = tx.open_table(LOGS).map_err(read_err)?;
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        let mut out = Vec::new();
        for item in table.range::<u64>(bounds).map_err(read_err)? {
            let (_, v) = item.map_err(read_err)?;
            out.push(serde_json::from_slice(v.value()).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StErr> {
        let last_purged_log_id: Option<LogId<NodeId>> = meta_get(&self.db, KEY_PURGED)?;
        let last_log_id = match self.last_entry()? {
            Some(e) => Some(e.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StErr> {
        meta_put(&self.db, KEY_VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StErr> {
        meta_get(&self.db, KEY_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StErr> {
        meta_put(&self.db, KEY_COMMITTED, &committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StErr> {
        Ok(meta_get::<Option<LogId<NodeId>>>(&self.db, KEY_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut rows = Vec::new();
        for e in entries {
            rows.push((e.log_id.index, serde_json::to_vec(&e).map_err(write_err)?));
        }
        let db = self.db.clone();
        let res = blocking(move || {
            let tx = db.begin_write().map_err(write_err)?;
            {
                let mut table = tx.open_table(LOGS).map_err(write_err)?;
                for (index, bytes) in &rows {
                    table.insert(*index, bytes.as_slice()).map_err(write_err)?;
                }
            }
            tx.commit().map_err(write_err)
        })
        .await;
        match &res {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        res
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StErr> {
        self.remove_range(Bound::Included(log_id.index), Bound::Unbounded, None)
            .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StErr> {
        let meta = serde_json::to_vec(&log_id).map_err(write_err)?;
        self.remove_range(
            Bound::Unbounded,
            Bound::Included(log_id.index),
            Some((KEY_PURGED, meta)),
        )
        .await
    }
}
