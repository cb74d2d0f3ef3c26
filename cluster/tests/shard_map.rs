//! State-machine unit tests: deterministic apply, epochs, handoff rules.

use onwapp_cluster::shard_map::{Command, CommandResponse, Reject, ShardMap, ShardState};
use onwapp_cluster::{SHARDS, shard_of};

fn add(map: &mut ShardMap, node: u64) {
    assert!(
        map.apply(&Command::AddNode {
            node,
            api_addr: format!("http://n{node}"),
            at_ms: 1000,
            ttl_ms: 10_000
        })
        .is_ok()
    );
}

fn assign(map: &mut ShardMap, shard: u32, to: u64) -> u64 {
    match map.apply(&Command::Assign {
        shard,
        to,
        expect_epoch: None,
        owner_expired_at_ms: None,
    }) {
        CommandResponse::Assigned { epoch, .. } => epoch,
        other => panic!("assign: {other:?}"),
    }
}

#[test]
fn new_map_has_1024_unassigned_shards() {
    let m = ShardMap::new();
    assert_eq!(m.shard_count, SHARDS);
    assert_eq!(m.shards.len(), 1024);
    assert_eq!(m.unassigned_count(), 1024);
    assert!(
        m.shards
            .iter()
            .all(|s| s.state == ShardState::Unassigned && s.owner.is_none())
    );
}

#[test]
fn shard_of_is_xxh3_mod_1024() {
    assert_eq!(
        shard_of("alice"),
        (xxhash_rust::xxh3::xxh3_64(b"alice") % 1024) as u32
    );
    assert!((0..10_000).all(|i| shard_of(&format!("session-{i}")) < SHARDS));
    // Spread: every shard is hit by some of 100k names.
    let mut hit = vec![false; 1024];
    for i in 0..100_000 {
        hit[shard_of(&format!("s{i}")) as usize] = true;
    }
    assert!(hit.iter().all(|h| *h));
}

#[test]
fn apply_is_deterministic() {
    let cmds = vec![
        Command::AddNode {
            node: 1,
            api_addr: "http://a".into(),
            at_ms: 10,
            ttl_ms: 100,
        },
        Command::AddNode {
            node: 2,
            api_addr: "http://b".into(),
            at_ms: 11,
            ttl_ms: 100,
        },
        Command::Batch {
            commands: (0..SHARDS)
                .map(|s| Command::Assign {
                    shard: s,
                    to: 1 + u64::from(s % 2),
                    expect_epoch: Some(0),
                    owner_expired_at_ms: None,
                })
                .collect(),
        },
        Command::RenewLease {
            node: 1,
            at_ms: 50,
            ttl_ms: 100,
        },
        Command::BeginDrain {
            shard: 3,
            to: 1,
            epoch: 4,
        },
        Command::Released { shard: 3, epoch: 4 },
        Command::SetDraining {
            node: 2,
            draining: true,
        },
        Command::RemoveNode { node: 2 },
        Command::Unassign { shard: 0 },
    ];
    let run = || {
        let mut m = ShardMap::new();
        let rs: Vec<CommandResponse> = cmds.iter().map(|c| m.apply(c)).collect();
        (m, rs)
    };
    let (a, ra) = run();
    let (b, rb) = run();
    assert_eq!(a, b);
    assert_eq!(ra, rb);
    // And through a JSON round trip of the commands (what the log stores).
    let json = serde_json::to_string(&cmds).unwrap();
    let back: Vec<Command> = serde_json::from_str(&json).unwrap();
    let mut c = ShardMap::new();
    for cmd in &back {
        c.apply(cmd);
    }
    assert_eq!(a, c);
    // Snapshot round trip.
    let snap: ShardMap = serde_json::from_slice(&serde_json::to_vec(&a).unwrap()).unwrap();
    assert_eq!(snap, a);
}

#[test]
fn epochs_strictly_increase_per_shard() {
    let mut m = ShardMap::new();
    add(&mut m, 1);
    add(&mut m, 2);
    let mut last = 0;
    for i in 0..50 {
        let to = 1 + (i % 2);
        let e = if i % 3 == 0 {
            // Through a planned handoff.
            let cur = m.shard(7).unwrap().clone();
            if cur.owner.is_some() && cur.owner != Some(to) {
                assert!(
                    m.apply(&Command::BeginDrain {
                        shard: 7,
                        to,
                        epoch: cur.epoch
                    })
                    .is_ok()
                );
                match m.apply(&Command::Released {
                    shard: 7,
                    epoch: cur.epoch,
                }) {
                    CommandResponse::Assigned { epoch, owner, .. } => {
                        assert_eq!(owner, to);
                        epoch
                    }
                    other => panic!("{other:?}"),
                }
            } else {
                assign(&mut m, 7, to)
            }
        } else {
            assign(&mut m, 7, to)
        };
        assert!(e > last, "epoch {e} after {last}");
        last = e;
        // Other shards' assignments also take from the global counter, never reuse.
        assign(&mut m, 8, to);
    }
}

#[test]
fn released_only_with_matching_epoch_and_while_draining() {
    let mut m = ShardMap::new();
    add(&mut m, 1);
    add(&mut m, 2);
    let e = assign(&mut m, 5, 1);
    // Not draining yet.
    assert_eq!(
        m.apply(&Command::Released { shard: 5, epoch: e }),
        CommandResponse::Rejected(Reject::NotDraining)
    );
    // Wrong epoch to begin a drain.
    assert_eq!(
        m.apply(&Command::BeginDrain {
            shard: 5,
            to: 2,
            epoch: e + 1
        }),
        CommandResponse::Rejected(Reject::EpochMismatch { current: e })
    );
    assert!(
        m.apply(&Command::BeginDrain {
            shard: 5,
            to: 2,
            epoch: e
        })
        .is_ok()
    );
    assert_eq!(m.shard(5).unwrap().state, ShardState::Draining { to: 2 });
    assert_eq!(
        m.shard(5).unwrap().owner,
        Some(1),
        "the old owner keeps it until it releases"
    );
    // A stale confirmation is refused.
    assert_eq!(
        m.apply(&Command::Released {
            shard: 5,
            epoch: e - 1
        }),
        CommandResponse::Rejected(Reject::EpochMismatch { current: e })
    );
    let r = m.apply(&Command::Released { shard: 5, epoch: e });
    let CommandResponse::Assigned {
        owner: 2,
        epoch: e2,
        ..
    } = r
    else {
        panic!("{r:?}")
    };
    assert!(e2 > e);
    assert_eq!(m.shard(5).unwrap().state, ShardState::Active);
    // Confirming twice does nothing.
    assert!(!m.apply(&Command::Released { shard: 5, epoch: e }).is_ok());
    assert_eq!(m.shard(5).unwrap().epoch, e2);
}

#[test]
fn guarded_assign_respects_live_leases_and_epochs() {
    let mut m = ShardMap::new();
    add(&mut m, 1); // lease until 11_000
    add(&mut m, 2);
    let e = assign(&mut m, 1, 1);
    let guarded = |now| Command::Assign {
        shard: 1,
        to: 2,
        expect_epoch: Some(e),
        owner_expired_at_ms: Some(now),
    };
    assert_eq!(
        m.apply(&guarded(5_000)),
        CommandResponse::Rejected(Reject::OwnerLeaseValid { owner: 1 })
    );
    // A renewal that lands first keeps the owner.
    m.apply(&Command::RenewLease {
        node: 1,
        at_ms: 20_000,
        ttl_ms: 10_000,
    });
    assert!(!m.apply(&guarded(25_000)).is_ok());
    assert!(m.apply(&guarded(30_001)).is_ok());
    assert_eq!(m.shard(1).unwrap().owner, Some(2));
    // The epoch guard makes a second, stale command a no-op.
    assert_eq!(
        m.apply(&guarded(40_000)),
        CommandResponse::Rejected(Reject::EpochMismatch { current: e + 1 })
    );
    // Unknown target node.
    assert_eq!(
        m.apply(&Command::Assign {
            shard: 1,
            to: 9,
            expect_epoch: None,
            owner_expired_at_ms: None
        }),
        CommandResponse::Rejected(Reject::UnknownNode { node: 9 })
    );
    assert_eq!(
        m.apply(&Command::Assign {
            shard: 5000,
            to: 1,
            expect_epoch: None,
            owner_expired_at_ms: None
        }),
        CommandResponse::Rejected(Reject::UnknownShard { shard: 5000 })
    );
}

#[test]
fn leases_only_grow_and_unknown_nodes_are_rejected() {
    let mut m = ShardMap::new();
    assert_eq!(
        m.apply(&Command::RenewLease {
            node: 3,
            at_ms: 1,
            ttl_ms: 1
        }),
        CommandResponse::Rejected(Reject::UnknownNode { node: 3 })
    );
    add(&mut m, 3);
    m.apply(&Command::RenewLease {
        node: 3,
        at_ms: 50_000,
        ttl_ms: 10_000,
    });
    m.apply(&Command::RenewLease {
        node: 3,
        at_ms: 40_000,
        ttl_ms: 10_000,
    });
    assert_eq!(m.nodes[&3].lease_until_ms, 60_000);
    // Re-adding refreshes the address and lease, keeps joined_at and the draining flag (a late,
    // duplicated join must not undo a drain).
    m.apply(&Command::SetDraining {
        node: 3,
        draining: true,
    });
    m.apply(&Command::AddNode {
        node: 3,
        api_addr: "http://new".into(),
        at_ms: 70_000,
        ttl_ms: 10_000,
    });
    let n = &m.nodes[&3];
    assert_eq!(
        (
            n.api_addr.as_str(),
            n.draining,
            n.joined_at_ms,
            n.lease_until_ms
        ),
        ("http://new", true, 1000, 80_000)
    );
}

#[test]
fn removing_a_node_frees_its_shards_and_cancels_handoffs_towards_it() {
    let mut m = ShardMap::new();
    add(&mut m, 1);
    add(&mut m, 2);
    let e1 = assign(&mut m, 0, 1);
    let e2 = assign(&mut m, 1, 2);
    assert!(
        m.apply(&Command::BeginDrain {
            shard: 0,
            to: 2,
            epoch: e1
        })
        .is_ok()
    );
    assert!(m.apply(&Command::RemoveNode { node: 2 }).is_ok());
    assert_eq!(m.shard(0).unwrap().state, ShardState::Active);
    assert_eq!(m.shard(0).unwrap().owner, Some(1));
    assert_eq!(m.shard(1).unwrap().owner, None);
    assert_eq!(m.shard(1).unwrap().state, ShardState::Unassigned);
    assert_eq!(
        m.shard(1).unwrap().epoch,
        e2,
        "epoch kept; the next Assign raises it"
    );
    assert!(!m.nodes.contains_key(&2));
}

#[test]
fn raised_epochs_number_later_assignments_above_the_floor_and_never_go_down() {
    let mut m = ShardMap::new();
    add(&mut m, 1);
    let first = assign(&mut m, 0, 1);
    assert!(m.apply(&Command::RaiseEpochs { at_least: 500 }).is_ok());
    assert_eq!(assign(&mut m, 1, 1), 500);
    // A lower floor (another leader's older reading) changes nothing.
    assert!(m.apply(&Command::RaiseEpochs { at_least: 10 }).is_ok());
    assert_eq!(assign(&mut m, 2, 1), 501);
    assert!(first < 500);
    assert_eq!(
        m.shards[0].epoch, first,
        "assigned shards keep their epochs"
    );
}
