//! The raft state machine: the shard map plus the last applied log id and membership, snapshots
//! (JSON of the whole map; it is small) kept in the redb file so a restart starts from them.

// openraft's traits impose `StorageError` (large); helpers return it too.
#![allow(clippy::result_large_err)]

use std::io::Cursor;
use std::sync::Arc;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot, SnapshotMeta};
use openraft::{
    Entry, EntryPayload, LogId, OptionalSend, StorageError, StorageIOError, StoredMembership,
};
use redb::Database;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::log_store::{KEY_SNAPSHOT, meta_get, meta_put};
use crate::shard_map::{CommandResponse, ShardMap};
use crate::types::{ClusterNode, NodeId, TypeConfig};

type StErr = StorageError<NodeId>;

/// The applied map as published to readers after every applied batch of log entries.
#[derive(Debug, Clone)]
pub struct MapView {
    /// Index of the last applied log entry (0 before anything was applied).
    pub applied_index: u64,
    pub map: Arc<ShardMap>,
}

/// What a snapshot holds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SmData {
    pub last_applied: Option<LogId<NodeId>>,
    pub last_membership: StoredMembership<NodeId, ClusterNode>,
    pub map: ShardMap,
}

/// A snapshot as stored in the `meta` table.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, ClusterNode>,
    data: Vec<u8>,
}

/// The state machine handed to openraft.
pub struct StateMachineStore {
    data: SmData,
    db: Arc<Database>,
    tx: watch::Sender<MapView>,
}

impl StateMachineStore {
    /// Loads the last snapshot from `db` (if any) and publishes the map on `tx`.
    pub fn open(db: Arc<Database>, tx: watch::Sender<MapView>) -> Result<Self, StErr> {
        let data = match meta_get::<StoredSnapshot>(&db, KEY_SNAPSHOT)? {
            Some(s) => serde_json::from_slice(&s.data)
                .map_err(|e| StorageIOError::read_snapshot(None, &e))?,
            None => SmData::default(),
        };
        let sm = StateMachineStore { data, db, tx };
        sm.publish();
        Ok(sm)
    }

    fn publish(&self) {
        let view = MapView {
            applied_index: self.data.last_applied.map(|l| l.index).unwrap_or(0),
            map: Arc::new(self.data.map.clone()),
        };
        self.tx.send_replace(view);
    }
}

/// Builds snapshots from a copy of the state taken when openraft asks for a builder.
pub struct SnapshotBuilder {
    data: SmData,
    db: Arc<Database>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StErr> {
        let bytes =
            serde_json::to_vec(&self.data).map_err(|e| StorageIOError::write_state_machine(&e))?;
        let snapshot_id = match self.data.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id, l.index, crate::types::now_ms()),
            None => format!("none-{}", crate::types::now_ms()),
        };
        let meta = SnapshotMeta {
            last_log_id: self.data.last_applied,
            last_membership: self.data.last_membership.clone(),
            snapshot_id,
        };
        meta_put(
            &self.db,
            KEY_SNAPSHOT,
            &StoredSnapshot {
                meta: meta.clone(),
                data: bytes.clone(),
            },
        )
        .await?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, ClusterNode>), StErr> {
        Ok((self.data.last_applied, self.data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StErr>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        for entry in entries {
            self.data.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => out.push(CommandResponse::Ok),
                EntryPayload::Normal(cmd) => out.push(self.data.map.apply(&cmd)),
                EntryPayload::Membership(m) => {
                    self.data.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    out.push(CommandResponse::Ok);
                }
            }
        }
        self.publish();
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            data: self.data.clone(),
            db: self.db.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StErr> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, ClusterNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StErr> {
        let bytes = snapshot.into_inner();
        let data: SmData = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        meta_put(
            &self.db,
            KEY_SNAPSHOT,
            &StoredSnapshot {
                meta: meta.clone(),
                data: bytes,
            },
        )
        .await?;
        self.data = data;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StErr> {
        Ok(
            meta_get::<StoredSnapshot>(&self.db, KEY_SNAPSHOT)?.map(|s| Snapshot {
                meta: s.meta,
                snapshot: Box::new(Cursor::new(s.data)),
            }),
        )
    }
}
