//! A 4th binary joins a running cluster of three (issue 7): started with `CLUSTER_PEERS`
//! listing the three and itself, it joins as a Raft learner, takes a fair share of the shards
//! (each node within the load cap of ceil(1024/4 × 1.05) = 269), and the sessions of the
//! shards it took are then served by it, through any node.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::cluster::{
    formed, formed_with, get, peer_list, port_of, post, services, shards_per_node, start,
    three_nodes,
};
use crate::process::free_port;

const SESSIONS: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_and_takes_a_fair_share() {
    let Some(pg) = services().await else {
        return;
    };
    let mut nodes = three_nodes(&pg.url, None);
    formed(&nodes[0], Duration::from_secs(60)).await;
    let names: Vec<String> = (0..SESSIONS).map(|i| format!("join-{i}")).collect();
    let mut before = Vec::new();
    for name in &names {
        let (code, b) = post(
            format!("{}/sessions", nodes[0].base),
            json!({"session": name}),
        )
        .await;
        assert_eq!(code, 201, "{b}");
        let (code, by, b) = get(format!("{}/{name}/status", nodes[1].base))
            .await
            .unwrap();
        assert_eq!(code, 200, "{b}");
        before.push(by.expect("served by"));
    }

    let mut ports: Vec<u16> = nodes.iter().map(port_of).collect();
    ports.push(free_port());
    let joined = Instant::now();
    nodes.push(start(4, ports[3], &peer_list(&ports), &pg.url, None, &[]));
    // The join shows at once (4 members, nothing in flight) before placement starts moving
    // shards, and between its rounds of at most 64 handoffs: wait for the fair share itself.
    let cap = (1024f64 / 4.0 * 1.05).ceil() as u64;
    let fair = |st: &serde_json::Value| {
        let per_node = shards_per_node(st);
        per_node.len() == 4
            && per_node
                .iter()
                .all(|(_, n)| *n <= cap && *n >= 1024 / 4 - 1024 / 16)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let st = loop {
        let st = formed_with(&nodes[0], 4, Duration::from_secs(60)).await;
        if fair(&st) {
            break st;
        }
        assert!(Instant::now() < deadline, "no fair share: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = joined.elapsed();
    let per_node = shards_per_node(&st);
    assert_eq!(per_node.iter().map(|(_, n)| n).sum::<u64>(), 1024, "{st}");
    // The new node sees the same map, and it stays put.
    let seen = formed_with(&nodes[3], 4, Duration::from_secs(30)).await;
    assert_eq!(shards_per_node(&seen), per_node, "{seen}");

    // Sessions of the shards node 4 took are served by node 4, through every node. (The load
    // cap may also shift a few shards between the old nodes; they are counted apart.)
    let (mut to_new, mut elsewhere) = (0, 0);
    for (name, was) in names.iter().zip(&before) {
        let mut owner = None;
        for n in &nodes {
            let (code, by, b) = get(format!("{}/{name}/status", n.base)).await.unwrap();
            assert_eq!(code, 200, "{name} through node {}: {b}", n.id);
            assert!(
                owner.is_none() || owner == by,
                "{name}: two owners {owner:?} {by:?}"
            );
            owner = by;
        }
        match owner.unwrap() {
            4 => to_new += 1,
            o if o != *was => elsewhere += 1,
            _ => {}
        }
    }
    eprintln!(
        "node 4 joined and the map settled in {took:?}: shards {per_node:?} (cap {cap}); \
         {to_new} of {SESSIONS} sessions moved to node 4, {elsewhere} between the old nodes"
    );
    assert!(to_new > 0, "no session moved to node 4 ({per_node:?})");
    assert!(
        elsewhere <= 2,
        "{elsewhere} sessions moved between the old nodes"
    );
}
