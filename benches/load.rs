//! Load benchmark: requests/s and p50/p99 latency of `GET /health` and of an authenticated,
//! rate-limited `GET /:session/status`, on SQLite and on Postgres, beside a bare hyper server
//! answering a constant (the ceiling), all in one run on this machine.
//!
//! `cargo bench --bench load -- [--seconds 5] [--rounds 3] [--connections 32]`
//! Postgres is taken from `TEST_DATABASE_URL` (a fresh database is created and dropped).

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response, body::Bytes, service::service_fn};
use hyper_util::rt::TokioIo;
use onwapp::{app::App, config::Config};
use tokio::net::{TcpListener, TcpStream};

mod common;

/// The allocator of the `onwapp` binary, so the servers here run as they do there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "bench-global-key-0123456789";

struct Args {
    seconds: u64,
    connections: usize,
    rounds: usize,
}

fn args() -> Args {
    Args {
        seconds: common::flag("--seconds").unwrap_or(5),
        connections: common::flag("--connections").map_or(32, |n| n as usize),
        rounds: common::flag("--rounds").map_or(3, |n| n as usize).max(1),
    }
}

/// The ceiling: hyper answering a constant JSON body.
async fn bare_hyper() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            tokio::spawn(async move {
                let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(br#"{"status":"healthy"}"#)))
                            .unwrap(),
                    )
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn onwapp(database_url: Option<String>, dir: &std::path::Path) -> SocketAddr {
    let config = Config {
        data_dir: dir.to_path_buf(),
        database_url,
        global_api_key: Some(KEY.into()),
        // The limiter runs on every request but never refuses: we measure its cost, not its effect.
        rate_limit_per_second: 10_000_000,
        rate_limit_burst: 10_000_000,
        log_level: "error".into(),
        ..Config::default()
    };
    let app = App::build(config).await.expect("app");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(app.serve(listener, std::future::pending()));
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/sessions"))
        .header("Authorization", KEY)
        .body(r#"{"session":"bench"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    addr
}

struct Outcome {
    rps: f64,
    p50_us: u64,
    p99_us: u64,
    errors: u64,
}

/// `connections` keep-alive HTTP/1.1 connections, each sending requests back to back.
async fn load(
    addr: SocketAddr,
    path: &'static str,
    auth: bool,
    seconds: u64,
    connections: usize,
) -> Outcome {
    let run = |dur: Duration| async move {
        let deadline = Instant::now() + dur;
        let mut tasks = Vec::new();
        for _ in 0..connections {
            tasks.push(tokio::spawn(async move {
                let stream = TcpStream::connect(addr).await.unwrap();
                stream.set_nodelay(true).unwrap();
                let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                    .await
                    .unwrap();
                tokio::spawn(conn);
                let mut lat = Vec::with_capacity(100_000);
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let mut req = Request::get(path).header("host", "bench");
                    if auth {
                        req = req.header("authorization", KEY);
                    }
                    let req = req.body(Empty::<Bytes>::new()).unwrap();
                    let t = Instant::now();
                    match tx.send_request(req).await {
                        Ok(resp) => {
                            let ok = resp.status().is_success();
                            let _ = resp.into_body().collect().await;
                            if ok {
                                lat.push(t.elapsed().as_micros() as u32);
                            } else {
                                errors += 1;
                            }
                        }
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
                (lat, errors)
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for t in tasks {
            let (l, e) = t.await.unwrap();
            all.extend(l);
            errors += e;
        }
        (all, errors)
    };
    let _ = run(Duration::from_secs(1)).await; // warm-up
    let start = Instant::now();
    let (mut lat, errors) = run(Duration::from_secs(seconds)).await;
    let elapsed = start.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as u64
    };
    Outcome {
        rps: lat.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
        errors,
    }
}

fn main() {
    let a = args();
    // Servers and load generator share the machine's cores, as they would behind a local proxy.
    let servers = Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    );
    let client = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ceiling = servers.block_on(async { bare_hyper().await });
    let sqlite = servers.block_on(onwapp(None, dir.path()));
    let pg = servers.block_on(common::FreshPostgres::create());
    let postgres = pg
        .as_ref()
        .map(|pg| servers.block_on(onwapp(Some(pg.url.clone()), dir.path())));

    let mut targets: Vec<(&str, SocketAddr, &'static str, bool)> = vec![
        ("bare hyper, constant (ceiling)", ceiling, "/", false),
        ("GET /health, SQLite", sqlite, "/health", false),
        (
            "GET /bench/status (auth + rate limit), SQLite",
            sqlite,
            "/bench/status",
            true,
        ),
    ];
    if let Some(pg_addr) = postgres {
        targets.push(("GET /health, Postgres", pg_addr, "/health", false));
        targets.push((
            "GET /bench/status (auth + rate limit), Postgres",
            pg_addr,
            "/bench/status",
            true,
        ));
    } else {
        eprintln!("Postgres unreachable at TEST_DATABASE_URL: its rows are skipped");
    }
    // Rounds interleave the targets so that drift in the machine's speed hits all of them alike;
    // each row reports its median round.
    let mut results: Vec<Vec<Outcome>> = targets.iter().map(|_| Vec::new()).collect();
    for round in 0..a.rounds {
        for (i, (name, addr, path, auth)) in targets.iter().enumerate() {
            let o = client.block_on(load(*addr, path, *auth, a.seconds, a.connections));
            eprintln!("round {round}: {name}: {:.0} req/s", o.rps);
            results[i].push(o);
        }
    }
    let median = |v: &mut Vec<Outcome>| {
        v.sort_by(|x, y| x.rps.total_cmp(&y.rps));
        v.remove(v.len() / 2)
    };
    let rows: Vec<(&str, Outcome)> = targets
        .iter()
        .zip(results.iter_mut())
        .map(|((name, ..), r)| (*name, median(r)))
        .collect();
    let ceiling_rps = rows[0].1.rps;
    println!(
        "\n{} rounds of {} s per target (after 1 s warm-up each), median round shown; {} keep-alive connections; load generator in the same process (2 threads) as the servers (2 threads).\n",
        a.rounds, a.seconds, a.connections
    );
    println!("| target | req/s | % of ceiling | p50 | p99 | errors |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, o) in &rows {
        println!(
            "| {name} | {:.0} | {:.0}% | {:.2} ms | {:.2} ms | {} |",
            o.rps,
            100.0 * o.rps / ceiling_rps,
            o.p50_us as f64 / 1000.0,
            o.p99_us as f64 / 1000.0,
            o.errors
        );
    }
    if let Some(pg) = pg {
        client.block_on(pg.drop_db());
    }
    drop(servers);
}
