//! The cluster-wide rate limit (issue 7): three nodes share one Redis GCRA limit per client.
//! A client hammering a session route through all three nodes at once gets, in all, the
//! configured rate × seconds + burst (within 10%), the rest 429; the two thirds of requests
//! that are forwarded to the owner are not charged a second time.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;

use crate::cluster::{formed, post, services, three_nodes_with};
use crate::helpers::GLOBAL_KEY;

const RATE: u32 = 40;
const BURST: u32 = 40;
const SECONDS: f64 = 4.0;
const CLIENTS_PER_NODE: usize = 2;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_together_let_through_the_configured_limit() {
    let Some(pg) = services().await else {
        return;
    };
    let prefix = format!("onwapp-test-{}", uuid::Uuid::new_v4().simple());
    let nodes = three_nodes_with(
        &pg.url,
        None,
        &[
            ("REDIS_KEY_PREFIX", prefix),
            ("RATE_LIMIT_PER_SECOND", RATE.to_string()),
            ("RATE_LIMIT_BURST", BURST.to_string()),
        ],
    );
    formed(&nodes[0], Duration::from_secs(60)).await;
    let (code, b) = post(
        format!("{}/sessions", nodes[0].base),
        json!({"session": "limited"}),
    )
    .await;
    assert_eq!(code, 201, "{b}");
    // The polls above spent a little of the budget: let the bucket fill up (burst / rate).
    tokio::time::sleep(Duration::from_secs_f64(
        f64::from(BURST) / f64::from(RATE) + 0.2,
    ))
    .await;

    let (allowed, denied, other) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(SECONDS);
    let clients: Vec<_> = nodes
        .iter()
        .flat_map(|n| std::iter::repeat_n(n.base.clone(), CLIENTS_PER_NODE))
        .map(|base| {
            let (allowed, denied, other) = (allowed.clone(), denied.clone(), other.clone());
            tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut last = start;
                while Instant::now() < end {
                    last = Instant::now();
                    let r = http
                        .get(format!("{base}/limited/status"))
                        .header("Authorization", GLOBAL_KEY)
                        .timeout(Duration::from_secs(10))
                        .send()
                        .await;
                    match r.map(|r| r.status().as_u16()) {
                        Ok(200) => allowed.fetch_add(1, Ordering::SeqCst),
                        Ok(429) => denied.fetch_add(1, Ordering::SeqCst),
                        _ => other.fetch_add(1, Ordering::SeqCst),
                    };
                }
                last
            })
        })
        .collect();
    let mut last = start;
    for c in clients {
        last = last.max(c.await.unwrap());
    }
    let window = (last - start).as_secs_f64();
    let (allowed, denied, other) = (
        allowed.load(Ordering::SeqCst),
        denied.load(Ordering::SeqCst),
        other.load(Ordering::SeqCst),
    );
    let expected = f64::from(RATE) * window + f64::from(BURST);
    eprintln!(
        "rate {RATE}/s, burst {BURST}, 3 nodes, {} clients for {window:.2} s: {allowed} allowed \
         (expected {expected:.0}), {denied} got 429, {other} other",
        3 * CLIENTS_PER_NODE
    );
    assert_eq!(other, 0, "answers other than 200 and 429");
    assert!(denied > allowed, "the clients did not push past the limit");
    let off = (allowed as f64 - expected).abs() / expected;
    assert!(
        off <= 0.10,
        "{allowed} allowed vs {expected:.0} expected ({:.1}% off)",
        off * 100.0
    );
}
