//! Multi-node tests over real loopback HTTP (short leases: renew 200 ms, TTL 2 s).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use onwapp_cluster::placement::load_cap;
use onwapp_cluster::{LeaseState, OwnershipEvent, SHARDS};

const SETTLE: Duration = Duration::from_secs(20);

fn leader_of(nodes: &[&TestNode]) -> Option<u64> {
    nodes.iter().find(|n| n.node.is_leader()).map(|n| n.id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_node_owns_every_shard_right_after_start() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (l, addr) = listener().await;
    let started = Instant::now();
    let n = start_node(l, fast_config(1, &addr, dir.path(), &[])).await;
    assert!(
        wait_until(Duration::from_secs(5), || n.owned() == SHARDS as usize).await,
        "owned {}",
        n.owned()
    );
    let took = started.elapsed();
    println!("single node: all {SHARDS} shards owned {took:?} after start");
    assert!(took < Duration::from_secs(1), "start-up took {took:?}");
    let acquired = || {
        n.events()
            .iter()
            .filter(|e| matches!(e, OwnershipEvent::Acquired { .. }))
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(2), || acquired() == SHARDS as usize).await,
        "{}",
        acquired()
    );
    let st = n.node.status();
    assert_eq!(st.leader, Some(1));
    assert_eq!(st.owned_shards, SHARDS as usize);
    assert_eq!(st.unassigned, 0);
    n.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn single_node_restart_keeps_its_map() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let (l, addr) = listener().await;
    let n = start_node(l, fast_config(1, &addr, dir.path(), &[])).await;
    assert!(wait_until(Duration::from_secs(5), || n.owned() == SHARDS as usize).await);
    let before = n.node.map();
    n.kill().await;
    drop(n);

    let l = rebind(&addr).await;
    let n = start_node(l, fast_config(1, &addr, dir.path(), &[])).await;
    // Wait for the log to be re-applied (committed entries are replayed on start).
    assert!(
        wait_until(Duration::from_secs(5), || n.owned() == SHARDS as usize).await,
        "owned {} after restart",
        n.owned()
    );
    let after = n.node.map();
    for (i, (a, b)) in before.shards.iter().zip(after.shards.iter()).enumerate() {
        assert_eq!(a.owner, b.owner, "shard {i}");
        assert!(b.epoch >= a.epoch, "shard {i} epoch went back");
    }
    assert!(after.next_epoch >= before.next_epoch);
    n.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_bootstrap_and_agree() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(3, dir.path()).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(
        wait_until(SETTLE, || settled(&refs)
            && refs.iter().map(|n| n.owned()).sum::<usize>() == 1024)
        .await
    );
    let cap = load_cap(SHARDS, 3, 1.05);
    let map = nodes[0].node.map();
    for n in &nodes {
        let c = map.count_of(n.id);
        assert!(c > 0 && c <= cap, "node {} owns {c} (cap {cap})", n.id);
        assert_eq!(n.owned(), c, "node {} effective ownership", n.id);
        assert_eq!(*n.node.lease_watch().borrow(), LeaseState::Valid);
    }
    // Bootstrap waits for the configured peers: shards are assigned directly, no handoffs.
    let handoffs: usize = nodes
        .iter()
        .map(|n| {
            n.events()
                .iter()
                .filter(|e| matches!(e, OwnershipEvent::Releasing { .. }))
                .count()
        })
        .sum();
    println!("bootstrap handoffs: {handoffs}");
    assert_eq!(handoffs, 0);
    let leader = leader_of(&refs).unwrap();
    for n in &nodes {
        let st = n.node.status();
        assert_eq!(st.leader, Some(leader));
        assert_eq!(st.nodes.len(), 3);
        assert_eq!(st.nodes.iter().filter(|s| s.voter).count(), 3);
    }
    for n in &nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_owner_shards_move_with_higher_epochs() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(3, dir.path()).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(wait_until(SETTLE, || settled(&refs)).await);
    // Kill the leader: the harder case (election, then lease expiry under a new leader).
    let victim = leader_of(&refs).unwrap();
    let vnode = nodes.iter().find(|n| n.id == victim).unwrap();
    let before: BTreeMap<u32, u64> = vnode
        .node
        .map()
        .shards_of(victim)
        .map(|(s, sh)| (s, sh.epoch))
        .collect();
    assert!(!before.is_empty());
    let killed_at = Instant::now();
    vnode.kill().await;
    let rest: Vec<&TestNode> = nodes.iter().filter(|n| n.id != victim).collect();
    let moved = wait_until(Duration::from_secs(10), || {
        let map = rest[0].node.map();
        before.iter().all(|(s, e)| {
            let sh = map.shard(*s).unwrap();
            sh.owner.is_some_and(|o| o != victim) && sh.epoch > *e
        }) && agreed(&rest)
            && rest.iter().map(|n| n.owned()).sum::<usize>() == 1024
    })
    .await;
    let took = killed_at.elapsed();
    println!(
        "leader killed: its {} shards owned elsewhere after {took:?}",
        before.len()
    );
    assert!(moved, "shards of the killed node were not reassigned");
    // The dead leader's lease (one TTL, 2 s, which outlasts an election, the new leader's read
    // barrier and its two renewal periods of grace) + placement, with room for a busy machine.
    assert!(took < Duration::from_secs(8), "took {took:?}");
    for n in &rest {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn drained_node_ends_with_no_shards() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(3, dir.path()).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(wait_until(SETTLE, || settled(&refs)).await);
    let d = &nodes[2];
    let had: Vec<u32> = d.node.map().shards_of(d.id).map(|(s, _)| s).collect();
    let report = d.node.drain(Duration::from_secs(15)).await.unwrap();
    println!("drain: {report:?}");
    if report.timed_out {
        for n in &nodes {
            eprintln!(
                "status of {}: {}",
                n.id,
                serde_json::to_string(&n.node.status()).unwrap()
            );
        }
    }
    assert!(!report.timed_out);
    assert_eq!(report.shards_before, had.len());
    assert_eq!(report.shards_remaining, 0);
    assert!(wait_until(Duration::from_secs(5), || d.owned() == 0 && settled(&refs)).await);
    // The drained node saw Releasing for each shard; the others acquired them.
    let releasing = || {
        d.events()
            .iter()
            .filter(|e| matches!(e, OwnershipEvent::Releasing { .. }))
            .count()
    };
    assert!(wait_until(Duration::from_secs(10), || releasing() >= had.len()).await);
    assert_eq!(releasing(), had.len());
    // Ownership events reach the test through a task of each node: polled, not read once.
    let acquired = || -> std::collections::BTreeSet<u32> {
        nodes[..2]
            .iter()
            .flat_map(|n| n.events())
            .filter_map(|e| match e {
                OwnershipEvent::Acquired { shard, .. } => Some(shard),
                _ => None,
            })
            .collect()
    };
    let all = wait_until(Duration::from_secs(10), || {
        let got = acquired();
        had.iter().all(|s| got.contains(s))
    })
    .await;
    let got = acquired();
    let missing: Vec<&u32> = had.iter().filter(|s| !got.contains(s)).collect();
    assert!(all, "shards not acquired by another node: {missing:?}");
    assert!(
        wait_until(Duration::from_secs(5), || nodes[0].owned()
            + nodes[1].owned()
            == 1024)
        .await
    );
    for n in &nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fourth_node_joins_and_takes_a_fair_share() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(3, dir.path()).await;
    {
        let refs: Vec<&TestNode> = nodes.iter().collect();
        assert!(wait_until(SETTLE, || settled(&refs)).await);
    }
    let before = nodes[0].node.map();
    let peers: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
    let (l, addr) = listener().await;
    nodes.push(start_node(l, fast_config(4, &addr, dir.path(), &peers)).await);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let cap = load_cap(SHARDS, 4, 1.05);
    let ok = wait_until(SETTLE, || {
        settled(&refs)
            && nodes[3].owned() > 0
            && refs.iter().map(|n| n.owned()).sum::<usize>() == 1024
    })
    .await;
    assert!(ok, "4th node did not settle: owns {}", nodes[3].owned());
    let after = nodes[0].node.map();
    let moved = before
        .shards
        .iter()
        .zip(after.shards.iter())
        .filter(|(a, b)| a.owner != b.owner)
        .count();
    let got = after.count_of(4);
    println!("4th node joined: owns {got}, {moved} shards moved (cap {cap})");
    assert!(got <= cap && got >= 200, "4th node owns {got}");
    for n in &nodes {
        assert!(after.count_of(n.id) <= cap);
    }
    assert!(moved <= 340, "{moved} shards moved");
    assert!(
        !nodes[3]
            .node
            .status()
            .nodes
            .iter()
            .find(|s| s.id == 4)
            .unwrap()
            .voter
    );
    for n in &nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocked_renewals_lose_the_lease_before_the_leader_reassigns() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(3, dir.path()).await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(wait_until(SETTLE, || settled(&refs)).await);
    let leader = leader_of(&refs).unwrap();
    let x = nodes.iter().find(|n| n.id != leader).unwrap();
    let lnode = nodes.iter().find(|n| n.id == leader).unwrap();
    let shards: Vec<u32> = x.node.map().shards_of(x.id).map(|(s, _)| s).collect();
    assert!(wait_until(Duration::from_secs(5), || x.owned() > 0).await);
    let mut lease = x.node.lease_watch();
    x.node.pause_renewals(true);
    let paused_at = Instant::now();
    // Sample both sides until the leader's map moved the first shard of x.
    let mut lost_at = None;
    let mut reassigned_at = None;
    while paused_at.elapsed() < Duration::from_secs(10) {
        if lost_at.is_none() && *lease.borrow_and_update() == LeaseState::Lost {
            lost_at = Some(paused_at.elapsed());
            assert_eq!(x.owned(), 0, "a node with a lost lease owns nothing");
        }
        let map = lnode.node.map();
        if shards
            .iter()
            .any(|s| map.shard(*s).unwrap().owner != Some(x.id))
        {
            reassigned_at = Some(paused_at.elapsed());
            // At the moment the leader moved a shard, x must already consider its lease lost.
            assert!(!x.node.lease_valid());
            assert_eq!(x.owned(), 0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "renewals paused: lease lost after {lost_at:?}, first shard reassigned after {reassigned_at:?}"
    );
    let (lost, moved) = (
        lost_at.expect("lease never lost"),
        reassigned_at.expect("never reassigned"),
    );
    assert!(lost < moved);
    assert!(
        x.events()
            .iter()
            .any(|e| matches!(e, OwnershipEvent::Lost { .. }))
    );
    // Renewals resume: x gets a lease again and, eventually, shards again.
    x.node.pause_renewals(false);
    assert!(
        wait_until(Duration::from_secs(10), || x.node.lease_valid()
            && x.owned() > 0
            && settled(&refs))
        .await
    );
    for n in &nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restarted_follower_rejoins_with_its_state() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(3, dir.path()).await;
    {
        let refs: Vec<&TestNode> = nodes.iter().collect();
        assert!(wait_until(SETTLE, || settled(&refs)).await);
    }
    let leader = leader_of(&nodes.iter().collect::<Vec<_>>()).unwrap();
    let idx = nodes.iter().position(|n| n.id != leader).unwrap();
    let old = nodes.remove(idx);
    let applied_before = old.node.map_watch().borrow().applied_index;
    let peers: Vec<(u64, String)> = {
        let mut p: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
        p.push((old.id, old.addr.clone()));
        p.sort();
        p
    };
    old.kill().await;
    let (id, addr) = (old.id, old.addr.clone());
    drop(old);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let l = rebind(&addr).await;
    let restarted = start_node(l, fast_config(id, &addr, dir.path(), &peers)).await;
    // Its state came back from disk before catching up with the leader.
    assert!(restarted.node.map_watch().borrow().applied_index > 0 || applied_before == 0);
    nodes.push(restarted);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    assert!(
        wait_until(SETTLE, || settled(&refs)
            && refs.iter().all(|n| n.owned() > 0)
            && refs.iter().map(|n| n.owned()).sum::<usize>() == 1024)
        .await
    );
    for n in &nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_voter_leaves_and_a_learner_takes_its_vote() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(3, dir.path()).await;
    let peers: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
    let (l, addr) = listener().await;
    nodes.push(start_node(l, fast_config(4, &addr, dir.path(), &peers)).await);
    {
        let refs: Vec<&TestNode> = nodes.iter().collect();
        assert!(wait_until(SETTLE, || settled(&refs) && nodes[3].owned() > 0).await);
    }
    let leader = leader_of(&nodes.iter().collect::<Vec<_>>()).unwrap();
    let idx = nodes
        .iter()
        .position(|n| n.id != leader && n.id != 4)
        .unwrap();
    let leaving = nodes.remove(idx);
    let report = leaving.node.leave(Duration::from_secs(15)).await.unwrap();
    println!("leave: {report:?}");
    assert!(!report.timed_out);
    assert_eq!(report.shards_remaining, 0);
    leaving.kill().await;
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let ok = wait_until(SETTLE, || {
        let st = refs[0].node.status();
        settled(&refs)
            && !refs[0].node.map().nodes.contains_key(&leaving.id)
            && st.nodes.iter().filter(|n| n.voter).count() == 3
            && refs.iter().map(|n| n.owned()).sum::<usize>() == 1024
    })
    .await;
    assert!(ok, "status: {:?}", refs[0].node.status());
    let voters: Vec<u64> = refs[0]
        .node
        .status()
        .nodes
        .iter()
        .filter(|n| n.voter)
        .map(|n| n.id)
        .collect();
    assert!(voters.contains(&4), "learner 4 promoted: {voters:?}");
    for n in &nodes {
        n.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_drained_node_that_restarts_takes_shards_again() {
    init_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_cluster(3, dir.path()).await;
    {
        let refs: Vec<&TestNode> = nodes.iter().collect();
        assert!(wait_until(SETTLE, || settled(&refs)).await);
    }
    let peers: Vec<(u64, String)> = nodes.iter().map(|n| (n.id, n.addr.clone())).collect();
    // Rolling update: drain (preStop), stop, start again on the same data directory.
    let old = nodes.remove(2);
    let report = old.node.drain(Duration::from_secs(15)).await.unwrap();
    assert_eq!(report.shards_remaining, 0);
    old.kill().await;
    let (id, addr) = (old.id, old.addr.clone());
    drop(old);
    let l = rebind(&addr).await;
    nodes.push(start_node(l, fast_config(id, &addr, dir.path(), &peers)).await);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    let ok = wait_until(SETTLE, || {
        settled(&refs) && refs[2].owned() > 0 && !refs[0].node.map().nodes[&id].draining
    })
    .await;
    assert!(ok, "restarted node owns {}", refs[2].owned());
    for n in &nodes {
        n.kill().await;
    }
}
