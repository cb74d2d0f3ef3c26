//! The cluster with real processes (issue 7): three `onwapp` binaries on loopback, one Postgres
//! database, one Redis. Any node accepts a session's request and the owner serves it
//! (forwarded once); when the owner is killed with SIGKILL another node owns the session within
//! the lease TTL plus a few seconds.

use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::helpers::{GLOBAL_KEY, PgDatabase, test_redis_url};
use crate::process::{ServerProcess, redis_available};

const SECRET: &str = "cluster-test-secret-0123456789";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Member {
    id: u64,
    base: String,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(id: u64, port: u16, peers: &str, db: &str) -> Member {
    let dir = tempfile::tempdir().unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let envs = [
        ("DATABASE_URL", db.to_string()),
        ("REDIS_URL", test_redis_url()),
        ("NODE_ID", id.to_string()),
        ("NODE_ADVERTISE_URL", base.clone()),
        ("CLUSTER_PEERS", peers.to_string()),
        ("CLUSTER_SECRET", SECRET.to_string()),
        ("CLUSTER_LEASE_RENEW_MS", "300".to_string()),
        ("CLUSTER_LEASE_TTL_MS", "3000".to_string()),
        ("RATE_LIMIT_PER_SECOND", "100000".to_string()),
        ("RATE_LIMIT_BURST", "100000".to_string()),
    ];
    let child = ServerProcess::command(&envs, dir.path(), port)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn onwapp");
    Member {
        id,
        base,
        child,
        _dir: dir,
    }
}

async fn get(url: String) -> Option<(u16, Option<u64>, Value)> {
    let r = reqwest::Client::new()
        .get(url)
        .header("Authorization", GLOBAL_KEY)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let code = r.status().as_u16();
    let by = r
        .headers()
        .get("x-onwapp-served-by")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    Some((code, by, r.json().await.unwrap_or(Value::Null)))
}

/// Waits until `node` sees three members with leases and every shard placed.
async fn formed(node: &Member, limit: Duration) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        if let Some((200, _, st)) = get(format!("{}/admin/cluster", node.base)).await
            && st["nodes"].as_array().is_some_and(|n| n.len() == 3)
            && st["unassigned"] == 0
            && st["moves_in_flight"] == 0
        {
            return st;
        }
        assert!(Instant::now() < deadline, "the cluster did not form");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_forward_to_the_owner_and_fail_over_after_kill_9() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    if !redis_available().await {
        return;
    }
    let ports = [free_port(), free_port(), free_port()];
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=http://127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes: Vec<Member> = (0..3)
        .map(|i| start(i as u64 + 1, ports[i], &peers, &pg.url))
        .collect();
    let st = formed(&nodes[0], Duration::from_secs(60)).await;
    let owned: u64 = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["shards"].as_u64().unwrap())
        .sum();
    assert_eq!(owned, 1024, "{st}");
    for n in st["nodes"].as_array().unwrap() {
        // Rendezvous placement under the load cap: about a third each.
        assert!(n["shards"].as_u64().unwrap() <= 359, "{st}");
    }

    // Created through node 1, then used through every node: the same owner answers.
    let r = reqwest::Client::new()
        .post(format!("{}/sessions", nodes[0].base))
        .header("Authorization", GLOBAL_KEY)
        .json(&json!({"session": "shop"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut owner = None;
    for n in &nodes {
        let (code, by, body) = get(format!("{}/shop/status", n.base)).await.unwrap();
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["status"], "disconnected", "{body}");
        assert!(by.is_some(), "no x-onwapp-served-by");
        assert!(
            owner.is_none() || owner == by,
            "two owners: {owner:?} {by:?}"
        );
        owner = by;
    }
    let owner = owner.unwrap();
    // A forwarded request carrying a stale or foreign proof is not trusted as a member's.
    let r = reqwest::Client::new()
        .get(format!(
            "{}/shop/status",
            nodes.iter().find(|n| n.id != owner).unwrap().base
        ))
        .header("Authorization", GLOBAL_KEY)
        .header("x-onwapp-forwarded-by", "9")
        .header("x-onwapp-cluster-auth", "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a client's fake member headers are ignored"
    );

    // SIGKILL the owner: another node owns the session within the TTL plus a few seconds.
    let killed = Instant::now();
    let i = nodes.iter().position(|n| n.id == owner).unwrap();
    let mut dead = nodes.remove(i);
    dead.child.kill().unwrap();
    dead.child.wait().unwrap();
    let deadline = killed + Duration::from_secs(3 + 10);
    let new_owner = loop {
        if let Some((200, Some(by), _)) = get(format!("{}/shop/status", nodes[0].base)).await
            && by != owner
        {
            break by;
        }
        assert!(Instant::now() < deadline, "no node took the session over");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = killed.elapsed();
    eprintln!("owner {owner} killed; node {new_owner} serves the session after {took:?}");
    for n in &nodes {
        let (code, by, body) = get(format!("{}/shop/status", n.base)).await.unwrap();
        assert_eq!((code, by), (200, Some(new_owner)), "{body}");
    }
    // The operator's view on a survivor: the dead node's lease has run out.
    let st = get(format!("{}/admin/cluster", nodes[0].base))
        .await
        .unwrap()
        .2;
    assert!(st["leader"].is_u64(), "{st}");
    let gone = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == owner)
        .cloned()
        .unwrap_or(Value::Null);
    assert!(
        gone.is_null() || gone["lease_remaining_ms"].as_i64().unwrap_or(0) <= 0,
        "{st}"
    );
}
