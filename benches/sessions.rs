//! Sessions benchmark against wamock, with the real `onwapp` binary in its own process:
//!
//! 1. **Memory**: N sessions paired by QR through the HTTP API and left idle; the resident
//!    memory (`VmRSS`) of the onwapp process before and after, per connected session.
//! 2. **Sends**: texts through `POST /:session/message/send/text` spread round-robin over the
//!    first 100 sessions, to simulated users; throughput, and p50/p99 latency from the HTTP
//!    request to the HTTP answer and to the moment wamock received the encrypted message.
//!
//! 3. **Received** (`--inbound`, instead of 1 and 2): the price of the inbound durability hook.
//!    Two onwapp processes one after the other, the first acknowledging messages before storing
//!    them (`BENCH_ACK_BEFORE_STORE=1`, as without the hook), the second with the hook. Each
//!    pairs `--sessions` sessions (default 4 here); while they are disconnected, 4 simulated
//!    users queue `--messages` texts (default 2000) for each on wamock; then every session
//!    connects at once and takes its backlog. Messages stored per second, per session and per
//!    node, and CPU per message, side by side.
//!
//! `cargo bench --bench sessions --features wamock -- [--sessions 300] [--sends 3000]
//!  [--concurrency 32] [--postgres]`
//! `cargo bench --bench sessions --features wamock -- --inbound [--sessions 4]
//!  [--messages 2000] [--postgres]`
//!
//! wamock (and its simulated users, real whatsapp-rust clients) run in this process; onwapp is
//! the binary cargo built for the bench, so its memory is its own. Postgres comes from
//! `TEST_DATABASE_URL` (a fresh database is created and dropped).

use std::{
    collections::HashMap,
    net::TcpListener,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

const KEY: &str = "bench-global-key-0123456789";

struct Args {
    sessions: usize,
    sends: usize,
    concurrency: usize,
    postgres: bool,
    inbound: bool,
    messages: usize,
}

fn args() -> Args {
    let mut a = Args {
        sessions: 300,
        sends: 3000,
        concurrency: 32,
        postgres: false,
        inbound: false,
        messages: 2000,
    };
    let mut sessions_given = false;
    let v: Vec<String> = std::env::args().collect();
    let num = |i: usize, d: usize| v.get(i + 1).and_then(|s| s.parse().ok()).unwrap_or(d);
    for (i, arg) in v.iter().enumerate() {
        match arg.as_str() {
            "--sessions" => {
                a.sessions = num(i, a.sessions).max(1);
                sessions_given = true;
            }
            "--inbound" => a.inbound = true,
            "--messages" => a.messages = num(i, a.messages).max(4),
            "--sends" => a.sends = num(i, a.sends),
            "--concurrency" => a.concurrency = num(i, a.concurrency).max(1),
            "--postgres" => a.postgres = true,
            _ => {}
        }
    }
    if a.inbound && !sessions_given {
        a.sessions = 4;
    }
    a
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the state field.
    let hz = 100; // USER_HZ on Linux
    Duration::from_millis((ticks(11) + ticks(12)) * 1000 / hz)
}

struct Onwapp {
    child: Child,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl Drop for Onwapp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Onwapp {
    async fn start(ws_url: &str, database_url: Option<&str>) -> Onwapp {
        Self::start_with(ws_url, database_url, &[]).await
    }

    async fn start_with(ws_url: &str, database_url: Option<&str>, envs: &[(&str, &str)]) -> Onwapp {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onwapp"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("DATA_DIR", dir.path())
            .env("GLOBAL_API_KEY", KEY)
            .env("WHATSAPP_SERVER_URL", ws_url)
            .env("RATE_LIMIT_PER_SECOND", "1000000")
            .env("RATE_LIMIT_BURST", "1000000")
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if let Some(url) = database_url {
            cmd.env("DATABASE_URL", url);
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("onwapp starts");
        let app = Onwapp {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .expect("client"),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while app.get("/health").await.0 != 200 {
            assert!(Instant::now() < deadline, "onwapp did not come up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        app
    }

    async fn call(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        match req.header("Authorization", KEY).send().await {
            Ok(r) => {
                let code = r.status().as_u16();
                (code, r.json().await.unwrap_or(Value::Null))
            }
            Err(_) => (0, Value::Null),
        }
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.call(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(self.http.post(format!("{}{path}", self.base)).json(&body))
            .await
    }

    /// Creates `name`, connects it, scans its QR on wamock as `phone`, waits until connected.
    async fn pair(&self, wa: &str, name: &str, phone: &str) {
        let (code, body) = self.post("/sessions", json!({ "session": name })).await;
        assert_eq!(code, 201, "create {name}: {body}");
        let (code, body) = self.post(&format!("/{name}/connect"), json!({})).await;
        assert_eq!(code, 200, "connect {name}: {body}");
        let deadline = Instant::now() + Duration::from_secs(60);
        let qr = loop {
            let (_, b) = self.get(&format!("/{name}/qr")).await;
            if let Some(c) = b["code"].as_str() {
                break c.to_string();
            }
            assert!(Instant::now() < deadline, "{name}: no QR");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let r = self
            .http
            .post(format!("{wa}/admin/scan-qr"))
            .json(&json!({ "qr": qr, "phone": phone }))
            .send()
            .await
            .expect("scan-qr");
        assert!(r.status().is_success(), "scan-qr {name}");
        loop {
            let (_, b) = self.get(&format!("/{name}/status")).await;
            if b["status"] == "connected" {
                break;
            }
            assert!(Instant::now() < deadline, "{name} never connected: {b}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A fresh Postgres database for the run, dropped afterwards.
struct PgDb {
    admin: String,
    name: String,
    url: String,
}

impl PgDb {
    async fn create() -> PgDb {
        use sqlx::Connection;
        let admin = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let name = format!("onwapp_bench_{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .expect("Postgres at TEST_DATABASE_URL");
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        PgDb { admin, name, url }
    }

    async fn drop_db(self) {
        use sqlx::Connection;
        if let Ok(mut conn) = sqlx::PgConnection::connect(&self.admin).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await;
        }
    }
}

#[tokio::main]
async fn main() {
    let a = args();
    let wa = wamock::Server::start("127.0.0.1:0")
        .await
        .expect("wamock starts");
    let wa_http = wa.http_url();
    let pg = if a.postgres {
        Some(PgDb::create().await)
    } else {
        None
    };
    if a.inbound {
        inbound(&a, &wa, pg.as_ref().map(|p| p.url.as_str())).await;
        wa.stop().await;
        if let Some(pg) = pg {
            pg.drop_db().await;
        }
        return;
    }
    let app = Arc::new(Onwapp::start(&wa.ws_url(), pg.as_ref().map(|p| p.url.as_str())).await);
    let pid = app.child.id();
    let db = if a.postgres { "Postgres" } else { "SQLite" };
    println!("onwapp pid {pid} on {db}; wamock at {}", wa.addr());

    // One session paired and idle first, so start-up costs (pools, TLS, the first client's
    // code pages) are in the baseline, not in the per-session figure.
    app.pair(&wa_http, "s0", "5511900000000").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let base_kib = rss_kib(pid);

    // -- 1. sessions per node --------------------------------------------------------------
    let started = Instant::now();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(1));
    let mut pairing = Vec::new();
    for _ in 0..8 {
        let (app, next, wa_http, n) = (app.clone(), next.clone(), wa_http.clone(), a.sessions);
        pairing.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    break;
                }
                app.pair(&wa_http, &format!("s{i}"), &format!("55119{i:08}"))
                    .await;
            }
        }));
    }
    for p in pairing {
        p.await.expect("pairing task");
    }
    let pair_secs = started.elapsed().as_secs_f64();
    let live = wa.devices().iter().filter(|d| d.connected).count();
    println!(
        "paired {} sessions in {pair_secs:.1} s; wamock sees {live} connected devices",
        a.sessions
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    let full_kib = rss_kib(pid);
    let per_session = (full_kib.saturating_sub(base_kib)) as f64 / (a.sessions - 1).max(1) as f64;
    println!(
        "RSS: {:.1} MiB with 1 session, {:.1} MiB with {} idle connected sessions: {:.0} KiB per session",
        base_kib as f64 / 1024.0,
        full_kib as f64 / 1024.0,
        a.sessions,
        per_session
    );

    // -- 2. sends over 100 sessions -------------------------------------------------------
    let senders = a.sessions.min(100);
    let users: Vec<String> = (0..4).map(|i| format!("55219{i:08}")).collect();
    for u in &users {
        let r = app
            .http
            .post(format!("{wa_http}/admin/users"))
            .json(&json!({ "phone": u }))
            .send()
            .await
            .expect("user");
        assert!(r.status().is_success(), "user {u}");
    }
    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let mut tap = wa.state().tap_messages();
    let sink = arrivals.clone();
    tokio::spawn(async move {
        while let Some(a) = tap.recv().await {
            if let Ok(mut m) = sink.lock() {
                m.insert(a.id, a.at);
            }
        }
    });
    // Warm-up: one text per sender, so Signal sessions and device lists exist.
    for i in 0..senders {
        let (code, b) = app
            .post(
                &format!("/s{i}/message/send/text"),
                json!({ "phone": users[i % users.len()], "text": "warm-up" }),
            )
            .await;
        assert_eq!(code, 200, "warm-up s{i}: {b}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;

    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let results: Arc<Mutex<Vec<(String, Instant, Duration)>>> = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..a.concurrency {
        let (app, next, results, errors, users, total) = (
            app.clone(),
            next.clone(),
            results.clone(),
            errors.clone(),
            users.clone(),
            a.sends,
        );
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let session = i % senders;
                let to = &users[session % users.len()];
                let t0 = Instant::now();
                let (code, b) = app
                    .post(
                        &format!("/s{session}/message/send/text"),
                        json!({ "phone": to, "text": format!("bench {i}") }),
                    )
                    .await;
                let took = t0.elapsed();
                match (code, b["messageId"].as_str()) {
                    (200, Some(id)) => {
                        if let Ok(mut r) = results.lock() {
                            r.push((id.to_string(), t0, took));
                        }
                    }
                    _ => {
                        errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for w in workers {
        w.await.expect("sender");
    }
    let elapsed = started.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let results = results.lock().map(|r| r.clone()).unwrap_or_default();
    let arrivals = arrivals.lock().map(|m| m.clone()).unwrap_or_default();
    let mut http: Vec<Duration> = results.iter().map(|r| r.2).collect();
    let mut to_wamock: Vec<Duration> = results
        .iter()
        .filter_map(|(id, t0, _)| arrivals.get(id).map(|at| at.saturating_duration_since(*t0)))
        .collect();
    http.sort();
    to_wamock.sort();
    println!(
        "sends: {} ok, {} errors, {} seen by wamock, in {:.2} s over {senders} sessions with {} in flight: {:.0} texts/s",
        results.len(),
        errors.load(std::sync::atomic::Ordering::Relaxed),
        to_wamock.len(),
        elapsed.as_secs_f64(),
        a.concurrency,
        results.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency request -> HTTP answer: p50 {} p99 {}; request -> wamock received: p50 {} p99 {}",
        ms(percentile(&http, 0.50)),
        ms(percentile(&http, 0.99)),
        ms(percentile(&to_wamock, 0.50)),
        ms(percentile(&to_wamock, 0.99)),
    );
    println!(
        "onwapp used {:.2} s of CPU for them: {:.2} ms per send ({:.0}% of one core)",
        cpu.as_secs_f64(),
        cpu.as_secs_f64() * 1000.0 / results.len().max(1) as f64,
        cpu.as_secs_f64() * 100.0 / elapsed.as_secs_f64()
    );
    let after_kib = rss_kib(pid);
    println!("RSS after the sends: {:.1} MiB", after_kib as f64 / 1024.0);

    drop(Arc::try_unwrap(app).ok());
    wa.stop().await;
    if let Some(pg) = pg {
        pg.drop_db().await;
    }
}

/// The users that write to the sessions in the received-messages phase.
const INBOUND_USERS: usize = 4;

/// Received messages stored so far by session `name`: the unread counts of its chats.
async fn unread(app: &Onwapp, name: &str) -> u64 {
    let (_, b) = app.get(&format!("/{name}/chat/list?limit=100")).await;
    b.as_array()
        .map(|chats| chats.iter().filter_map(|c| c["unreadCount"].as_u64()).sum())
        .unwrap_or(0)
}

/// What one process did with its backlog.
struct Drained {
    /// Per session, from the connects to its last message stored.
    per_session: Vec<Duration>,
    all: Duration,
    cpu: Duration,
}

/// Phase 3 for one process: pair, queue a backlog while disconnected, connect, time the drain.
async fn drain_once(
    a: &Args,
    wa: &wamock::Server,
    db: Option<&str>,
    envs: &[(&str, &str)],
    phones: usize,
    users: &[String],
) -> Drained {
    let app = Onwapp::start_with(&wa.ws_url(), db, envs).await;
    let http = wa.http_url();
    let pid = app.child.id();
    let names: Vec<String> = (0..a.sessions)
        .map(|i| format!("r{}", phones + i))
        .collect();
    let jids: Vec<String> = (0..a.sessions)
        .map(|i| format!("55318{:07}", phones + i))
        .collect();
    for (name, phone) in names.iter().zip(&jids) {
        app.pair(&http, name, phone).await;
    }
    eprintln!("  {} sessions paired", names.len());
    let send = |user: String, to: String, text: String| {
        let c = app.http.clone();
        let url = format!("{http}/admin/users/{user}/send");
        async move {
            for attempt in 0..5 {
                let r = c
                    .post(&url)
                    .json(&json!({ "to": to, "text": text }))
                    .send()
                    .await;
                if r.is_ok_and(|r| r.status().is_success()) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
            panic!("{user} could not send to {to}");
        }
    };
    // Warm-up: a text from every user to every session, so Signal sessions exist.
    for u in users {
        for j in &jids {
            send(u.clone(), j.clone(), "warm-up".into()).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in &names {
        while unread(&app, name).await < users.len() as u64 {
            assert!(Instant::now() < deadline, "{name}: warm-up not stored");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    eprintln!("  warm-up stored");
    for name in &names {
        let (code, b) = app.post(&format!("/{name}/disconnect"), json!({})).await;
        assert_eq!(code, 200, "disconnect {name}: {b}");
    }
    // The backlog: every user writes its share to every session, users side by side.
    let per_user = a.messages / users.len();
    let total = per_user * users.len();
    let queued = futures_util::future::join_all(users.iter().map(|u| {
        let jids = jids.clone();
        let send = &send;
        async move {
            for i in 0..per_user {
                for j in &jids {
                    send(u.clone(), j.clone(), format!("backlog {i}")).await;
                }
            }
        }
    }));
    queued.await;
    eprintln!("  backlog sent");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let unacked: usize = wa
            .devices()
            .iter()
            .filter(|d| jids.iter().any(|j| d.jid.starts_with(j.as_str())))
            .map(|d| d.unacked)
            .sum();
        if unacked >= total * jids.len() {
            break;
        }
        assert!(Instant::now() < deadline, "wamock queued only {unacked}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("  backlog queued on wamock");
    let want = (total + users.len()) as u64;
    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    for name in &names {
        let (code, b) = app.post(&format!("/{name}/connect"), json!({})).await;
        assert_eq!(code, 200, "connect {name}: {b}");
    }
    let mut per_session = vec![None; names.len()];
    let deadline = started + Duration::from_secs(600);
    while per_session.iter().any(Option::is_none) {
        for (i, name) in names.iter().enumerate() {
            if per_session[i].is_none() && unread(&app, name).await >= want {
                per_session[i] = Some(started.elapsed());
            }
        }
        assert!(Instant::now() < deadline, "the backlog was not stored");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all = started.elapsed();
    let cpu = cpu_time(pid).saturating_sub(cpu_before);
    Drained {
        per_session: per_session.into_iter().flatten().collect(),
        all,
        cpu,
    }
}

async fn inbound(a: &Args, wa: &wamock::Server, db: Option<&str>) {
    let http = wa.http_url();
    let users: Vec<String> = (0..INBOUND_USERS).map(|i| format!("55319{i:08}")).collect();
    let client = reqwest::Client::new();
    for u in &users {
        let r = client
            .post(format!("{http}/admin/users"))
            .json(&json!({ "phone": u }))
            .send()
            .await
            .expect("user");
        assert!(r.status().is_success(), "user {u}");
    }
    let runs = [
        (
            "ack before storing (no hook)",
            vec![("BENCH_ACK_BEFORE_STORE", "1")],
        ),
        ("stored, then acknowledged (hook)", vec![]),
    ];
    let mut rates = Vec::new();
    for (k, (label, envs)) in runs.iter().enumerate() {
        let d = drain_once(a, wa, db, envs, k * 1000, &users).await;
        let per = (a.messages / users.len() * users.len()) as f64;
        let node = per * a.sessions as f64 / d.all.as_secs_f64();
        let mut each: Vec<f64> = d
            .per_session
            .iter()
            .map(|t| per / t.as_secs_f64())
            .collect();
        each.sort_by(f64::total_cmp);
        let median = each.get(each.len() / 2).copied().unwrap_or(0.0);
        println!(
            "{label}: {} sessions took {per:.0} queued texts each in {:.2} s: {node:.0} msg/s per node, \
             {median:.0} msg/s per session (median; slowest {:.0}), {:.3} ms CPU per message",
            a.sessions,
            d.all.as_secs_f64(),
            each.first().copied().unwrap_or(0.0),
            d.cpu.as_secs_f64() * 1000.0 / (per * a.sessions as f64),
        );
        rates.push(node);
    }
    if let [before, after] = rates[..] {
        println!(
            "the hook keeps {:.0}% of the received-message throughput",
            after * 100.0 / before
        );
    }
}
