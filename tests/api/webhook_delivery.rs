//! Webhook delivery (issue 6): a real receiver on loopback, a real database, the outbox filled
//! through the store (as the engine does) and drained by `Dispatcher::run_once` step by step, or
//! by the app's own workers.

use std::{
    collections::VecDeque,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, extract::State, http::HeaderMap, response::IntoResponse, routing::post};
use onwapp::{
    store::{WebhookConfig, events::NewEvent, outbox::OutboxStore},
    webhooks::{Dispatcher, WebhookSettings, sign},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Db, TestApp, spawn_with};

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    headers: HeaderMap,
    body: Vec<u8>,
    at: Instant,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("json body")
    }
}

#[derive(Default)]
struct Plan {
    /// Answers to give, in order; then 200.
    answers: VecDeque<(u16, Option<&'static str>)>,
    delay: Duration,
    got: Vec<Got>,
}

#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Plan>>);

impl Receiver {
    async fn start(plan: Plan) -> (Receiver, SocketAddr) {
        let r = Receiver(Arc::new(Mutex::new(plan)));
        let app = Router::new()
            .route("/hook", post(receive))
            .with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, addr)
    }

    fn got(&self) -> Vec<Got> {
        self.0.lock().unwrap().got.clone()
    }

    /// Requests answered 2xx, in arrival order.
    fn delivered_events(&self) -> Vec<Value> {
        self.got().iter().map(Got::json).collect()
    }
}

async fn receive(
    State(r): State<Receiver>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let (answer, delay) = {
        let mut p = r.0.lock().unwrap();
        let answer = p.answers.pop_front().unwrap_or((200, None));
        p.got.push(Got {
            headers,
            body: body.to_vec(),
            at: Instant::now(),
        });
        (answer, p.delay)
    };
    tokio::time::sleep(delay).await;
    let mut h = HeaderMap::new();
    if let Some(ra) = answer.1 {
        h.insert("retry-after", ra.parse().unwrap());
    }
    (axum::http::StatusCode::from_u16(answer.0).unwrap(), h, "")
}

fn fast(workers: usize) -> WebhookSettings {
    WebhookSettings {
        workers,
        timeout: Duration::from_secs(2),
        base_delay: Duration::from_millis(20),
        max_delay: Duration::from_secs(2),
        poll_interval: Duration::from_millis(20),
        // The receivers here listen on loopback.
        allow_private_urls: true,
        ..WebhookSettings::default()
    }
}

async fn app(db: Db, workers: usize) -> Option<TestApp> {
    spawn_with(db, |c| c.webhooks = fast(workers)).await
}

async fn session(
    app: &TestApp,
    name: &str,
    url: &str,
    events: &[&str],
    secret: Option<&str>,
) -> Uuid {
    app.create_session(name).await;
    let id = app.store().get_session(name).await.unwrap().unwrap().id;
    app.store()
        .upsert_webhook(
            id,
            &WebhookConfig {
                url: url.to_string(),
                events: events.iter().map(|e| e.to_string()).collect(),
                enabled: true,
                secret: secret.map(str::to_string),
            },
        )
        .await
        .unwrap();
    id
}

async fn append(app: &TestApp, session: Uuid, name: &'static str, n: usize) {
    for i in 0..n {
        app.store()
            .record_events(
                session,
                &[NewEvent {
                    name,
                    payload: json!({"event": name, "sessionId": "s", "n": i}),
                }],
            )
            .await
            .unwrap();
    }
}

/// Runs passes until nothing is due and nothing is pending, or `limit` passes.
async fn drain(d: &Dispatcher, store: &dyn OutboxStore, limit: usize) {
    for _ in 0..limit {
        let pass = d.run_once().await.unwrap();
        if pass.is_none() {
            if store.outbox_depth().await.unwrap().0 == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("outbox not drained after {limit} passes");
}

async fn receiver_down_then_back_keeps_order(app: TestApp) {
    let plan = Plan {
        answers: [(503, None); 4].into_iter().collect(),
        ..Plan::default()
    };
    let (rx, addr) = Receiver::start(plan).await;
    let a = session(&app, "a", &format!("http://{addr}/hook"), &[], None).await;
    append(&app, a, "message.received", 5).await;
    // Session b points at a closed port first (connection refused), then at the receiver.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let b = session(&app, "b", &format!("http://{closed_addr}/hook"), &[], None).await;
    append(&app, b, "presence", 3).await;

    let d = Dispatcher::new(app.store(), fast(0));
    for _ in 0..6 {
        d.run_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    app.store()
        .upsert_webhook(
            b,
            &WebhookConfig {
                url: format!("http://{addr}/hook"),
                events: vec![],
                enabled: true,
                secret: None,
            },
        )
        .await
        .unwrap();
    drain(&d, &*app.store(), 500).await;

    let got = rx.delivered_events();
    // 4 refusals of a's first event, then everything once.
    assert_eq!(got.len(), 4 + 5 + 3, "{got:?}");
    let of = |name: &str| -> Vec<i64> {
        let mut seen: Vec<i64> = got
            .iter()
            .filter(|e| e["event"] == name)
            .map(|e| e["n"].as_i64().unwrap())
            .collect();
        seen.dedup();
        seen
    };
    assert_eq!(of("message.received"), vec![0, 1, 2, 3, 4]);
    assert_eq!(of("presence"), vec![0, 1, 2]);
    // Retries carry the same delivery id: 8 events, 8 ids.
    let mut ids: Vec<String> = rx
        .got()
        .iter()
        .map(|g| g.headers["x-webhook-id"].to_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 8);
    assert_eq!(app.store().outbox_depth().await.unwrap(), (0, 0));
}

async fn signature_headers_and_payload(app: TestApp) {
    let (rx, addr) = Receiver::start(Plan::default()).await;
    let s = session(
        &app,
        "sig",
        &format!("http://{addr}/hook"),
        &["*"],
        Some("s3cret"),
    )
    .await;
    append(&app, s, "message.received", 1).await;
    let d = Dispatcher::new(app.store(), fast(0));
    drain(&d, &*app.store(), 50).await;
    let got = rx.got();
    assert_eq!(got.len(), 1);
    let h = &got[0].headers;
    let sig = h["x-webhook-signature"].to_str().unwrap();
    assert_eq!(sig, sign::signature("s3cret", &got[0].body));
    assert_ne!(sig, sign::signature("other", &got[0].body));
    assert_eq!(h["content-type"], "application/json");
    assert!(h["user-agent"].to_str().unwrap().starts_with("onwapp-rs/"));
    assert_eq!(h["x-webhook-event"], "message.received");
    assert!(
        h["x-webhook-timestamp"]
            .to_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 1_700_000_000
    );
    let body = got[0].json();
    assert_eq!(body["event"], "message.received");
    assert_eq!(body["id"], h["x-webhook-id"].to_str().unwrap());
    assert!(body["timestamp"].is_string());
}

async fn gone_goes_to_dead_letters_and_replays(app: TestApp) {
    let plan = Plan {
        answers: [(410, None)].into_iter().collect(),
        ..Plan::default()
    };
    let (rx, addr) = Receiver::start(plan).await;
    let s = session(&app, "gone", &format!("http://{addr}/hook"), &[], None).await;
    append(&app, s, "message.received", 2).await;
    let d = Dispatcher::new(app.store(), fast(0));
    drain(&d, &*app.store(), 50).await;
    let (total, dead) = app.store().dead_letters(s, 50, 0).await.unwrap();
    assert_eq!(total, 1);
    assert_eq!(dead[0].last_status, Some(410));
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(dead[0].payload.0["n"], 0);
    // The next event was not held behind a dead letter.
    assert_eq!(rx.got().len(), 2);
    let unknown = Uuid::now_v7();
    assert!(
        app.store()
            .replay_dead_letters(s, Some(&[dead[0].id, unknown]))
            .await
            .is_err()
    );
    assert_eq!(
        app.store()
            .replay_dead_letters(s, Some(&[dead[0].id]))
            .await
            .unwrap(),
        1
    );
    drain(&d, &*app.store(), 50).await;
    let got = rx.delivered_events();
    assert_eq!(got.len(), 3);
    assert_eq!(got[2]["n"], 0);
    assert_eq!(app.store().dead_letters(s, 50, 0).await.unwrap().0, 0);
}

async fn events_filter_skips_the_rest(app: TestApp) {
    let (rx, addr) = Receiver::start(Plan::default()).await;
    let s = session(
        &app,
        "filter",
        &format!("http://{addr}/hook"),
        &["message.received"],
        None,
    )
    .await;
    append(&app, s, "presence", 2).await;
    append(&app, s, "message.received", 1).await;
    let d = Dispatcher::new(app.store(), fast(0));
    drain(&d, &*app.store(), 50).await;
    let got = rx.delivered_events();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["event"], "message.received");
}

async fn too_many_requests_honours_retry_after(app: TestApp) {
    let plan = Plan {
        answers: [(429, Some("1"))].into_iter().collect(),
        ..Plan::default()
    };
    let (rx, addr) = Receiver::start(plan).await;
    let s = session(&app, "slowdown", &format!("http://{addr}/hook"), &[], None).await;
    append(&app, s, "message.received", 1).await;
    let d = Dispatcher::new(app.store(), fast(0));
    drain(&d, &*app.store(), 500).await;
    let got = rx.got();
    assert_eq!(got.len(), 2);
    assert!(
        got[1].at - got[0].at >= Duration::from_millis(900),
        "{:?}",
        got[1].at - got[0].at
    );
}

#[tokio::test]
async fn receiver_down_then_back_sqlite() {
    if let Some(app) = app(Db::Sqlite, 0).await {
        receiver_down_then_back_keeps_order(app).await;
    }
}

#[tokio::test]
async fn receiver_down_then_back_postgres() {
    if let Some(app) = app(Db::Postgres, 0).await {
        receiver_down_then_back_keeps_order(app).await;
    }
}

#[tokio::test]
async fn gone_is_dead_lettered_and_replayed_sqlite() {
    if let Some(app) = app(Db::Sqlite, 0).await {
        gone_goes_to_dead_letters_and_replays(app).await;
    }
}

#[tokio::test]
async fn gone_is_dead_lettered_and_replayed_postgres() {
    if let Some(app) = app(Db::Postgres, 0).await {
        gone_goes_to_dead_letters_and_replays(app).await;
    }
}

#[tokio::test]
async fn signature_verifies_with_the_secret_only() {
    if let Some(app) = app(Db::Sqlite, 0).await {
        signature_headers_and_payload(app).await;
    }
}

#[tokio::test]
async fn events_filter() {
    if let Some(app) = app(Db::Sqlite, 0).await {
        events_filter_skips_the_rest(app).await;
    }
}

#[tokio::test]
async fn retry_after_is_honoured() {
    if let Some(app) = app(Db::Sqlite, 0).await {
        too_many_requests_honours_retry_after(app).await;
    }
}

/// Two sessions with their own receivers: the first answers after `delay`, the second at once.
async fn slow_and_fast(app: &TestApp, delay: Duration) -> [(Receiver, Uuid); 2] {
    let slow = Plan {
        delay,
        ..Plan::default()
    };
    let (slow_rx, slow_addr) = Receiver::start(slow).await;
    let (fast_rx, fast_addr) = Receiver::start(Plan::default()).await;
    let a = session(app, "slow", &format!("http://{slow_addr}/hook"), &[], None).await;
    let b = session(app, "fast", &format!("http://{fast_addr}/hook"), &[], None).await;
    [(slow_rx, a), (fast_rx, b)]
}

/// The app's own workers: a receiver that takes 3 s for session A does not delay session B.
async fn slow_session_does_not_hold_up_another(db: Db) {
    let Some(app) = app(db, 4).await else { return };
    let [(_slow_rx, a), (fast_rx, b)] = slow_and_fast(&app, Duration::from_secs(3)).await;
    append(&app, a, "message.received", 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    append(&app, b, "message.received", 2).await;
    assert!(
        crate::helpers::eventually(Duration::from_secs(2), || {
            let rx = fast_rx.clone();
            async move { rx.got().len() == 2 }
        })
        .await,
        "session b waited for session a"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    // The metrics saw the deliveries and the queue.
    assert!(
        crate::helpers::eventually(Duration::from_secs(3), || {
            let app = &app;
            async move {
                let m = app.metrics().await;
                m.contains("onwapp_webhook_attempts_total{outcome=\"delivered\"}")
                    && m.contains("onwapp_webhook_delivery_latency_seconds_count")
                    && m.contains("onwapp_webhook_queue_depth")
                    && m.contains("onwapp_webhook_dead_letters 0")
            }
        })
        .await,
        "{}",
        app.metrics().await
    );
}

#[tokio::test]
async fn slow_receiver_does_not_delay_other_sessions_sqlite() {
    slow_session_does_not_hold_up_another(Db::Sqlite).await;
}

#[tokio::test]
async fn slow_receiver_does_not_delay_other_sessions_postgres() {
    slow_session_does_not_hold_up_another(Db::Postgres).await;
}

/// One pass claims several sessions and delivers them side by side; a session whose events are
/// done is let go (its outcomes written) while another's slow receiver still holds the pass, so
/// the next pass delivers its new events at once.
async fn a_pass_lets_a_done_session_go(db: Db) {
    let Some(app) = app(db, 0).await else { return };
    let [(slow_rx, a), (fast_rx, b)] = slow_and_fast(&app, Duration::from_secs(2)).await;
    append(&app, a, "message.received", 2).await;
    append(&app, b, "message.received", 2).await;
    let d = Dispatcher::new(
        app.store(),
        WebhookSettings {
            timeout: Duration::from_secs(5),
            ..fast(0)
        },
    );
    let first = {
        let d = d.clone();
        tokio::spawn(async move { d.run_once().await })
    };
    assert!(
        crate::helpers::eventually(Duration::from_secs(1), || {
            let rx = fast_rx.clone();
            async move { rx.got().len() == 2 }
        })
        .await,
        "b's events were delivered beside a's"
    );
    append(&app, b, "message.received", 1).await;
    let start = Instant::now();
    while fast_rx.got().len() < 3 {
        assert!(
            start.elapsed() < Duration::from_millis(1500),
            "b's new event waited for a's slow receiver"
        );
        d.run_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    assert!(!first.is_finished(), "a's pass was still delivering");
    let pass = first
        .await
        .unwrap()
        .unwrap()
        .expect("the first pass claimed");
    assert_eq!(
        (pass.delivered, pass.retried),
        (4, 0),
        "a's two and b's two"
    );
    assert_eq!(slow_rx.got().len(), 2);
    assert_eq!(app.store().outbox_depth().await.unwrap().0, 0);
    let order: Vec<i64> = fast_rx
        .delivered_events()
        .iter()
        .map(|e| e["n"].as_i64().unwrap())
        .collect();
    assert_eq!(order, [0, 1, 0]);
}

#[tokio::test]
async fn a_pass_lets_a_done_session_go_sqlite() {
    a_pass_lets_a_done_session_go(Db::Sqlite).await;
}

#[tokio::test]
async fn a_pass_lets_a_done_session_go_postgres() {
    a_pass_lets_a_done_session_go(Db::Postgres).await;
}

/// The dead-letter API over HTTP: list (paginated), replay by id (unknown → 404, bad → 400),
/// replay all; the replayed event reaches the receiver.
async fn dead_letters_over_http(db: Db) {
    let Some(app) = app(db, 0).await else { return };
    let plan = Plan {
        answers: [(410, None), (404, None)].into_iter().collect(),
        ..Plan::default()
    };
    let (rx, addr) = Receiver::start(plan).await;
    let s = session(&app, "dl", &format!("http://{addr}/hook"), &[], None).await;
    append(&app, s, "message.received", 3).await;
    let d = Dispatcher::new(app.store(), fast(0));
    drain(&d, &*app.store(), 50).await;

    let (code, page) = TestApp::call(app.get("/dl/webhook/failed?limit=1")).await;
    assert_eq!(code, 200, "{page}");
    assert_eq!(page["total"], 2);
    assert_eq!(page["limit"], 1);
    assert_eq!(page["offset"], 0);
    let first = &page["events"][0];
    assert_eq!(first["event"], "message.received");
    assert_eq!(first["lastStatus"], 400, "the class of the 410");
    assert_eq!(
        first["lastError"], "HTTP 4xx",
        "the status class, nothing more"
    );
    assert_eq!(first["attempts"], 1);
    assert_eq!(first["payload"]["n"], 0);
    assert!(first["failedAt"].is_string() && first["createdAt"].is_string());
    let (_, page2) = TestApp::call(app.get("/dl/webhook/failed?offset=1")).await;
    assert_eq!(
        page2["events"][0]["lastStatus"], 400,
        "the class of the 404"
    );

    let (code, err) = TestApp::call(app.get("/dl/webhook/failed?limit=9999")).await;
    assert_eq!(code, 400);
    assert!(err["error"].as_str().unwrap().contains("limit"));
    let (code, err) = TestApp::call(
        app.post("/dl/webhook/replay")
            .json(&json!({"ids": ["nope"]})),
    )
    .await;
    assert_eq!(code, 400);
    assert!(err["error"].as_str().unwrap().contains("ids"));
    let unknown = Uuid::now_v7().to_string();
    let id = first["id"].as_str().unwrap().to_string();
    let (code, err) = TestApp::call(
        app.post("/dl/webhook/replay")
            .json(&json!({"ids": [id, unknown]})),
    )
    .await;
    assert_eq!(code, 404);
    assert!(err["error"].as_str().unwrap().contains(&unknown));

    let (code, r) = TestApp::call(app.post("/dl/webhook/replay").json(&json!({"ids": [id]}))).await;
    assert_eq!((code, r), (200, json!({"replayed": 1})));
    drain(&d, &*app.store(), 50).await;
    let (code, r) = TestApp::call(app.post("/dl/webhook/replay").json(&json!({}))).await;
    assert_eq!((code, r), (200, json!({"replayed": 1})));
    drain(&d, &*app.store(), 50).await;
    let (_, page) = TestApp::call(app.get("/dl/webhook/failed")).await;
    assert_eq!(page["total"], 0);
    // 3 first attempts, then the two replays, both answered 200.
    let got = rx.delivered_events();
    assert_eq!(got.len(), 5);
    assert_eq!(got[3]["n"], 0);
    assert_eq!(got[4]["n"], 1);
}

#[tokio::test]
async fn dead_letters_listed_and_replayed_over_http_sqlite() {
    dead_letters_over_http(Db::Sqlite).await;
}

#[tokio::test]
async fn dead_letters_listed_and_replayed_over_http_postgres() {
    dead_letters_over_http(Db::Postgres).await;
}

/// End to end: a simulated user on wamock writes to the session; the webhook configured over
/// the API receives `message.received` with the text, signed, and nothing it did not ask for.
async fn a_users_text_arrives_at_the_webhook(db: Db) {
    let Some((app, wa)) = crate::wa::app_on(db).await else {
        return;
    };
    let (rx, addr) = Receiver::start(Plan::default()).await;
    let (me, them) = ("5511977770801", "5511977770802");
    app.create_session("e2e").await;
    let (code, body) = TestApp::call(app.post("/e2e/webhook").json(&json!({
        "url": format!("http://{addr}/hook"),
        "events": ["message.received"],
        "secret": "k",
    })))
    .await;
    assert_eq!(code, 200, "{body}");
    crate::wa::pair(&app, &wa, "e2e", me).await;
    crate::wa::user(&wa, them).await;
    let id = crate::incoming_events::admin(
        &wa,
        &format!("/users/{them}/send"),
        json!({"to": format!("{me}@s.whatsapp.net"), "text": "hello hook"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let d = Dispatcher::new(app.store(), fast(0));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !rx
        .delivered_events()
        .iter()
        .any(|e| e["Info"]["ID"] == id.as_str())
    {
        assert!(
            Instant::now() < deadline,
            "never delivered: {:?}",
            rx.delivered_events()
        );
        d.run_once().await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = rx.got();
    assert!(
        got.iter()
            .all(|g| g.headers["x-webhook-event"] == "message.received")
    );
    let hit = got
        .iter()
        .find(|g| g.json()["Info"]["ID"] == id.as_str())
        .unwrap();
    assert_eq!(
        hit.headers["x-webhook-signature"].to_str().unwrap(),
        sign::signature("k", &hit.body)
    );
    let ev = hit.json();
    assert_eq!(ev["event"], "message.received");
    assert_eq!(ev["sessionId"], "e2e");
    assert_eq!(ev["Message"]["conversation"], "hello hook", "{ev}");
}

#[tokio::test]
async fn wamock_text_reaches_the_webhook_sqlite() {
    a_users_text_arrives_at_the_webhook(Db::Sqlite).await;
}

#[tokio::test]
async fn wamock_text_reaches_the_webhook_postgres() {
    a_users_text_arrives_at_the_webhook(Db::Postgres).await;
}

/// Webhooks cannot reach into the node (issue 17). By default a loopback, link-local,
/// unspecified or multicast target is refused when configured (400 naming
/// `WEBHOOK_ALLOW_PRIVATE_URLS`) and again at delivery, against the resolved address (a row
/// stored before, or a name that resolves there later): nothing connects, the event is a dead
/// letter saying why. Private networks stay allowed. A delivery with no answer records the same
/// words whatever the port did, so `webhook/failed` is no port scanner.
async fn local_targets_are_refused(db: Db) {
    let Some(app) = spawn_with(db, |c| {
        c.webhooks = WebhookSettings {
            allow_private_urls: false,
            ..fast(0)
        }
    })
    .await
    else {
        return;
    };
    app.create_session("ssrf").await;
    for url in [
        "http://127.0.0.1:3000/hook",
        "http://127.1.2.3/",
        "http://2130706433/",
        "http://0x7f.1/",
        "http://localhost:8080/",
        "http://LOCALHOST./",
        "http://api.localhost/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fe80::1]/",
        "http://0.0.0.0:3000/",
        "http://[::]/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
    ] {
        let (code, err) = TestApp::call(app.post("/ssrf/webhook").json(&json!({"url": url}))).await;
        assert_eq!(code, 400, "{url}: {err}");
        let msg = err["error"].as_str().unwrap_or_default();
        assert!(msg.contains("WEBHOOK_ALLOW_PRIVATE_URLS"), "{url}: {msg}");
    }
    for url in [
        "http://10.0.0.7:8080/hook",
        "http://192.168.1.20/hook",
        "http://onwapp-receiver.default.svc.cluster.local/hook",
        "https://example.com/hook",
    ] {
        let (code, body) =
            TestApp::call(app.post("/ssrf/webhook").json(&json!({"url": url}))).await;
        assert_eq!(code, 200, "{url} is allowed: {body}");
    }

    // A loopback receiver behind a row the configuration check never saw.
    let (rx, addr) = Receiver::start(Plan::default()).await;
    let s = session(&app, "rebound", &format!("http://{addr}/hook"), &[], None).await;
    append(&app, s, "message.received", 1).await;
    let d = Dispatcher::new(
        app.store(),
        WebhookSettings {
            allow_private_urls: false,
            ..fast(0)
        },
    );
    drain(&d, &*app.store(), 50).await;
    assert!(rx.got().is_empty(), "nothing reached the loopback receiver");
    let (code, page) = TestApp::call(app.get("/rebound/webhook/failed")).await;
    assert_eq!((code, page["total"].clone()), (200, json!(1)), "{page}");
    let dead = &page["events"][0];
    assert_eq!(dead["attempts"], 1, "refused, not retried: {dead}");
    assert!(dead["lastStatus"].is_null());
    let why = dead["lastError"].as_str().unwrap_or_default();
    assert!(
        why.contains("loopback")
            && why.contains("WEBHOOK_ALLOW_PRIVATE_URLS")
            && !why.contains(&addr.port().to_string()),
        "{why}"
    );

    // No answer from a closed port and from a port that never answers: the same words.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let quick = WebhookSettings {
        allow_private_urls: true,
        max_attempts: 1,
        timeout: Duration::from_millis(300),
        ..fast(0)
    };
    let a = session(&app, "closed", &format!("http://{closed}/hook"), &[], None).await;
    let b = session(
        &app,
        "silent",
        &format!("http://{silent_addr}/hook"),
        &[],
        None,
    )
    .await;
    append(&app, a, "message.received", 1).await;
    append(&app, b, "message.received", 1).await;
    drain(&Dispatcher::new(app.store(), quick), &*app.store(), 50).await;
    drop(silent);
    let mut errors = Vec::new();
    for name in ["closed", "silent"] {
        let (_, page) = TestApp::call(app.get(&format!("/{name}/webhook/failed"))).await;
        errors.push(page["events"][0]["lastError"].clone());
    }
    assert_eq!(errors[0], errors[1], "{errors:?}");
    let text = errors[0].as_str().unwrap_or_default();
    assert!(text.starts_with("no HTTP answer"), "{text}");
    assert!(
        !text.contains("127.0.0.1") && !text.contains("refused"),
        "{text}"
    );
}

#[tokio::test]
async fn local_targets_are_refused_sqlite() {
    local_targets_are_refused(Db::Sqlite).await;
}

#[tokio::test]
async fn local_targets_are_refused_postgres() {
    local_targets_are_refused(Db::Postgres).await;
}
