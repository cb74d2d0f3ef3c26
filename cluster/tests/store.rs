//! redb log store and state machine: openraft's storage suite, and a write / drop / reopen / read
//! round trip.

use std::collections::BTreeMap;
use std::sync::Arc;

use onwapp_cluster::log_store::{LogStore, open_db};
use onwapp_cluster::shard_map::{Command, ShardMap};
use onwapp_cluster::state_machine::{MapView, StateMachineStore};
use onwapp_cluster::{ClusterNode, NodeId, TypeConfig};
use openraft::storage::{
    RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftSnapshotBuilder, RaftStateMachine,
};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, Membership, StorageError, Vote};
use tokio::sync::watch;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir().unwrap();
        let db = open_db(dir.path()).unwrap();
        let (tx, _rx) = watch::channel(MapView {
            applied_index: 0,
            map: Arc::new(ShardMap::new()),
        });
        let sm = StateMachineStore::open(db.clone(), tx)?;
        Ok((dir, LogStore::new(db), sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).unwrap();
}

fn log_id(term: u64, index: u64) -> LogId<NodeId> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, cmd: Command) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(cmd),
    }
}

fn open(dir: &std::path::Path) -> (LogStore, StateMachineStore, watch::Receiver<MapView>) {
    let db = open_db(dir).unwrap();
    let (tx, rx) = watch::channel(MapView {
        applied_index: 0,
        map: Arc::new(ShardMap::new()),
    });
    let sm = StateMachineStore::open(db.clone(), tx).unwrap();
    (LogStore::new(db), sm, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let members = Membership::new(
        vec![std::collections::BTreeSet::from([1])],
        BTreeMap::from([(
            1,
            ClusterNode {
                api_addr: "http://a".into(),
            },
        )]),
    );
    let add = Command::AddNode {
        node: 1,
        api_addr: "http://a".into(),
        at_ms: 5,
        ttl_ms: 10,
    };
    let assign = Command::Assign {
        shard: 3,
        to: 1,
        expect_epoch: None,
        owner_expired_at_ms: None,
    };
    {
        let (mut log, mut sm, rx) = open(dir.path());
        log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        let mut entries = vec![Entry {
            log_id: log_id(1, 1),
            payload: EntryPayload::Membership(members.clone()),
        }];
        entries.push(entry(1, 2, add.clone()));
        entries.push(entry(2, 3, assign.clone()));
        entries.push(entry(2, 4, Command::Unassign { shard: 9 }));
        log.blocking_append(entries.clone()).await.unwrap();
        log.save_committed(Some(log_id(2, 3))).await.unwrap();
        sm.apply(entries[..3].to_vec()).await.unwrap();
        assert_eq!(rx.borrow().applied_index, 3);
        // A snapshot at 3, then the log is purged up to 2 and the uncommitted 4 truncated.
        sm.get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        log.purge(log_id(1, 2)).await.unwrap();
        log.truncate(log_id(2, 4)).await.unwrap();
    }
    // Reopen: everything comes back from the file.
    let (mut log, mut sm, rx) = open(dir.path());
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(2, 1))
    );
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(2, 3)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 2)));
    assert_eq!(state.last_log_id, Some(log_id(2, 3)));
    let entries = log.try_get_log_entries(0..10).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].log_id, log_id(2, 3));
    assert!(matches!(&entries[0].payload, EntryPayload::Normal(c) if *c == assign));
    // The state machine restarts from its snapshot.
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(2, 3)));
    assert_eq!(membership.membership(), &members);
    let view = rx.borrow().clone();
    assert_eq!(view.applied_index, 3);
    assert_eq!(view.map.shard(3).unwrap().owner, Some(1));
    assert!(view.map.nodes.contains_key(&1));
    let snap = sm.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(2, 3)));
}
