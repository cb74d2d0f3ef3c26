//! Nothing acknowledged is lost (issue 15), in one process against wamock, on both databases.
//! A database trigger makes the write of one message fail, the way a full disk or a dropped
//! connection would:
//! - a message a user sends while it cannot be stored is not acknowledged to WhatsApp
//!   (wamock keeps it), and is stored and announced once at the session's next login;
//! - a send WhatsApp took but that could not be recorded answers 500 naming its id (never
//!   success), and is recorded (history and `message.sent`) once the database takes it;
//! - a send that cannot be journaled is not sent at all;
//! - concurrent connects of one session start one client (wamock sees one socket).

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Db, TestApp};
use crate::wa::{app_on, devices, pair, poll, user, wait_status};

/// Makes every insert into `table` that meets `condition` (SQL on `NEW`, the same in both
/// databases) fail, until [`Poison::cure`].
struct Poison {
    url: String,
    table: &'static str,
}

impl Poison {
    async fn exec(&self, sqls: &[&str]) {
        if self.url.starts_with("postgres") {
            let pool = sqlx::PgPool::connect(&self.url).await.expect("postgres");
            for sql in sqls {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&pool)
                    .await
                    .expect("sql");
            }
        } else {
            let pool = sqlx::SqlitePool::connect(&self.url).await.expect("sqlite");
            for sql in sqls {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
                    .execute(&pool)
                    .await
                    .expect("sql");
            }
        }
    }

    async fn install(app: &TestApp, table: &'static str, condition: &str) -> Poison {
        let p = Poison {
            url: app.database_url(),
            table,
        };
        if p.url.starts_with("postgres") {
            let function = format!(
                "CREATE OR REPLACE FUNCTION poison_{table}() RETURNS trigger AS $$ BEGIN \
                 IF {condition} THEN RAISE EXCEPTION 'poisoned'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql"
            );
            let trigger = format!(
                "CREATE TRIGGER poison BEFORE INSERT ON {table} FOR EACH ROW \
                 EXECUTE FUNCTION poison_{table}()"
            );
            p.exec(&[&function, &trigger]).await;
        } else {
            let trigger = format!(
                "CREATE TRIGGER poison_{table} BEFORE INSERT ON {table} WHEN {condition} \
                 BEGIN SELECT RAISE(ABORT, 'poisoned'); END"
            );
            p.exec(&[&trigger]).await;
        }
        p
    }

    /// Inserts of messages whose content contains `marker` fail.
    async fn messages(app: &TestApp, marker: &str) -> Poison {
        Self::install(app, "messages", &format!("NEW.content LIKE '%{marker}%'")).await
    }

    async fn cure(&self) {
        let table = self.table;
        if self.url.starts_with("postgres") {
            self.exec(&[&format!("DROP TRIGGER poison ON {table}")])
                .await;
        } else {
            self.exec(&[&format!("DROP TRIGGER poison_{table}")]).await;
        }
    }
}

async fn user_sends(wa: &wamock::Server, phone: &str, to: &str, text: &str) -> String {
    let r = crate::incoming_events::admin(
        wa,
        &format!("/users/{phone}/send"),
        json!({"to": to, "text": text}),
    )
    .await;
    r["id"].as_str().expect("a message id").to_string()
}

/// The events of `name` waiting in the outbox for `id`.
async fn events_for(app: &TestApp, name: &str, event: &str, id: &str) -> usize {
    let store = app.store();
    let session = store.get_session(name).await.unwrap().unwrap();
    store
        .pending_events(session.id, 1000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event == event && e.payload.0["message"]["id"] == id)
        .count()
}

async fn device(wa: &wamock::Server) -> Value {
    devices(wa).await[0].clone()
}

async fn wait_device(wa: &wamock::Server, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let d = device(wa).await;
        if done(&d) {
            return d;
        }
        assert!(tokio::time::Instant::now() < deadline, "wamock: {d}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_cannot_be_stored_is_not_acknowledged_and_comes_again_on_sqlite() {
    inbound_unstored(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_cannot_be_stored_is_not_acknowledged_and_comes_again_on_postgres() {
    inbound_unstored(Db::Postgres).await;
}

async fn inbound_unstored(db: Db) {
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    app.create_session("inb").await;
    pair(&app, &wa, "inb", "5511999990501").await;
    let chat = user(&wa, "5511988880501").await;
    let me = "5511999990501@s.whatsapp.net";
    let history = format!("/inb/chat/messages?chatId={chat}");

    let poison = Poison::messages(&app, "cannot be stored").await;
    let lost = user_sends(&wa, "5511988880501", me, "cannot be stored yet").await;
    // Stored before it: the next message, which the hook commits in its own batch.
    let fine = user_sends(&wa, "5511988880501", me, "stored at once").await;
    poll(&app, &history, Duration::from_secs(20), |b| {
        b.as_array()
            .is_some_and(|a| a.iter().any(|m| m["msgId"] == fine.as_str()))
    })
    .await;
    // The refused one is kept by WhatsApp, unacknowledged, and is nowhere here.
    let d = wait_device(&wa, |d| d["unacked"].as_u64() >= Some(1)).await;
    assert_eq!(d["connected"], true, "{d}");
    let listed = app.get_json(&history).await;
    assert!(
        !listed
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["msgId"] == lost.as_str()),
        "{listed}"
    );
    assert_eq!(events_for(&app, "inb", "message.received", &lost).await, 0);

    // The database recovers; the next login brings the message again, and it is stored and
    // announced once, then acknowledged.
    poison.cure().await;
    let (code, b) = TestApp::call(app.post("/inb/disconnect")).await;
    assert_eq!(code, 200, "{b}");
    wait_device(&wa, |d| d["connected"] == false).await;
    let (code, b) = TestApp::call(app.post("/inb/connect")).await;
    assert_eq!(code, 200, "{b}");
    wait_status(&app, "inb", "connected", Duration::from_secs(30)).await;
    let got = poll(&app, &history, Duration::from_secs(20), |b| {
        b.as_array()
            .is_some_and(|a| a.iter().any(|m| m["msgId"] == lost.as_str()))
    })
    .await;
    let stored: Vec<&Value> = got
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["msgId"] == lost.as_str())
        .collect();
    assert_eq!(stored.len(), 1, "{got}");
    assert_eq!(stored[0]["content"], "cannot be stored yet");
    assert_eq!(events_for(&app, "inb", "message.received", &lost).await, 1);
    assert_eq!(events_for(&app, "inb", "message.received", &fine).await, 1);
    wait_device(&wa, |d| d.get("unacked").is_none()).await;
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_answered_success_only_once_recorded_on_sqlite() {
    honest_send(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_answered_success_only_once_recorded_on_postgres() {
    honest_send(Db::Postgres).await;
}

async fn honest_send(db: Db) {
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    app.create_session("out").await;
    pair(&app, &wa, "out", "5511999990502").await;
    let chat = user(&wa, "5511988880502").await;
    let history = format!("/out/chat/messages?chatId={chat}");

    // WhatsApp takes it, the database does not: not a success, and the answer names the id
    // so the client does not send it again.
    let poison = Poison::messages(&app, "recorded late").await;
    let (code, b) = TestApp::call(
        app.post("/out/message/send/text")
            .json(&json!({"phone": "5511988880502", "text": "recorded late"})),
    )
    .await;
    assert_eq!(code, 500, "{b}");
    let error = b["error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("was sent"), "{b}");
    let inbox = crate::wa::wait_inbox(&wa, "5511988880502", 1).await;
    let id = inbox[0]["id"].as_str().unwrap().to_string();
    assert_eq!(inbox[0]["text"], "recorded late");
    assert!(error.contains(&id), "the answer names {id}: {b}");

    // Once the database takes writes again, the message is recorded: in history, with its
    // `message.sent` event, once.
    poison.cure().await;
    let got = poll(&app, &history, Duration::from_secs(30), |b| {
        b.as_array()
            .is_some_and(|a| a.iter().any(|m| m["msgId"] == id.as_str()))
    })
    .await;
    assert_eq!(
        got.as_array()
            .unwrap()
            .iter()
            .filter(|m| m["msgId"] == id.as_str())
            .count(),
        1,
        "{got}"
    );
    assert_eq!(events_for(&app, "out", "message.sent", &id).await, 1);

    // A send that cannot even be journaled (the database refuses it) is not sent.
    let journal = Poison::install(&app, "outgoing_messages", "NEW.chat_jid IS NOT NULL").await;
    let (code, b) = TestApp::call(
        app.post("/out/message/send/text")
            .json(&json!({"phone": "5511988880502", "text": "never sent"})),
    )
    .await;
    assert_eq!(code, 503, "{b}");
    assert!(
        b["error"].as_str().unwrap_or_default().contains("not sent"),
        "{b}"
    );
    journal.cure().await;
    // The next send goes: the user gets it, and never the refused one.
    let (code, b) = TestApp::call(
        app.post("/out/message/send/text")
            .json(&json!({"phone": "5511988880502", "text": "sent after"})),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let inbox = crate::wa::wait_inbox(&wa, "5511988880502", 2).await;
    let texts: Vec<&str> = inbox
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["text"].as_str())
        .collect();
    assert_eq!(texts, ["recorded late", "sent after"], "{inbox}");
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_start_one_client() {
    let Some((app, wa)) = app_on(Db::Sqlite).await else {
        return;
    };
    app.create_session("one").await;
    pair(&app, &wa, "one", "5511999990503").await;
    let (code, b) = TestApp::call(app.post("/one/disconnect")).await;
    assert_eq!(code, 200, "{b}");
    let before = wait_device(&wa, |d| d["connected"] == false).await;

    // The API (several clients at once) and the engine's resume, together.
    let mut calls = Vec::new();
    for _ in 0..6 {
        let req = app.post("/one/connect");
        calls.push(tokio::spawn(async move { TestApp::call(req).await }));
    }
    let engine = app.engine();
    calls.push(tokio::spawn(async move {
        engine.resume_paired().await;
        (200, Value::Null)
    }));
    for c in calls {
        let (code, b) = c.await.unwrap();
        assert_eq!(code, 200, "{b}");
    }
    wait_status(&app, "one", "connected", Duration::from_secs(30)).await;
    wait_device(&wa, |d| d["sockets"] == 1).await;
    // A second client would log in within moments and replace the first.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let d = device(&wa).await;
    assert_eq!(
        (
            d["sockets"].clone(),
            d["maxSockets"].clone(),
            d["replaced"].clone()
        ),
        (
            json!(1),
            before["maxSockets"].clone(),
            before["replaced"].clone()
        ),
        "{before} -> {d}"
    );
    wa.stop().await;
}
