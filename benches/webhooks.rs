//! Webhook delivery benchmark: events per second delivered from one node on Postgres to a local
//! receiver, and the latency from enqueue (the event's transaction committed) to delivery.
//!
//! `cargo bench --bench webhooks -- [--sessions 100] [--rate 5000] [--seconds 20] [--workers 16]`
//!
//! One process holds the real `App` on a fresh Postgres database (from `TEST_DATABASE_URL`,
//! created and dropped), with its delivery workers, and a hyper receiver on loopback that answers
//! 200 and records when each event arrived. `--sessions` sessions are created and given a webhook
//! through the HTTP API; one producer per session then appends `message.received`-sized events
//! through `EventStore::record_events`, one call per event and each awaited before the next, as
//! the engine records outbox-only events (the store group-commits concurrent calls), spread over
//! the sessions at `--rate` events per second. The run reports the sustained delivery rate over the producing
//! window, the enqueue → delivery latency percentiles, and checks that every event arrived once,
//! in order per session.

use std::{
    collections::HashMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use onwapp::{app::App, config::Config, store::events::NewEvent};
use tokio::net::TcpListener;

mod common;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "bench-global-key-0123456789";

struct Args {
    sessions: usize,
    rate: u64,
    seconds: u64,
    workers: usize,
}

fn args() -> Args {
    Args {
        sessions: common::flag("--sessions").map_or(100, |n| n as usize),
        rate: common::flag("--rate").unwrap_or(5000),
        seconds: common::flag("--seconds").unwrap_or(20),
        workers: common::flag("--workers").map_or(16, |n| n as usize),
    }
}

/// What the receiver saw: per session the sequence numbers in arrival order, and latencies.
#[derive(Default)]
struct Seen {
    by_session: HashMap<u64, Vec<u64>>,
    latencies_us: Vec<u64>,
    arrivals: Vec<Duration>,
    ids: HashMap<String, u32>,
}

async fn receiver(start: Instant, seen: Arc<Mutex<Seen>>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let seen = seen.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let id = req
                            .headers()
                            .get("x-webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let now = start.elapsed();
                        if let Ok(body) = body
                            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body)
                        {
                            let s = v["bench"]["session"].as_u64().unwrap_or(u64::MAX);
                            let seq = v["bench"]["seq"].as_u64().unwrap_or(u64::MAX);
                            let enq = v["bench"]["enqueuedUs"].as_u64().unwrap_or(0);
                            let mut g = seen.lock().unwrap_or_else(|p| p.into_inner());
                            g.by_session.entry(s).or_default().push(seq);
                            g.latencies_us
                                .push((now.as_micros() as u64).saturating_sub(enq));
                            g.arrivals.push(now);
                            *g.ids.entry(id).or_default() += 1;
                        }
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let a = args();
    let Some(pg) = common::FreshPostgres::create().await else {
        eprintln!("webhooks bench: no Postgres at TEST_DATABASE_URL; nothing measured");
        return;
    };
    let start = Instant::now();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let hook = receiver(start, seen.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        database_url: Some(pg.url.clone()),
        global_api_key: Some(KEY.into()),
        rate_limit_per_second: 10_000_000,
        rate_limit_burst: 10_000_000,
        log_level: "error".into(),
        // Four connections per worker: one holds the claim, one records outcomes, the rest
        // serve the producers and the API.
        db_max_connections: (a.workers * 4).max(16) as u32,
        ..Config::default()
    };
    config.webhooks.workers = a.workers;
    // The receiver listens on loopback.
    config.webhooks.allow_private_urls = true;
    let app = App::build(config).await.expect("app");
    let store = app.state.store.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let api = listener.local_addr().expect("addr");
    tokio::spawn(app.serve(listener, std::future::pending()));

    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for i in 0..a.sessions {
        let r = http
            .post(format!("http://{api}/sessions"))
            .header("Authorization", KEY)
            .body(format!(r#"{{"session":"bench{i}"}}"#))
            .send()
            .await
            .expect("create session");
        assert_eq!(r.status(), 201, "create session");
        let r = http
            .post(format!("http://{api}/bench{i}/webhook"))
            .header("Authorization", KEY)
            .body(format!(r#"{{"url":"http://{hook}/hook","events":[]}}"#))
            .send()
            .await
            .expect("set webhook");
        assert!(r.status().is_success(), "set webhook: {}", r.status());
        let rec = store
            .get_session(&format!("bench{i}"))
            .await
            .expect("store")
            .expect("session");
        ids.push(rec.id);
    }

    // Producers: one task per session, as the engine has one per connected session, each
    // pacing its share of the rate and waiting for each write before the next.
    let producers = a.sessions;
    let total = a.rate * a.seconds;
    let t0 = Instant::now();
    let produce_start = start.elapsed();
    let mut tasks = Vec::new();
    for p in 0..producers {
        let store = store.clone();
        let ids = ids.clone();
        let rate = a.rate as f64 / producers as f64;
        let n = total / producers as u64;
        let sessions = a.sessions;
        tasks.push(tokio::spawn(async move {
            let mut seqs = vec![0u64; sessions];
            let mut sent = 0u64;
            let mut writes = Vec::new();
            let mut s = p;
            while sent < n {
                let due = t0 + Duration::from_secs_f64(sent as f64 / rate);
                tokio::time::sleep_until(due.into()).await;
                let seq = seqs[s];
                seqs[s] += 1;
                let ev = NewEvent {
                    name: "message.received",
                    payload: serde_json::json!({
                        "event": "message.received",
                        "sessionId": format!("bench{s}"),
                        "Info": {"Chat": "5511999990000@s.whatsapp.net", "Sender": "5511999990000@s.whatsapp.net",
                                 "IsFromMe": false, "IsGroup": false, "ID": format!("3EB0{seq:016X}"),
                                 "PushName": "Bench", "Type": "text"},
                        "Message": {"conversation": "a benchmark message of ordinary length, about sixty bytes"},
                        "bench": {"session": s, "seq": seq, "enqueuedUs": start.elapsed().as_micros() as u64},
                    }),
                };
                let t = Instant::now();
                if let Err(e) = store.record_events(ids[s], &[ev]).await {
                    eprintln!("append failed: {e}");
                }
                writes.push(t.elapsed().as_micros() as u64);
                sent += 1;
                s += producers;
                if s >= sessions {
                    s = p;
                }
            }
            (sent, writes)
        }));
    }
    let mut produced = 0u64;
    let mut writes = Vec::new();
    for t in tasks {
        let (sent, w) = t.await.unwrap_or_default();
        produced += sent;
        writes.extend(w);
    }
    writes.sort_unstable();
    let produce_secs = t0.elapsed().as_secs_f64();
    let produce_end = start.elapsed();
    // Let the queue drain (bounded).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got = seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .latencies_us
            .len() as u64;
        if got >= produced || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    {
        let g = seen.lock().unwrap_or_else(|p| p.into_inner());
        let in_window = g
            .arrivals
            .iter()
            .filter(|t| **t >= produce_start && **t <= produce_end)
            .count();
        let mut lat = g.latencies_us.clone();
        lat.sort_unstable();
        let mut out_of_order = 0;
        for seqs in g.by_session.values() {
            out_of_order += seqs.windows(2).filter(|w| w[1] <= w[0]).count();
        }
        let dups = g.ids.values().filter(|n| **n > 1).count();
        let received = g.latencies_us.len();
        let drained = g.arrivals.iter().max().copied().unwrap_or_default();
        println!(
            "sessions {} workers {} offered {:.0} ev/s for {:.1} s: produced {produced}, received {received}, \
             duplicates {dups}, out of order {out_of_order}",
            a.sessions,
            a.workers,
            produced as f64 / produce_secs,
            produce_secs
        );
        println!(
            "delivered during the producing window: {:.0} ev/s; last event delivered {:.2} s after producing ended",
            in_window as f64 / produce_secs,
            drained.saturating_sub(produce_end).as_secs_f64()
        );
        println!(
            "record_events (the producer's write, group-committed): p50 {:.1} ms, p99 {:.1} ms",
            common::pct_ms(&writes, 0.50),
            common::pct_ms(&writes, 0.99)
        );
        println!(
            "enqueue -> delivery: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            common::pct_ms(&lat, 0.50),
            common::pct_ms(&lat, 0.90),
            common::pct_ms(&lat, 0.99),
            common::pct_ms(&lat, 1.0)
        );
    }
    pg.drop_db().await;
}
