//! What WhatsApp's faults do to a session: a 515 restarts the stream and the session
//! reconnects by itself; a dropped connection reconnects with whatsapp-rust's backoff; only a
//! removal (401) logs out; a replaced stream stops without logging out. And the real binary,
//! killed with SIGKILL, reconnects its sessions by itself when started again.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Db, GLOBAL_KEY, PgDatabase, TestApp};
use crate::incoming_events::{admin, outbox, wait_event};
use crate::wa::{app_with_wamock, devices, pair, poll, user, wait_inbox, wait_status};

async fn device_jid(wa: &wamock::Server) -> String {
    devices(wa).await[0]["jid"].as_str().unwrap().to_string()
}

async fn kick(wa: &wamock::Server, jid: &str, reason: &str) {
    let b = admin(
        wa,
        &format!("/devices/{jid}/kick"),
        json!({"reason": reason}),
    )
    .await;
    assert_eq!(b["closed"], true, "{b}");
}

/// Waits until wamock counts exactly one live socket for the device; how long that took.
/// Time from `start` (taken before the kick, so the wait is not undercounted) until the
/// device has one live socket again.
async fn socket_back(wa: &wamock::Server, start: Instant, limit: Duration) -> Duration {
    loop {
        let d = devices(wa).await;
        if d[0]["sockets"] == 1 && d[0]["connected"] == true {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "the device never came back: {d}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count(events: &[(String, Value)], name: &str) -> usize {
    events.iter().filter(|(n, _)| n == name).count()
}

async fn session_id(app: &TestApp, name: &str) -> Uuid {
    app.store().get_session(name).await.unwrap().unwrap().id
}

/// Sends a text through the API and checks the user decrypted it; has the user answer and
/// checks the answer is stored.
async fn messages_flow(
    app: &TestApp,
    wa: &wamock::Server,
    name: &str,
    me: &str,
    them: &str,
    n: usize,
) {
    let text = format!("still here {n}");
    let (code, b) = TestApp::call(
        app.post(&format!("/{name}/message/send/text"))
            .json(&json!({"phone": them, "text": text})),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let inbox = wait_inbox(wa, them, n).await;
    assert!(
        inbox
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["text"] == text.as_str()),
        "{inbox}"
    );
    let answer = format!("answer {n}");
    admin(
        wa,
        &format!("/users/{them}/send"),
        json!({"to": format!("{me}@s.whatsapp.net"), "text": answer}),
    )
    .await;
    let path = format!("/{name}/chat/messages?chatId={them}@s.whatsapp.net");
    poll(app, &path, Duration::from_secs(20), |b| {
        b.as_array()
            .is_some_and(|a| a.iter().any(|m| m["content"] == answer.as_str()))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_515_reconnects_at_once_by_itself_and_is_never_a_logout() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    let (me, them) = ("5511966660801", "5511966660802");
    app.create_session("r515").await;
    pair(&app, &wa, "r515", me).await;
    user(&wa, them).await;
    let session = session_id(&app, "r515").await;
    let jid = device_jid(&wa).await;

    // whatsapp-rust treats a 515 as "restart the stream": it reconnects at once, each time
    // (no backoff: the server asked for it). Every restart is one disconnected/connected pair.
    for round in 1..=3 {
        let start = Instant::now();
        kick(&wa, &jid, "515").await;
        let took = socket_back(&wa, start, Duration::from_secs(10)).await;
        assert!(took < Duration::from_millis(900), "round {round}: {took:?}");
        wait_status(&app, "r515", "connected", Duration::from_secs(10)).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while count(&outbox(&app, session).await, "session.connected") < round + 1 {
            assert!(
                Instant::now() < deadline,
                "round {round}: no session.connected"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let all = outbox(&app, session).await;
    let lifecycle: Vec<&str> = all
        .iter()
        .map(|(n, _)| n.as_str())
        .filter(|n| n.starts_with("session.") && *n != "session.qr" && *n != "session.pair_success")
        .collect();
    assert_eq!(
        lifecycle,
        [
            "session.connected",
            "session.disconnected",
            "session.connected",
            "session.disconnected",
            "session.connected",
            "session.disconnected",
            "session.connected",
        ]
    );
    let dropped = all
        .iter()
        .find(|(n, _)| n == "session.disconnected")
        .unwrap();
    assert_eq!(dropped.1["reason"], "stream error 515", "{}", dropped.1);
    let st = app.get_json("/r515/status").await;
    assert_eq!(
        (st["status"].as_str(), st["phone"].as_str()),
        (Some("connected"), Some(me)),
        "{st}"
    );
    messages_flow(&app, &wa, "r515", me, them, 1).await;
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_reconnect_with_whatsapp_rusts_backoff() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    let (me, them) = ("5511966660811", "5511966660812");
    app.create_session("rdrop").await;
    pair(&app, &wa, "rdrop", me).await;
    user(&wa, them).await;
    let session = session_id(&app, "rdrop").await;
    let jid = device_jid(&wa).await;

    // A connection that just drops is a failure: whatsapp-rust waits 1 s, 1 s, 2 s, 3 s (WA
    // Web's Fibonacci backoff, ±10%) before each attempt, until a connection stays up 30 s.
    // The session reports `connecting` meanwhile.
    let mut waits = Vec::new();
    for _ in 0..4 {
        let start = Instant::now();
        kick(&wa, &jid, "drop").await;
        wait_status(&app, "rdrop", "connecting", Duration::from_secs(2)).await;
        waits.push(socket_back(&wa, start, Duration::from_secs(10)).await);
        wait_status(&app, "rdrop", "connected", Duration::from_secs(5)).await;
    }
    let secs: Vec<f64> = waits.iter().map(Duration::as_secs_f64).collect();
    assert!(secs[0] > 0.85 && secs[0] < 1.6, "{secs:?}");
    assert!(secs[1] > 0.85 && secs[1] < 1.6, "{secs:?}");
    assert!(secs[2] > 1.75 && secs[2] < 2.6, "{secs:?}");
    assert!(secs[3] > 2.65 && secs[3] < 3.6, "{secs:?}");

    let all = outbox(&app, session).await;
    assert_eq!(count(&all, "session.disconnected"), 4);
    assert_eq!(count(&all, "session.connected"), 5);
    assert_eq!(count(&all, "session.logged_out"), 0);
    messages_flow(&app, &wa, "rdrop", me, them, 1).await;
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_logs_out_and_the_next_connect_needs_a_qr() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("r401").await;
    pair(&app, &wa, "r401", "5511966660821").await;
    let session = session_id(&app, "r401").await;
    let jid = device_jid(&wa).await;

    kick(&wa, &jid, "401").await;
    let out = wait_event(&app, session, "session.logged_out", |_| true).await;
    assert_eq!(
        (&out["OnConnect"], &out["Reason"]),
        (&json!(false), &json!(401)),
        "{out}"
    );
    let st = wait_status(&app, "r401", "disconnected", Duration::from_secs(10)).await;
    assert!(st["phone"].is_null() || st["phone"] == "", "{st}");
    let stored = app.store().get_session("r401").await.unwrap().unwrap();
    assert_eq!(stored.device_jid, None);
    assert_eq!(devices(&wa).await, json!([]));

    // The keys are gone: connecting again shows a QR.
    let (code, b) = TestApp::call(app.post("/r401/connect")).await;
    assert_eq!(code, 200, "{b}");
    let qr = poll(&app, "/r401/qr", Duration::from_secs(15), |b| {
        b.get("code").is_some()
    })
    .await;
    assert!(qr["code"].as_str().unwrap().starts_with("2@"), "{qr}");
    let all = outbox(&app, session).await;
    assert_eq!(
        count(&all, "session.qr"),
        2,
        "{:?}",
        all.iter().map(|e| &e.0).collect::<Vec<_>>()
    );
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_stream_stops_the_session_without_logging_it_out() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    let (me, them) = ("5511966660831", "5511966660832");
    app.create_session("rrep").await;
    pair(&app, &wa, "rrep", me).await;
    user(&wa, them).await;
    let session = session_id(&app, "rrep").await;
    let jid = device_jid(&wa).await;

    kick(&wa, &jid, "replaced").await;
    wait_event(&app, session, "session.stream_replaced", |_| true).await;
    let st = wait_status(&app, "rrep", "disconnected", Duration::from_secs(10)).await;
    assert_eq!(st["phone"], me, "{st}");
    let all = outbox(&app, session).await;
    assert_eq!(count(&all, "session.logged_out"), 0);

    // Still paired: connecting again needs no QR, and messages flow.
    let (code, b) = TestApp::call(app.post("/rrep/connect")).await;
    assert_eq!(code, 200, "{b}");
    wait_status(&app, "rrep", "connected", Duration::from_secs(15)).await;
    assert!(app.get_json("/rrep/qr").await.get("code").is_none());
    messages_flow(&app, &wa, "rrep", me, them, 1).await;

    // Transitions asked through the API are announced too.
    let (code, b) = TestApp::call(app.post("/rrep/disconnect")).await;
    assert_eq!(code, 200, "{b}");
    let asked = wait_event(&app, session, "session.disconnected", |p| {
        p["reason"] == "disconnect requested"
    })
    .await;
    assert_eq!(asked["sessionId"], "rrep");
    let (code, b) = TestApp::call(app.post("/rrep/logout")).await;
    assert_eq!(code, 200, "{b}");
    let out = wait_event(&app, session, "session.logged_out", |_| true).await;
    assert_eq!(
        (&out["Reason"], &out["reason"]),
        (&json!(0), &json!("logout requested"))
    );
    wa.stop().await;
}

// --- The real binary, killed with SIGKILL ---

/// The `onwapp` binary on `dir`, talking to wamock, up and answering.
async fn start_binary(
    dir: &std::path::Path,
    wa: &wamock::Server,
    database_url: Option<&str>,
) -> (std::process::Child, String) {
    let mut envs = vec![("WHATSAPP_SERVER_URL", wa.ws_url())];
    if let Some(url) = database_url {
        envs.push(("DATABASE_URL", url.to_string()));
    }
    crate::process::spawn_on(dir, &envs).await
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("Authorization", GLOBAL_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

async fn wait_for(base: &str, path: &str, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let (_, b) = call(reqwest::Method::GET, format!("{base}{path}"), None).await;
        if done(&b) {
            return b;
        }
        assert!(Instant::now() < deadline, "GET {path} never got there: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_binary_reconnects_its_sessions_without_a_qr_on_sqlite() {
    kill_9(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_binary_reconnects_its_sessions_without_a_qr_on_postgres() {
    kill_9(Db::Postgres).await;
}

async fn kill_9(db: Db) {
    let pg = match db {
        Db::Postgres => match PgDatabase::create().await {
            Some(pg) => Some(pg),
            None => return,
        },
        Db::Sqlite => None,
    };
    let url = pg.as_ref().map(|p| p.url.as_str());
    let wa = wamock::Server::start("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (me, them) = ("5511966660841", "5511966660842");
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;

    let (mut child, base) = start_binary(dir.path(), &wa, url).await;
    let (code, b) = call(
        post.clone(),
        format!("{base}/sessions"),
        Some(json!({"session": "k9"})),
    )
    .await;
    assert_eq!(code, 201, "{b}");
    let (code, b) = call(post.clone(), format!("{base}/k9/connect"), None).await;
    assert_eq!(code, 200, "{b}");
    let qr = wait_for(&base, "/k9/qr", Duration::from_secs(15), |b| {
        b.get("code").is_some()
    })
    .await;
    admin(&wa, "/scan-qr", json!({"qr": qr["code"], "phone": me})).await;
    wait_for(&base, "/k9/status", Duration::from_secs(30), |b| {
        b["status"] == "connected"
    })
    .await;
    user(&wa, them).await;

    // SIGKILL: no shutdown, no goodbye to WhatsApp.
    child.kill().unwrap();
    child.wait().unwrap();
    let jid = device_jid(&wa).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while devices(&wa).await[0]["sockets"] != 0 {
        assert!(
            Instant::now() < deadline,
            "wamock still sees the killed socket"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Started again on the same data: the session comes back by itself, with no QR.
    let (mut child, base) = start_binary(dir.path(), &wa, url).await;
    let st = wait_for(&base, "/k9/status", Duration::from_secs(30), |b| {
        b["status"] == "connected"
    })
    .await;
    assert_eq!(st["phone"], me, "{st}");
    let (_, qr) = call(get.clone(), format!("{base}/k9/qr"), None).await;
    assert!(qr.get("code").is_none(), "{qr}");
    assert_eq!(devices(&wa).await[0]["jid"], jid.as_str());

    let (code, b) = call(
        post.clone(),
        format!("{base}/k9/message/send/text"),
        Some(json!({"phone": them, "text": "back after kill -9"})),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let inbox = wait_inbox(&wa, them, 1).await;
    assert_eq!(inbox[0]["text"], "back after kill -9", "{inbox}");
    admin(
        &wa,
        &format!("/users/{them}/send"),
        json!({"to": format!("{me}@s.whatsapp.net"), "text": "welcome back"}),
    )
    .await;
    wait_for(
        &base,
        &format!("/k9/chat/messages?chatId={them}@s.whatsapp.net"),
        Duration::from_secs(20),
        |b| {
            b.as_array()
                .is_some_and(|a| a.iter().any(|m| m["content"] == "welcome back"))
        },
    )
    .await;
    child.kill().unwrap();
    child.wait().unwrap();
    wa.stop().await;
}
