//! How many shard moves per second the map applies through a real 3-node raft over loopback
//! HTTP. Plain binary (harness = false): `cargo bench -p onwapp-cluster --bench moves`.
//!
//! Placement is off so only the benchmark writes to the map. Each figure is the time until the
//! last command is applied on all three nodes.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::*;
use onwapp_cluster::{Command, NodeId, SHARDS, WriteRequest};

fn assign(shard: u32, to: NodeId) -> Command {
    Command::Assign {
        shard,
        to,
        expect_epoch: None,
        owner_expired_at_ms: None,
    }
}

async fn wait_applied(nodes: &[TestNode], index: u64) {
    let ok = wait_until(Duration::from_secs(60), || {
        nodes
            .iter()
            .all(|n| n.node.map_watch().borrow().applied_index >= index)
    })
    .await;
    assert!(ok, "not applied everywhere");
}

fn report(name: &str, moves: usize, took: Duration) {
    println!(
        "{name:<52} {moves:>5} moves in {:>8.1} ms = {:>9.0} moves/s",
        took.as_secs_f64() * 1000.0,
        moves as f64 / took.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let mut ls = Vec::new();
    for id in 1..=3u64 {
        let (l, addr) = listener().await;
        ls.push((id, l, addr));
    }
    let peers: Vec<(NodeId, String)> = ls.iter().map(|(id, _, a)| (*id, a.clone())).collect();
    let mut nodes = Vec::new();
    for (id, l, addr) in ls {
        let mut c = fast_config(id, &addr, dir.path(), &peers);
        c.placement_enabled = false;
        c.heartbeat_interval = Duration::from_millis(100);
        c.election_timeout_min = Duration::from_millis(1000);
        c.election_timeout_max = Duration::from_millis(2000);
        nodes.push(start_node(l, c).await);
    }
    assert!(
        wait_until(Duration::from_secs(20), || nodes.iter().all(|n| n
            .node
            .map()
            .nodes
            .len()
            == 3))
        .await,
        "cluster did not form"
    );
    let leader = nodes.iter().position(|n| n.node.is_leader()).unwrap();
    let follower = (leader + 1) % 3;
    let ids: Vec<NodeId> = nodes.iter().map(|n| n.id).collect();
    let shards = SHARDS as usize;
    println!(
        "3-node raft over loopback HTTP, redb log with fsync, {shards} Assign commands per run"
    );
    let mut round = 0usize;
    let mut to = || {
        round += 1;
        ids[round % 3]
    };

    // 1. One command at a time, on the leader.
    let t = Instant::now();
    let mut last = 0;
    for s in 0..SHARDS {
        let r = nodes[leader]
            .node
            .submit(
                WriteRequest::Command {
                    command: assign(s, to()),
                },
                Duration::from_secs(5),
            )
            .await;
        last = r.unwrap().log_index;
    }
    wait_applied(&nodes, last).await;
    report(
        "sequential Assign, one at a time (leader)",
        shards,
        t.elapsed(),
    );

    // 2. All in flight at once on the leader (openraft batches them into appends).
    let target = to();
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for s in 0..SHARDS {
        let n = nodes[leader].node.clone();
        set.spawn(async move {
            n.submit(
                WriteRequest::Command {
                    command: assign(s, target),
                },
                Duration::from_secs(30),
            )
            .await
        });
    }
    let mut last = 0;
    while let Some(r) = set.join_next().await {
        last = last.max(r.unwrap().unwrap().log_index);
    }
    wait_applied(&nodes, last).await;
    report(
        "concurrent Assign, 1024 in flight (leader)",
        shards,
        t.elapsed(),
    );

    // 3. Concurrent, proposed on a follower: forwarded to the leader over HTTP.
    let target = to();
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for s in 0..SHARDS {
        let n = nodes[follower].node.clone();
        set.spawn(async move {
            n.submit(
                WriteRequest::Command {
                    command: assign(s, target),
                },
                Duration::from_secs(30),
            )
            .await
        });
    }
    let mut last = 0;
    while let Some(r) = set.join_next().await {
        last = last.max(r.unwrap().unwrap().log_index);
    }
    wait_applied(&nodes, last).await;
    report(
        "concurrent Assign, 1024 in flight (follower, fwd)",
        shards,
        t.elapsed(),
    );

    // 4. One Batch entry of 1024 Assigns (what placement proposes).
    let target = to();
    let t = Instant::now();
    let batch = Command::Batch {
        commands: (0..SHARDS).map(|s| assign(s, target)).collect(),
    };
    let r = nodes[leader]
        .node
        .submit(
            WriteRequest::Command { command: batch },
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    wait_applied(&nodes, r.log_index).await;
    report(
        "one Batch of 1024 Assign (placement's way)",
        shards,
        t.elapsed(),
    );

    for n in &nodes {
        n.kill().await;
    }
}
