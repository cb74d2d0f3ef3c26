//! Cluster benchmark, all in one run (issue 7): three real `onwapp` binaries on loopback with one
//! Postgres database and Redis.
//!
//! `cargo bench --bench cluster -- [--seconds 10] [--concurrency 16] [--kills 10] [--sessions 200]
//! [--ttl-ms 7000] [--renew-ms 1000]`
//!
//! 1. **Forwarding**: `GET /{session}/status` sent to the session's owner (served locally) and to
//!    another node (forwarded once), each for `--seconds` with `--concurrency` clients: throughput
//!    and p50/p99 of both, measured in five alternating slices each (a drift in the machine's
//!    speed falls on both sides); then one client at a time against each, which shows what the
//!    hop itself adds without queueing.
//! 2. **Moves**: `POST /admin/drain` on one node hands all its shards (with `--sessions` sessions
//!    spread over them) to the others; shards moved per second, then `undrain` and rebalance.
//! 3. **Failover, end to end**: `--kills` times, the owner of a paired session (wamock plays
//!    WhatsApp) is killed with SIGKILL, the Raft leader on every other kill: the time from the
//!    kill until another node serves the session, until it is connected there, and until a text
//!    sent through a surviving node reached wamock. The killed node is restarted on its data
//!    directory and the cluster rebalanced before the next kill. Production lease timing by
//!    default (renew 1 s, TTL 7 s): the target is every kill under 10 s end to end.
//!
//! Each phase also reports the lease losses of the nodes that stayed up
//! (`cluster_lease_losses_total`): a healthy node, however busy, must lose none.
//!
//! `cargo bench --bench cluster -- --tracing [--sample-percent N] [--seconds 10] [--concurrency 16]`
//! measures instead what OpenTelemetry tracing costs on the forwarded path: two clusters of two
//! nodes side by side, one exporting spans (every trace, or N% of them) (`OTEL_EXPORTER_OTLP_ENDPOINT`, to an OTLP/HTTP sink in this process
//! that reads and drops each batch), one without; the same forwarded `GET /{session}/status`
//! against both in alternating slices.

use std::{
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

mod common;

const KEY: &str = "bench-global-key-0123456789";
const SECRET: &str = "bench-cluster-secret-0123456789";
/// The wamock user every failover send goes to.
const RECIPIENT: &str = "5521977770000";

#[derive(Clone, Copy)]
struct Args {
    seconds: u64,
    concurrency: usize,
    kills: usize,
    sessions: usize,
    ttl_ms: u64,
    renew_ms: u64,
}

fn args() -> Args {
    Args {
        seconds: common::flag("--seconds").unwrap_or(10),
        concurrency: common::flag("--concurrency").map_or(16, |n| n as usize),
        kills: common::flag("--kills").map_or(10, |n| n as usize),
        sessions: common::flag("--sessions").map_or(200, |n| n as usize),
        ttl_ms: common::flag("--ttl-ms").unwrap_or(7_000),
        renew_ms: common::flag("--renew-ms").unwrap_or(1_000),
    }
}

struct Node {
    id: u64,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Node {
    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Cluster {
    nodes: Vec<Node>,
    peers: String,
    db: String,
    /// wamock's WebSocket URL (WhatsApp for the nodes).
    wa: String,
    a: Args,
    /// Where the nodes export their spans (`None`: no tracing).
    otel: Option<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Cluster {
    fn spawn(&mut self, i: usize) {
        let n = &self.nodes[i];
        let redis =
            std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        let child = Command::new(env!("CARGO_BIN_EXE_onwapp"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // Each node's runtime size, when set (three nodes share this machine's cores).
            .envs(std::env::vars().filter(|(k, _)| k == "TOKIO_WORKER_THREADS"))
            .env("PORT", n.port.to_string())
            .env("DATA_DIR", n.dir.path())
            .env("GLOBAL_API_KEY", KEY)
            .env("LOG_LEVEL", "error")
            .env("DATABASE_URL", &self.db)
            .env("REDIS_URL", redis)
            .env("NODE_ID", n.id.to_string())
            .env("NODE_ADVERTISE_URL", n.base())
            .env("CLUSTER_PEERS", &self.peers)
            .env("CLUSTER_SECRET", SECRET)
            .env("CLUSTER_LEASE_RENEW_MS", self.a.renew_ms.to_string())
            .env("CLUSTER_LEASE_TTL_MS", self.a.ttl_ms.to_string())
            .env("WHATSAPP_SERVER_URL", &self.wa)
            .env("RATE_LIMIT_PER_SECOND", "10000000")
            .env("RATE_LIMIT_BURST", "10000000")
            .envs(
                self.otel
                    .iter()
                    .map(|url| ("OTEL_EXPORTER_OTLP_ENDPOINT", url.as_str())),
            )
            // `--sample-percent N`: the traced nodes keep N% of the traces.
            .envs(
                self.otel
                    .as_ref()
                    .and(common::flag("--sample-percent"))
                    .into_iter()
                    .flat_map(|pct| {
                        [
                            (
                                "OTEL_TRACES_SAMPLER",
                                "parentbased_traceidratio".to_string(),
                            ),
                            ("OTEL_TRACES_SAMPLER_ARG", format!("{}", pct as f64 / 100.0)),
                        ]
                    }),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn onwapp");
        self.nodes[i].child = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }

    /// Every node answers, every shard is placed, nothing moves, and each node holds at least
    /// `min_shards`.
    async fn settled(&self, http: &reqwest::Client, min_shards: u64, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let mut ok = true;
            for n in &self.nodes {
                let Some(st) = get_json(http, &format!("{}/admin/cluster", n.base())).await else {
                    ok = false;
                    break;
                };
                let moving = st
                    .get("movesInFlight")
                    .or_else(|| st.get("moves_in_flight"))
                    .and_then(Value::as_u64);
                let shards: Vec<u64> = st["nodes"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|n| n["shards"].as_u64()).collect())
                    .unwrap_or_default();
                if st["unassigned"] != 0
                    || moving != Some(0)
                    || shards.len() != self.nodes.len()
                    || shards.iter().any(|s| *s < min_shards)
                {
                    ok = false;
                    break;
                }
            }
            if ok {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Option<Value> {
    let r = http
        .get(url)
        .header("Authorization", KEY)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    if r.status() != 200 {
        return None;
    }
    r.json().await.ok()
}

/// `GET url` → (status, the node that served it, the body).
async fn served_json(http: &reqwest::Client, url: &str) -> Option<(u16, Option<u64>, Value)> {
    let r = http
        .get(url)
        .header("Authorization", KEY)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let by = r
        .headers()
        .get("x-onwapp-served-by")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let code = r.status().as_u16();
    Some((code, by, r.json().await.unwrap_or(Value::Null)))
}

/// `POST url` with a JSON body → (status, body); (0, null) when no answer came.
async fn post_json(http: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    match http
        .post(url)
        .header("Authorization", KEY)
        .timeout(Duration::from_secs(15))
        .json(&body)
        .send()
        .await
    {
        Ok(r) => {
            let code = r.status().as_u16();
            (code, r.json().await.unwrap_or(Value::Null))
        }
        Err(_) => (0, Value::Null),
    }
}

/// Each live node's `leaseLosses` (its own count since it started), by node id.
async fn lease_losses(http: &reqwest::Client, c: &Cluster) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for n in c.nodes.iter().filter(|n| n.child.is_some()) {
        if let Some(st) = get_json(http, &format!("{}/admin/cluster", n.base())).await {
            out.push((n.id, st["leaseLosses"].as_u64().unwrap_or(0)));
        }
    }
    out
}

/// Losses between two readings, over the nodes present in both (a restarted node counts anew).
fn losses_between(before: &[(u64, u64)], after: &[(u64, u64)]) -> u64 {
    after
        .iter()
        .filter_map(|(id, a)| {
            let b = before.iter().find(|(i, _)| i == id)?.1;
            Some(a.saturating_sub(b))
        })
        .sum()
}

/// Connects `name` through `base`, scans its QR on wamock as `phone`, waits until connected.
async fn pair(http: &reqwest::Client, base: &str, wa_http: &str, name: &str, phone: &str) -> bool {
    let (code, b) = post_json(http, &format!("{base}/{name}/connect"), json!({})).await;
    if code != 200 {
        println!("pair {name}: connect answered {code} {b}");
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let qr = loop {
        if let Some((200, _, b)) = served_json(http, &format!("{base}/{name}/qr")).await
            && let Some(code) = b["code"].as_str()
        {
            break code.to_string();
        }
        if Instant::now() > deadline {
            println!("pair {name}: no QR");
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (code, b) = post_json(
        http,
        &format!("{wa_http}/admin/scan-qr"),
        json!({ "qr": qr, "phone": phone }),
    )
    .await;
    if !(200..300).contains(&code) {
        println!("pair {name}: scan-qr answered {code} {b}");
        return false;
    }
    while Instant::now() < deadline {
        if let Some((200, _, b)) = served_json(http, &format!("{base}/{name}/status")).await
            && b["status"] == "connected"
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("pair {name}: never connected");
    false
}

/// When each message id reached wamock (its tap), as the sends of the failover phase look up.
type Arrivals = Arc<Mutex<std::collections::HashMap<String, Instant>>>;

/// Sends a text through `base` as `name`; once accepted, waits up to `limit` for wamock to have
/// received it and answers when it did.
async fn send_delivered(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    text: &str,
    arrivals: &Arrivals,
    limit: Duration,
) -> Option<Instant> {
    let (code, b) = post_json(
        http,
        &format!("{base}/{name}/message/send/text"),
        json!({ "phone": RECIPIENT, "text": text }),
    )
    .await;
    let id = match (code, b["messageId"].as_str()) {
        (200, Some(id)) => id.to_string(),
        _ => return None,
    };
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Some(at) = arrivals.lock().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Some(*at);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// What a load phase saw: its duration, the latencies (µs) of the 200s, and the rest.
#[derive(Default)]
struct Sample {
    secs: f64,
    lat: Vec<u64>,
    errors: u64,
}

impl Sample {
    fn rps(&self) -> f64 {
        self.lat.len() as f64 / self.secs.max(1e-9)
    }

    fn add(&mut self, other: Sample) {
        self.secs += other.secs;
        self.lat.extend(other.lat);
        self.errors += other.errors;
        self.lat.sort_unstable();
    }
}

/// `concurrency` clients sending `GET url` for `dur`.
async fn load(url: &str, concurrency: usize, dur: Duration) -> Sample {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let until = Instant::now() + dur;
    let lat = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(Mutex::new(0u64));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (http, url, lat, errors) =
                (http.clone(), url.to_string(), lat.clone(), errors.clone());
            tokio::spawn(async move {
                let mut mine = Vec::new();
                let mut errs = 0;
                while Instant::now() < until {
                    let t = Instant::now();
                    match http.get(&url).header("Authorization", KEY).send().await {
                        Ok(r) if r.status() == 200 => {
                            let _ = r.bytes().await;
                            mine.push(t.elapsed().as_micros() as u64);
                        }
                        _ => errs += 1,
                    }
                }
                lat.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
                *errors.lock().unwrap_or_else(|p| p.into_inner()) += errs;
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut *lat.lock().unwrap_or_else(|p| p.into_inner()));
    lat.sort_unstable();
    let errors = *errors.lock().unwrap_or_else(|p| p.into_inner());
    Sample { secs, lat, errors }
}

/// Load on `a` and on `b` in alternating slices (`ROUNDS` of each, `total` per side), so a drift
/// in the machine's speed (a shared VM's neighbours) falls on both sides alike. The CPU that the
/// processes `pids` (the nodes), the load generator and the whole machine spent is added up per
/// side.
async fn alternate(
    a: &str,
    b: &str,
    concurrency: usize,
    total: Duration,
    pids: &[u32],
) -> ((Sample, common::Cpu), (Sample, common::Cpu)) {
    const ROUNDS: u32 = 5;
    let slice = total / ROUNDS;
    let (mut sa, mut sb) = (Sample::default(), Sample::default());
    let (mut ca, mut cb) = (common::Cpu::default(), common::Cpu::default());
    for _ in 0..ROUNDS {
        let before = common::Cpu::read(pids);
        sa.add(load(a, concurrency, slice).await);
        let between = common::Cpu::read(pids);
        sb.add(load(b, concurrency, slice).await);
        let after = common::Cpu::read(pids);
        ca.add(&before.until(&between));
        cb.add(&between.until(&after));
    }
    ((sa, ca), (sb, cb))
}

/// One line of a load phase: throughput, p50/p99 and errors.
fn sample_row(name: &str, s: &Sample) {
    println!(
        "{name:<16} {:>8.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  errors {}",
        s.rps(),
        common::pct_ms(&s.lat, 0.5),
        common::pct_ms(&s.lat, 0.99),
        s.errors
    )
}

/// One line of CPU microseconds per request: each node, the load generator, everything else on
/// the machine (Redis, Postgres, the kernel's share not charged to a process), and the total.
fn cpu_row(name: &str, s: &Sample, cpu: &common::Cpu, ids: &[u64]) {
    let n = s.lat.len();
    let nodes: u64 = cpu.procs.iter().sum();
    let per_node = ids
        .iter()
        .zip(&cpu.procs)
        .map(|(id, t)| format!("node {id} {:>5.1}", common::us_per(*t, n)))
        .collect::<Vec<_>>()
        .join("  ");
    println!(
        "{name:<16} CPU us/request: {per_node}  load generator {:>5.1}  rest {:>5.1}  machine {:>5.1}",
        common::us_per(cpu.me, n),
        common::us_per(cpu.machine.saturating_sub(nodes + cpu.me), n),
        common::us_per(cpu.machine, n),
    );
}

/// `n` nodes on free ports over their own fresh database, formed and settled; `otel`: where
/// they export spans. `None` without Postgres.
async fn cluster_of(
    n: usize,
    a: Args,
    wa: &str,
    otel: Option<String>,
) -> Option<(Cluster, common::FreshPostgres)> {
    let pg = common::FreshPostgres::create().await?;
    let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=http://127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let nodes = ports
        .iter()
        .enumerate()
        .map(|(i, p)| Node {
            id: i as u64 + 1,
            port: *p,
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        })
        .collect();
    let mut c = Cluster {
        nodes,
        peers,
        db: pg.url.clone(),
        wa: wa.to_string(),
        a,
        otel,
    };
    for i in 0..n {
        c.spawn(i);
    }
    let http = reqwest::Client::new();
    assert!(
        c.settled(&http, 1, Duration::from_secs(90)).await,
        "the cluster did not form"
    );
    Some((c, pg))
}

/// A session on `c` and the URL of its status through a node that does not own it.
async fn forwarded_url(http: &reqwest::Client, c: &Cluster, name: &str) -> String {
    let r = http
        .post(format!("{}/sessions", c.nodes[0].base()))
        .header("Authorization", KEY)
        .json(&json!({ "session": name }))
        .send()
        .await
        .expect("create session");
    assert_eq!(r.status(), 201, "create session {name}");
    let (_, owner, _) = served_json(http, &format!("{}/{name}/status", c.nodes[0].base()))
        .await
        .expect("status");
    let owner = owner.expect("x-onwapp-served-by");
    let other = c.nodes.iter().find(|n| n.id != owner).expect("other");
    format!("{}/{name}/status", other.base())
}

/// An OTLP/HTTP traces endpoint that reads each batch and answers success; counts the bytes.
async fn otlp_sink() -> (String, Arc<std::sync::atomic::AtomicU64>) {
    let got = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let seen = got.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let seen = seen.clone();
            async move {
                seen.fetch_add(body.len() as u64, std::sync::atomic::Ordering::Relaxed);
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("sink port");
    let url = format!("http://{}", listener.local_addr().expect("sink address"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// What tracing costs on the forwarded path (see the header).
async fn tracing_cost(a: &Args, wa: &str) {
    let (sink, exported) = otlp_sink().await;
    let Some((off, pg_off)) = cluster_of(2, *a, wa, None).await else {
        eprintln!("cluster bench: no Postgres at TEST_DATABASE_URL; nothing measured");
        return;
    };
    let Some((on, pg_on)) = cluster_of(2, *a, wa, Some(sink)).await else {
        return;
    };
    let http = reqwest::Client::new();
    let (off_url, on_url) = (
        forwarded_url(&http, &off, "plain0").await,
        forwarded_url(&http, &on, "traced0").await,
    );
    let pids: Vec<u32> = off
        .nodes
        .iter()
        .chain(&on.nodes)
        .map(|n| n.child.as_ref().map_or(0, |ch| ch.id()))
        .collect();
    let ids = [1, 2, 1, 2];
    println!(
        "tracing: two clusters of 2 nodes, forwarded GET /{{session}}/status, {} clients, {} s per side",
        a.concurrency, a.seconds
    );
    let secs = Duration::from_secs(a.seconds);
    let ((p, pcpu), (t, tcpu)) = alternate(&off_url, &on_url, a.concurrency, secs, &pids).await;
    sample_row("untraced", &p);
    sample_row("traced", &t);
    // CPU per request: the untraced cluster's nodes are the first two columns, the traced one's
    // the last two.
    cpu_row("untraced", &p, &pcpu, &ids);
    cpu_row("traced", &t, &tcpu, &ids);
    println!(
        "tracing keeps {:.0}% of untraced throughput and adds {:.2} ms at p50; {} KiB of spans exported",
        100.0 * t.rps() / p.rps().max(1.0),
        common::pct_ms(&t.lat, 0.5) - common::pct_ms(&p.lat, 0.5),
        exported.load(std::sync::atomic::Ordering::Relaxed) / 1024
    );
    drop((off, on));
    pg_off.drop_db().await;
    pg_on.drop_db().await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    if std::env::args().any(|x| x == "--tracing") {
        let wa = wamock::Server::start("127.0.0.1:0")
            .await
            .expect("wamock starts");
        tracing_cost(&a, &wa.ws_url()).await;
        return;
    }
    let wa = wamock::Server::start("127.0.0.1:0")
        .await
        .expect("wamock starts");
    let wa_http = wa.http_url();
    let arrivals: Arrivals = Arc::default();
    let mut tap = wa.state().tap_messages();
    let sink = arrivals.clone();
    tokio::spawn(async move {
        while let Some(a) = tap.recv().await {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(a.id, a.at);
        }
    });
    let Some((mut c, pg)) = cluster_of(3, a, &wa.ws_url(), None).await else {
        eprintln!("cluster bench: no Postgres at TEST_DATABASE_URL; nothing measured");
        return;
    };
    let http = reqwest::Client::new();
    println!(
        "3 nodes, lease renew {} ms / TTL {} ms, {} sessions, {} clients, {} s per load phase",
        c.a.renew_ms, c.a.ttl_ms, c.a.sessions, c.a.concurrency, c.a.seconds
    );
    for i in 0..c.a.sessions.max(1) {
        let r = http
            .post(format!("{}/sessions", c.nodes[i % 3].base()))
            .header("Authorization", KEY)
            .json(&json!({ "session": format!("bench{i}") }))
            .send()
            .await
            .expect("create session");
        assert_eq!(r.status(), 201, "create session bench{i}");
    }

    let losses_before = lease_losses(&http, &c).await;

    // 1. Forwarding: the same request served by the owner, and forwarded by another node.
    let (_, owner, _) = served_json(&http, &format!("{}/bench0/status", c.nodes[0].base()))
        .await
        .expect("status");
    let owner = owner.expect("x-onwapp-served-by");
    let local = c
        .nodes
        .iter()
        .find(|n| n.id == owner)
        .expect("owner")
        .base();
    let other = c
        .nodes
        .iter()
        .find(|n| n.id != owner)
        .expect("other")
        .base();
    let (local_url, other_url) = (
        format!("{local}/bench0/status"),
        format!("{other}/bench0/status"),
    );
    let secs = Duration::from_secs(c.a.seconds);
    let pids: Vec<u32> = c
        .nodes
        .iter()
        .map(|n| n.child.as_ref().map_or(0, |ch| ch.id()))
        .collect();
    let ids: Vec<u64> = c.nodes.iter().map(|n| n.id).collect();
    println!("session bench0: owner node {owner}, forwarded through {other}");
    let ((l, lcpu), (f, fcpu)) =
        alternate(&local_url, &other_url, c.a.concurrency, secs, &pids).await;
    let row = sample_row;
    row("local", &l);
    row("forwarded", &f);
    cpu_row("local", &l, &lcpu, &ids);
    cpu_row("forwarded", &f, &fcpu, &ids);
    println!(
        "forwarding adds {:.2} ms at p50 and keeps {:.0}% of local throughput",
        common::pct_ms(&f.lat, 0.5) - common::pct_ms(&l.lat, 0.5),
        100.0 * f.rps() / l.rps().max(1.0)
    );
    // The hop itself, without queueing: one client, one request at a time. (With 16 clients on
    // a saturated box, latency is clients / throughput, whatever one hop costs.)
    let quiet = secs.clamp(Duration::from_secs(1), Duration::from_secs(5));
    let ((l1, _), (f1, _)) = alternate(&local_url, &other_url, 1, quiet, &pids).await;
    row("local, 1 client", &l1);
    row("fwd, 1 client", &f1);
    println!(
        "one client: forwarding adds {:.2} ms at p50, {:.2} ms at p99",
        common::pct_ms(&f1.lat, 0.5) - common::pct_ms(&l1.lat, 0.5),
        common::pct_ms(&f1.lat, 0.99) - common::pct_ms(&l1.lat, 0.99)
    );

    // 2. Moves: drain node 3, then take it back.
    let t = Instant::now();
    let r = http
        .post(format!("{}/admin/drain", c.nodes[2].base()))
        .header("Authorization", KEY)
        .json(&json!({ "timeoutSeconds": 120 }))
        .send()
        .await
        .expect("drain");
    let report: Value = r.json().await.unwrap_or(Value::Null);
    let moved = report["shardsBefore"].as_u64().unwrap_or(0);
    let ms = report["elapsedMs"]
        .as_u64()
        .unwrap_or(t.elapsed().as_millis() as u64)
        .max(1);
    println!(
        "drain: {moved} shards handed off in {ms} ms = {:.0} moves/s (done: {})",
        moved as f64 * 1000.0 / ms as f64,
        report["done"]
    );
    let _ = http
        .post(format!("{}/admin/undrain", c.nodes[2].base()))
        .header("Authorization", KEY)
        .send()
        .await;
    let t = Instant::now();
    let back = c.settled(&http, 250, Duration::from_secs(120)).await;
    println!(
        "undrain: rebalanced in {:.1} s (settled: {back})",
        t.elapsed().as_secs_f64()
    );

    println!(
        "lease losses during the load and the drain: {} (per node before/after: {:?} / {:?})",
        losses_between(&losses_before, &lease_losses(&http, &c).await),
        losses_before,
        lease_losses(&http, &c).await
    );

    // 3. Failover, end to end: kill the owner of a paired session (the Raft leader on even
    //    kills), time until another node serves it, has it connected, and delivered a send.
    let (code, b) = post_json(
        &http,
        &format!("{wa_http}/admin/users"),
        json!({ "phone": RECIPIENT }),
    )
    .await;
    assert!((200..300).contains(&code), "wamock user: {code} {b}");
    let mut paired: Vec<String> = Vec::new();
    let mut unpaired = (0..c.a.sessions.max(1)).map(|i| format!("bench{i}"));
    let mut phones = 0u32;
    let (mut all, mut leader_kills, mut follower_kills) = (Vec::new(), Vec::new(), Vec::new());
    let mut survivor_losses = 0u64;
    for k in 0..c.a.kills {
        let live = c
            .nodes
            .iter()
            .find(|n| n.child.is_some())
            .expect("a live node")
            .base();
        let Some(leader) = get_json(&http, &format!("{live}/admin/cluster"))
            .await
            .and_then(|st| st["leader"].as_u64())
        else {
            println!("kill {k}: no leader known; stopping");
            break;
        };
        let target = if k % 2 == 0 {
            leader
        } else {
            let others: Vec<u64> = c
                .nodes
                .iter()
                .map(|n| n.id)
                .filter(|id| *id != leader)
                .collect();
            others[(k / 2) % others.len()]
        };
        // A paired session the target owns: one paired before, or a new one.
        let mut session = None;
        for name in &paired {
            if let Some((200, Some(by), _)) =
                served_json(&http, &format!("{live}/{name}/status")).await
                && by == target
            {
                session = Some(name.clone());
                break;
            }
        }
        if session.is_none() {
            for name in unpaired.by_ref() {
                if let Some((200, Some(by), _)) =
                    served_json(&http, &format!("{live}/{name}/status")).await
                    && by == target
                {
                    phones += 1;
                    let phone = format!("55119{phones:08}");
                    if pair(&http, &live, &wa_http, &name, &phone).await {
                        paired.push(name.clone());
                        session = Some(name);
                    }
                    break;
                }
            }
        }
        let Some(session) = session else {
            println!("kill {k}: no session of node {target} could be paired; stopping");
            break;
        };
        // Warm: one text before the kill, so what follows measures the failover alone.
        if send_delivered(
            &http,
            &live,
            &session,
            "before the kill",
            &arrivals,
            Duration::from_secs(10),
        )
        .await
        .is_none()
        {
            println!("kill {k}: {session} could not send before the kill; stopping");
            break;
        }
        let i = c.nodes.iter().position(|n| n.id == target).expect("target");
        let others: Vec<String> = c
            .nodes
            .iter()
            .filter(|n| n.id != target)
            .map(Node::base)
            .collect();
        let before = lease_losses(&http, &c).await;
        c.kill(i);
        let killed = Instant::now();
        let (mut moved, mut connected, mut delivered) = (None, None, None);
        let mut polls = 0usize;
        while delivered.is_none()
            && killed.elapsed() < Duration::from_millis(c.a.ttl_ms) + Duration::from_secs(60)
        {
            let via = &others[polls % others.len()];
            polls += 1;
            if let Some((200, Some(by), b)) =
                served_json(&http, &format!("{via}/{session}/status")).await
                && by != target
            {
                moved.get_or_insert(killed.elapsed());
                if b["status"] == "connected" {
                    connected.get_or_insert(killed.elapsed());
                }
                let text = format!("after kill {k}, try {polls}");
                if let Some(at) = send_delivered(
                    &http,
                    via,
                    &session,
                    &text,
                    &arrivals,
                    Duration::from_secs(5),
                )
                .await
                {
                    delivered = Some(at.saturating_duration_since(killed));
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let lost = losses_between(&before, &lease_losses(&http, &c).await);
        survivor_losses += lost;
        let role = if target == leader {
            " (the leader)"
        } else {
            ""
        };
        let secs = |d: Option<Duration>| {
            d.map_or("never".to_string(), |d| format!("{:.2} s", d.as_secs_f64()))
        };
        println!(
            "kill {k}: node {target}{role} killed with {session}: served elsewhere {}, connected {}, a send delivered {}; survivors' lease losses {lost}",
            secs(moved),
            secs(connected),
            secs(delivered)
        );
        match delivered {
            Some(d) => {
                let us = d.as_micros() as u64;
                all.push(us);
                if target == leader {
                    leader_kills.push(us);
                } else {
                    follower_kills.push(us);
                }
            }
            None => println!("kill {k}: the session never sent again; stopping"),
        }
        c.spawn(i);
        if delivered.is_none() || !c.settled(&http, 250, Duration::from_secs(120)).await {
            println!("kill {k}: stopping (no delivery, or no rebalance after the restart)");
            break;
        }
    }
    for v in [&mut all, &mut leader_kills, &mut follower_kills] {
        v.sort_unstable();
    }
    if !all.is_empty() {
        let max = |v: &[u64]| common::pct_ms(v, 1.0) / 1000.0;
        println!(
            "failover end to end over {} kills ({} of the leader): p50 {:.2} s, max {:.2} s (leader max {:.2} s, others max {:.2} s); target every kill under 10 s: {}; survivors' lease losses {survivor_losses}",
            all.len(),
            leader_kills.len(),
            common::pct_ms(&all, 0.5) / 1000.0,
            max(&all),
            max(&leader_kills),
            max(&follower_kills),
            if max(&all) < 10.0 && all.len() == c.a.kills {
                "met"
            } else {
                "missed"
            }
        );
    }
    drop(c);
    wa.stop().await;
    pg.drop_db().await;
}
