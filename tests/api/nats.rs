//! Events to NATS JetStream (issue 18), against a real `nats-server -js` process of the test's
//! own: every outbox event is published to `<prefix>.<session>.<event>` with its id as
//! `Nats-Msg-Id`, in order, and a NATS outage in the middle of a stream delays events without
//! losing, duplicating or reordering any.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use async_nats::jetstream;
use onwapp::{
    store::{Store, events::NewEvent},
    webhooks::{WebhookSettings, nats::NatsSettings},
};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Db, TestApp, spawn_with};
use crate::process::free_port;

/// A `nats-server` with JetStream on a free loopback port; restartable on the same port and
/// storage directory (its streams survive, as a real restart's do).
struct NatsServer {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn nats_binary() -> Option<PathBuf> {
    [
        "/usr/sbin/nats-server",
        "/usr/bin/nats-server",
        "/usr/local/bin/nats-server",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

impl NatsServer {
    async fn start() -> Option<NatsServer> {
        let Some(_) = nats_binary() else {
            return crate::helpers::unavailable(
                "nats-server (apt install nats-server)",
                "not installed",
            );
        };
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            store: tempfile::tempdir().unwrap(),
        };
        server.run().await;
        Some(server)
    }

    async fn run(&mut self) {
        let bin = nats_binary().expect("nats-server");
        let child = Command::new(bin)
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// The stream's messages in order: (subject, Nats-Msg-Id, payload).
async fn stream_messages(url: &str, stream: &str) -> Vec<(String, String, Value)> {
    let Ok(client) = async_nats::connect(url).await else {
        return Vec::new();
    };
    let js = jetstream::new(client);
    let Ok(mut s) = js.get_stream(stream).await else {
        return Vec::new();
    };
    let Ok(info) = s.info().await else {
        return Vec::new();
    };
    let (first, last) = (info.state.first_sequence, info.state.last_sequence);
    let mut out = Vec::new();
    for seq in first..=last {
        if last == 0 {
            break;
        }
        let m = s.get_raw_message(seq).await.expect("a stored message");
        let id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.to_string())
            .unwrap_or_default();
        let payload: Value = serde_json::from_slice(&m.payload).expect("JSON payload");
        out.push((m.subject.to_string(), id, payload));
    }
    out
}

async fn append(store: &dyn Store, session: Uuid, from: usize, to: usize) {
    for n in from..to {
        store
            .record_events(
                session,
                &[NewEvent {
                    name: "message.received",
                    payload: json!({"event": "message.received", "sessionId": "nt", "n": n}),
                }],
            )
            .await
            .unwrap();
    }
}

/// Waits until the stream holds `n` messages; panics with what it holds after `limit`.
async fn until_stream_has(url: &str, n: usize, limit: Duration) -> Vec<(String, String, Value)> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let got = stream_messages(url, "ONWAPP").await;
        if got.len() >= n {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stream holds {} of {n} messages",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The app on `db` with `workers` delivery workers polling every 50 ms and NATS at `url`.
async fn app_with_nats(db: Db, workers: usize, nats: NatsSettings) -> Option<TestApp> {
    spawn_with(db, |c| {
        c.webhooks = WebhookSettings {
            workers,
            poll_interval: Duration::from_millis(50),
            allow_private_urls: true,
            ..WebhookSettings::default()
        };
        c.nats = Some(nats);
    })
    .await
}

async fn outage_in_the_middle_of_a_stream(db: Db) {
    let Some(mut nats) = NatsServer::start().await else {
        return;
    };
    let url = nats.url();
    let nats_settings = NatsSettings {
        url: url.clone(),
        retry_delay: Duration::from_millis(200),
        ack_wait: Duration::from_secs(2),
        ..NatsSettings::default()
    };
    let Some(app) = app_with_nats(db, 2, nats_settings).await else {
        return;
    };
    app.create_session("nt").await;
    let store = app.store();
    let session = store.get_session("nt").await.unwrap().unwrap().id;

    append(&*store, session, 0, 10).await;
    until_stream_has(&url, 10, Duration::from_secs(30)).await;

    // NATS goes away in the middle of the stream; the events keep coming.
    nats.stop();
    append(&*store, session, 10, 25).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (pending, dead) = store.outbox_depth().await.unwrap();
    assert_eq!(pending, 15, "held in the outbox while NATS is away");
    assert_eq!(dead, 0, "an outage dead-letters nothing");

    nats.run().await;
    let got = until_stream_has(&url, 25, Duration::from_secs(60)).await;
    // Nothing more arrives later (no duplicate published after the acknowledgement).
    tokio::time::sleep(Duration::from_secs(1)).await;
    let got_later = stream_messages(&url, "ONWAPP").await;
    assert_eq!(got_later.len(), got.len(), "published twice");
    assert_eq!(got.len(), 25, "one message per event");
    for (i, (subject, id, payload)) in got.iter().enumerate() {
        assert_eq!(subject, "ONWAPP.nt.message.received");
        assert_eq!(payload["n"], i, "in order, none lost: {payload}");
        assert_eq!(payload["event"], "message.received");
        // The message id is the event's id (the webhook's X-Webhook-Id).
        assert_eq!(payload["id"].as_str(), Some(id.as_str()), "{payload}");
        assert!(Uuid::parse_str(id).is_ok(), "{id}");
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while store.outbox_depth().await.unwrap().0 != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the outbox did not drain"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_delays_events_and_loses_none_sqlite() {
    outage_in_the_middle_of_a_stream(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_delays_events_and_loses_none_postgres() {
    outage_in_the_middle_of_a_stream(Db::Postgres).await;
}

/// JetStream drops a second copy of an event: the stream is created with a duplicate window
/// and the message id is the event's.
#[tokio::test]
async fn the_stream_deduplicates_on_the_event_id() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let url = nats.url();
    let nats_settings = NatsSettings {
        url: url.clone(),
        ..NatsSettings::default()
    };
    let Some(app) = app_with_nats(Db::Sqlite, 1, nats_settings).await else {
        return;
    };
    app.create_session("nt").await;
    let store = app.store();
    let session = store.get_session("nt").await.unwrap().unwrap().id;
    append(&*store, session, 0, 1).await;
    let got = until_stream_has(&url, 1, Duration::from_secs(30)).await;
    let (subject, id, payload) = got[0].clone();
    // The same event published again (as after a crash between the ack and the record).
    let js = jetstream::new(async_nats::connect(url.as_str()).await.unwrap());
    let ack = js
        .send_publish(
            subject,
            jetstream::message::PublishMessage::build()
                .message_id(&id)
                .payload(serde_json::to_vec(&payload).unwrap().into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(ack.duplicate, "JetStream took a second copy");
    assert_eq!(stream_messages(&url, "ONWAPP").await.len(), 1);
    let info = js
        .get_stream("ONWAPP")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .clone();
    assert_eq!(info.config.subjects, vec!["ONWAPP.>".to_string()]);
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));
    let _ = TestApp::call(app.get("/health")).await;
    app.stop().await;
}
