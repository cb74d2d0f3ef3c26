//! Webhook delivery survives `kill -9` (issue 6): the real binary is delivering a session's queue
//! to a real receiver when it is killed with SIGKILL; started again on the same database it
//! delivers the rest. Nothing is missing, events arrive in order, and an event that arrives twice
//! (delivered, but killed before its outcome was written) carries the same `X-Webhook-Id` both
//! times.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::HeaderMap, routing::post};
use onwapp::store::{ConnectOptions, connect_uncached, events::NewEvent};
use serde_json::{Value, json};

use crate::helpers::{Db, PgDatabase, eventually};
use crate::process::{post_json, spawn_on};

/// Every request the receiver got: (event number, X-Webhook-Id), in arrival order.
type Log = Arc<Mutex<Vec<(u64, String)>>>;

async fn receiver() -> (Log, String) {
    async fn hook(
        State(log): State<Log>,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> &'static str {
        // Slow enough that the kill lands mid-queue.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        let id = headers
            .get("x-webhook-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        log.lock()
            .unwrap()
            .push((v["n"].as_u64().unwrap_or(u64::MAX), id));
        "ok"
    }
    let log: Log = Arc::default();
    let app = Router::new()
        .route("/hook", post(hook))
        .with_state(log.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (log, url)
}

async fn start(dir: &std::path::Path, database_url: Option<&str>) -> (std::process::Child, String) {
    let mut envs = vec![
        ("WEBHOOK_POLL_MS", "20".to_string()),
        ("WEBHOOK_BASE_DELAY_MS", "20".to_string()),
    ];
    if let Some(url) = database_url {
        envs.push(("DATABASE_URL", url.to_string()));
    }
    spawn_on(dir, &envs).await
}

async fn kill_9_mid_delivery(db: Db) {
    const EVENTS: u64 = 400;
    let pg = match db {
        Db::Postgres => match PgDatabase::create().await {
            Some(pg) => Some(pg),
            None => return,
        },
        Db::Sqlite => None,
    };
    let dir = tempfile::tempdir().unwrap();
    let db_url = match &pg {
        Some(p) => p.url.clone(),
        None => format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("onwapp.db").display()
        ),
    };
    let (log, hook) = receiver().await;
    let (mut child, base) = start(dir.path(), pg.as_ref().map(|p| p.url.as_str())).await;
    let (code, b) = post_json(format!("{base}/sessions"), json!({"session": "hook9"})).await;
    assert_eq!(code, 201, "{b}");
    let (code, b) = post_json(
        format!("{base}/hook9/webhook"),
        json!({"url": hook, "events": ["message.received"]}),
    )
    .await;
    assert_eq!(code, 200, "{b}");

    // The events, written to the binary's database the way its engine writes them: one
    // transaction each, outbox row included.
    let store = connect_uncached(&ConnectOptions {
        url: db_url,
        max_connections: 2,
    })
    .await
    .unwrap();
    let session = store.get_session("hook9").await.unwrap().unwrap().id;
    for n in 0..EVENTS {
        store
            .record_events(
                session,
                &[NewEvent {
                    name: "message.received",
                    payload: json!({"event": "message.received", "sessionId": "hook9", "n": n}),
                }],
            )
            .await
            .unwrap();
    }

    // SIGKILL once a quarter has arrived: no shutdown, outcomes in flight are lost.
    let deadline = Instant::now() + Duration::from_secs(30);
    while log.lock().unwrap().len() < (EVENTS / 4) as usize {
        assert!(Instant::now() < deadline, "delivery never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let at_kill = log.lock().unwrap().len();
    assert!(
        at_kill < EVENTS as usize,
        "everything arrived before the kill"
    );

    let (mut child, _base) = start(dir.path(), pg.as_ref().map(|p| p.url.as_str())).await;
    let complete = eventually(Duration::from_secs(30), || {
        let log = log.clone();
        async move {
            let got: std::collections::HashSet<u64> =
                log.lock().unwrap().iter().map(|(n, _)| *n).collect();
            got.len() as u64 == EVENTS
        }
    })
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    let log = log.lock().unwrap().clone();
    assert!(
        complete,
        "events missing after the restart: {} of {EVENTS} arrived",
        {
            let got: std::collections::HashSet<u64> = log.iter().map(|(n, _)| *n).collect();
            got.len()
        }
    );

    // Nothing unknown, every number once or with one id; first arrivals in order.
    let mut ids: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for (n, id) in &log {
        assert!(*n < EVENTS, "unexpected event {n}");
        ids.entry(*n).or_default().push(id.clone());
    }
    let mut owners: HashMap<&str, u64> = HashMap::new();
    for (n, list) in &ids {
        assert!(
            list.iter().all(|id| id == &list[0]),
            "event {n} arrived with different ids: {list:?}"
        );
        assert_eq!(
            owners.insert(list[0].as_str(), *n),
            None,
            "one id, two events"
        );
    }
    let mut first_seen = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, _) in &log {
        if seen.insert(*n) {
            first_seen.push(*n);
        }
    }
    assert_eq!(first_seen, (0..EVENTS).collect::<Vec<_>>(), "out of order");
    let dups = log.len() - EVENTS as usize;
    eprintln!("kill -9 after {at_kill} deliveries: {dups} delivered again, same X-Webhook-Id");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_nothing_on_sqlite() {
    kill_9_mid_delivery(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_nothing_on_postgres() {
    kill_9_mid_delivery(Db::Postgres).await;
}
