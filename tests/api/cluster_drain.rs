//! Drain under load (issue 7): while clients keep asking every node about 20 sessions,
//! `POST /admin/drain` hands every shard of one node to the others. The drain reports done,
//! the node owns nothing afterwards, and no client request failed: the forwarder's bounded
//! retries and its wait for an owner absorb every move.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;

use crate::cluster::{formed, get, post, served_by, services, shards_per_node, three_nodes};
use crate::helpers::GLOBAL_KEY;

const SESSIONS: usize = 20;
const CLIENTS: usize = 4;

/// One request as a client saw it.
struct Seen {
    started: Instant,
    took: Duration,
    ok: bool,
    what: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_under_load_moves_every_shard_and_no_request_fails() {
    let Some(pg) = services().await else {
        return;
    };
    let nodes = three_nodes(&pg.url, None);
    formed(&nodes[0], Duration::from_secs(60)).await;
    let names: Vec<String> = (0..SESSIONS).map(|i| format!("drain-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let (code, b) = post(
            format!("{}/sessions", nodes[i % 3].base),
            json!({"session": name}),
        )
        .await;
        assert_eq!(code, 201, "{b}");
    }
    let drained = &nodes[2];
    let mut on_drained = 0;
    for name in &names {
        let (code, by, b) = get(format!("{}/{name}/status", nodes[0].base))
            .await
            .unwrap();
        assert_eq!(code, 200, "{b}");
        on_drained += usize::from(by == Some(drained.id));
    }

    // Clients: each sends GET /{session}/status to every node in turn, without pause.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let bases: Vec<String> = nodes.iter().map(|n| n.base.clone()).collect();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let (stop, count, seen) = (stop.clone(), count.clone(), seen.clone());
            let (bases, names) = (bases.clone(), names.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut i = c;
                while !stop.load(Ordering::SeqCst) {
                    let (base, name) = (&bases[i % bases.len()], &names[(i / 3) % names.len()]);
                    i += CLIENTS;
                    let started = Instant::now();
                    let r = http
                        .get(format!("{base}/{name}/status"))
                        .header("Authorization", GLOBAL_KEY)
                        .timeout(Duration::from_secs(30))
                        .send()
                        .await;
                    let took = started.elapsed();
                    let (ok, what) = match r {
                        Ok(r) => {
                            let (code, by) = (r.status().as_u16(), served_by(&r));
                            let body: serde_json::Value = r.json().await.unwrap_or_default();
                            (
                                code == 200 && body["status"] == "disconnected",
                                format!("{base}/{name}/status: {code} by {by:?} {body}"),
                            )
                        }
                        Err(e) => (false, format!("{base}/{name}/status: {e}")),
                    };
                    count.fetch_add(1, Ordering::SeqCst);
                    if let Ok(mut s) = seen.lock() {
                        s.push(Seen {
                            started,
                            took,
                            ok,
                            what,
                        });
                    }
                }
            })
        })
        .collect();
    // Load first, then the drain in the middle of it.
    while count.load(Ordering::SeqCst) < 200 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_start = Instant::now();
    let (code, report) = post(
        format!("{}/admin/drain", drained.base),
        json!({"timeoutSeconds": 30}),
    )
    .await;
    let drain_end = Instant::now();
    let after = count.load(Ordering::SeqCst) + 200;
    while count.load(Ordering::SeqCst) < after {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["done"], true, "{report}");
    assert_eq!(report["shardsRemaining"], 0, "{report}");

    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let failed: Vec<&str> = seen
        .iter()
        .filter(|s| !s.ok)
        .map(|s| s.what.as_str())
        .collect();
    let during: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.started >= drain_start && s.started <= drain_end)
        .collect();
    let max_during = during.iter().map(|s| s.took).max().unwrap_or_default();
    let max_all = seen.iter().map(|s| s.took).max().unwrap_or_default();
    eprintln!(
        "drain of node {} ({} shards, {on_drained} of {SESSIONS} sessions) done in {} ms: {} \
         requests in all, {} during the drain (max latency {max_during:?}; overall max \
         {max_all:?}), {} failed",
        drained.id,
        report["shardsBefore"],
        report["elapsedMs"],
        seen.len(),
        during.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "failed requests: {failed:#?}");
    assert!(!during.is_empty(), "no request ran during the drain");

    // The drained node owns nothing; every session is served by the others, through any node.
    let st = get(format!("{}/admin/cluster", drained.base))
        .await
        .unwrap()
        .2;
    assert_eq!(st["ownedShards"], 0, "{st}");
    let per_node = shards_per_node(&st);
    assert!(per_node.contains(&(drained.id, 0)), "{per_node:?} in {st}");
    assert_eq!(per_node.iter().map(|(_, n)| n).sum::<u64>(), 1024, "{st}");
    for name in &names {
        for n in &nodes {
            let (code, by, b) = get(format!("{}/{name}/status", n.base)).await.unwrap();
            assert_eq!(code, 200, "{b}");
            assert!(by.is_some_and(|b| b != drained.id), "{name} by {by:?}");
        }
    }
}
