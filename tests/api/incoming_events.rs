//! Every whatsapp-rust event mapped once to OnWapp's event and written to the outbox together
//! with what it changes: the session's lifecycle, receipts, reactions, edits, deletions and
//! push names, driven by a simulated user on wamock and by the API, checked in the store.

use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Db, TestApp};
use crate::wa::{app_on, pair, poll, user, wait_inbox};

/// The outbox of `session`, oldest first: `(event, payload)`.
pub async fn outbox(app: &TestApp, session: Uuid) -> Vec<(String, Value)> {
    app.store()
        .pending_events(session, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.event, e.payload.0))
        .collect()
}

/// Waits until the outbox holds an event `name` whose payload `matches`; returns it.
pub async fn wait_event(
    app: &TestApp,
    session: Uuid,
    name: &str,
    matches: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let all = outbox(app, session).await;
        if let Some((_, p)) = all.iter().find(|(n, p)| n == name && matches(p)) {
            return p.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {name} in the outbox: {:?}",
            all.iter().map(|(n, _)| n).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `POST` to wamock's admin API; panics unless it answers 2xx.
pub async fn admin(wa: &wamock::Server, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}/admin{path}", wa.http_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let b: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {b}");
    b
}

fn names(events: &[(String, Value)]) -> Vec<&str> {
    events.iter().map(|(n, _)| n.as_str()).collect()
}

/// Every event carries the shared fields: its name, the session, a unique id and a time.
fn assert_envelope(events: &[(String, Value)], session: &str) {
    let mut ids = std::collections::HashSet::new();
    for (name, p) in events {
        assert_eq!(p["event"], name.as_str(), "{p}");
        assert_eq!(p["sessionId"], session, "{p}");
        assert!(
            p["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')),
            "{p}"
        );
        assert!(
            ids.insert(p["id"].as_str().unwrap().to_string()),
            "duplicate id: {p}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_messages_receipts_reactions_edits_and_deletes_on_sqlite() {
    incoming(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_messages_receipts_reactions_edits_and_deletes_on_postgres() {
    incoming(Db::Postgres).await;
}

async fn incoming(db: Db) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    let (me, them) = ("5511977770701", "5511977770702");
    let me_jid = format!("{me}@s.whatsapp.net");
    app.create_session("ev").await;
    pair(&app, &wa, "ev", me).await;
    let session = app.store().get_session("ev").await.unwrap().unwrap().id;
    let their_jid = user(&wa, them).await;

    // The session's lifecycle, in order: the QR it showed, the pairing, the connection.
    let lifecycle = wait_event(&app, session, "session.connected", |_| true).await;
    assert_eq!(lifecycle["sessionId"], "ev");
    let all = outbox(&app, session).await;
    let order: Vec<&str> = names(&all)
        .into_iter()
        .filter(|n| n.starts_with("session."))
        .collect();
    assert_eq!(
        order,
        ["session.qr", "session.pair_success", "session.connected"]
    );
    let qr = &all[0].1;
    assert!(
        qr["Code"].as_str().is_some_and(|c| c.starts_with("2@")),
        "{qr}"
    );
    let paired = &all
        .iter()
        .find(|(n, _)| n == "session.pair_success")
        .unwrap()
        .1;
    assert!(paired["ID"].as_str().unwrap().starts_with(me), "{paired}");

    // The session writes; the user's phone confirms delivery, then reads it.
    let (code, sent) = TestApp::call(
        app.post("/ev/message/send/text")
            .json(&json!({"phone": them, "text": "first words"})),
    )
    .await;
    assert_eq!(code, 200, "{sent}");
    let ours = sent["messageId"].as_str().unwrap().to_string();
    wait_inbox(&wa, them, 1).await;
    admin(
        &wa,
        &format!("/users/{them}/read"),
        json!({"to": me, "ids": [ours]}),
    )
    .await;
    let read = wait_event(&app, session, "message.receipt", |p| p["Type"] == "read").await;
    assert_eq!(read["MessageIDs"], json!([ours]), "{read}");
    assert_eq!(read["status"], "read");
    assert!(read["Chat"].as_str().unwrap().starts_with(them), "{read}");
    let delivered = wait_event(&app, session, "message.receipt", |p| p["Type"] == "").await;
    assert_eq!(delivered["status"], "delivered", "{delivered}");
    let path = format!("/ev/chat/messages?chatId={their_jid}");
    let listed = poll(&app, &path, Duration::from_secs(10), |b| {
        b[0]["status"] == "read"
    })
    .await;
    assert_eq!(listed[0]["msgId"], ours.as_str());

    // The user writes: the message, and the push name it carried, learnt once.
    let theirs = admin(
        &wa,
        &format!("/users/{them}/send"),
        json!({"to": me_jid, "text": "hello there"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let received = wait_event(&app, session, "message.received", |p| {
        p["Info"]["ID"] == theirs.as_str()
    })
    .await;
    assert_eq!(received["Info"]["Chat"], their_jid.as_str(), "{received}");
    assert_eq!(received["Info"]["IsFromMe"], false);
    assert_eq!(received["Info"]["PushName"], "Simulated");
    assert_eq!(
        received["Message"]["conversation"], "hello there",
        "{received}"
    );
    assert_eq!(received["message"]["content"], "hello there");
    let pushed = wait_event(&app, session, "contact.push_name", |_| true).await;
    assert_eq!(
        (
            &pushed["JID"],
            &pushed["OldPushName"],
            &pushed["NewPushName"]
        ),
        (&json!(their_jid), &json!(""), &json!("Simulated")),
        "{pushed}"
    );
    let contact = app
        .store()
        .get_contact(session, &their_jid)
        .await
        .unwrap()
        .expect("contact stored");
    assert_eq!(contact.push_name.as_deref(), Some("Simulated"));

    // The user reacts to the session's message, then takes the reaction back.
    admin(
        &wa,
        &format!("/users/{them}/react"),
        json!({"to": me, "id": ours, "emoji": "👍"}),
    )
    .await;
    let liked = wait_event(&app, session, "message.reaction", |p| {
        p["reaction"]["emoji"] == "👍"
    })
    .await;
    assert_eq!(liked["reaction"]["messageId"], ours.as_str(), "{liked}");
    assert_eq!(liked["reaction"]["fromMe"], false);
    assert_eq!(liked["Message"]["reactionMessage"]["text"], "👍", "{liked}");
    let stored = app.store().list_reactions(session, &ours).await.unwrap();
    assert_eq!(
        stored
            .iter()
            .map(|r| (r.sender_jid.as_str(), r.emoji.as_str()))
            .collect::<Vec<_>>(),
        [(their_jid.as_str(), "👍")]
    );
    admin(
        &wa,
        &format!("/users/{them}/react"),
        json!({"to": me, "id": ours, "emoji": ""}),
    )
    .await;
    let unliked = wait_event(&app, session, "message.reaction", |p| {
        p["reaction"]["removed"] == true
    })
    .await;
    assert_eq!(unliked["reaction"]["messageId"], ours.as_str());
    assert!(
        app.store()
            .list_reactions(session, &ours)
            .await
            .unwrap()
            .is_empty()
    );

    // The user edits its message, then deletes it for everyone.
    admin(
        &wa,
        &format!("/users/{them}/edit"),
        json!({"to": me, "id": theirs, "text": "hello, edited"}),
    )
    .await;
    let edited = wait_event(&app, session, "message.edited", |_| true).await;
    assert_eq!(edited["edit"]["messageId"], theirs.as_str(), "{edited}");
    assert_eq!(edited["edit"]["content"], "hello, edited");
    assert_eq!(edited["IsEdit"], true);
    let listed = poll(&app, &path, Duration::from_secs(10), |b| {
        b.as_array()
            .is_some_and(|a| a.iter().any(|m| m["content"] == "hello, edited"))
    })
    .await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["content"] != "hello there"),
        "{listed}"
    );
    admin(
        &wa,
        &format!("/users/{them}/revoke"),
        json!({"to": me, "id": theirs}),
    )
    .await;
    let deleted = wait_event(&app, session, "message.deleted", |_| true).await;
    assert_eq!(
        deleted["deleted"]["messageId"],
        theirs.as_str(),
        "{deleted}"
    );
    assert_eq!(deleted["Info"]["Edit"], "7", "{deleted}");
    let marks = app
        .store()
        .message_marks(session, &theirs)
        .await
        .unwrap()
        .unwrap();
    assert!(
        marks.deleted_at.is_some() && marks.edited_at.is_some(),
        "{marks:?}"
    );

    // The same three from the session, through the API.
    let (code, b) = TestApp::call(
        app.post("/ev/message/react")
            .json(&json!({"phone": them, "messageId": ours, "emoji": "🔥"})),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let (code, b) = TestApp::call(
        app.post("/ev/message/edit")
            .json(&json!({"phone": them, "messageId": ours, "newText": "first words, edited"})),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let (code, b) = TestApp::call(
        app.post("/ev/message/delete")
            .json(&json!({"phone": them, "messageId": ours})),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    // The user's phone saw all three.
    let inbox = wait_inbox(&wa, them, 4).await;
    let kinds: Vec<&str> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["text", "reaction", "protocol", "protocol"],
        "{inbox}"
    );
    let own = |name: &'static str| {
        let app = &app;
        async move { wait_event(app, session, name, |p| p["Info"]["IsFromMe"] == true).await }
    };
    assert_eq!(own("message.reaction").await["reaction"]["emoji"], "🔥");
    assert_eq!(
        own("message.edited").await["edit"]["content"],
        "first words, edited"
    );
    assert_eq!(
        own("message.deleted").await["deleted"]["messageId"],
        ours.as_str()
    );
    let reactions = app.store().list_reactions(session, &ours).await.unwrap();
    assert_eq!(reactions.len(), 1);
    assert_eq!(
        (
            reactions[0].sender_jid.as_str(),
            reactions[0].emoji.as_str()
        ),
        (me_jid.as_str(), "🔥")
    );
    let mine = app
        .store()
        .message_marks(session, &ours)
        .await
        .unwrap()
        .unwrap();
    assert!(
        mine.edited_at.is_some() && mine.deleted_at.is_some(),
        "{mine:?}"
    );

    // Each change was announced exactly once, in the order it happened.
    let all = outbox(&app, session).await;
    assert_envelope(&all, "ev");
    let messages: Vec<&str> = names(&all)
        .into_iter()
        .filter(|n| n.starts_with("message.") && *n != "message.receipt")
        .collect();
    assert_eq!(
        messages,
        [
            "message.sent",
            "message.received",
            "message.reaction",
            "message.reaction",
            "message.edited",
            "message.deleted",
            "message.reaction",
            "message.edited",
            "message.deleted",
        ]
    );
    assert_eq!(
        names(&all)
            .iter()
            .filter(|n| **n == "contact.push_name")
            .count(),
        1
    );
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_typing_are_announced() {
    let Some((app, wa)) = crate::wa::app_with_wamock().await else {
        return;
    };
    let (me, them) = ("5511977770711", "5511977770712");
    let their_jid = user(&wa, them).await;
    app.create_session("pres").await;
    pair(&app, &wa, "pres", me).await;
    let session = app.store().get_session("pres").await.unwrap().unwrap().id;

    // Watching the user: available now, then away with a last-seen time.
    let (code, b) = TestApp::call(
        app.post("/pres/presence/subscribe")
            .json(&json!({"phone": them})),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let here = wait_event(&app, session, "presence.update", |p| {
        p["Unavailable"] == false
    })
    .await;
    assert_eq!(here["From"], their_jid.as_str(), "{here}");
    admin(
        &wa,
        &format!("/users/{them}/presence"),
        json!({"available": false}),
    )
    .await;
    let away = wait_event(&app, session, "presence.update", |p| {
        p["Unavailable"] == true
    })
    .await;
    assert!(
        away["LastSeen"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{away}"
    );

    // The user types, records a voice note, stops.
    for state in ["composing", "recording", "paused"] {
        admin(
            &wa,
            &format!("/users/{them}/chatstate"),
            json!({"to": me, "state": state}),
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let states = loop {
        let got: Vec<(String, String)> = outbox(&app, session)
            .await
            .into_iter()
            .filter(|(n, _)| n == "chat.presence")
            .map(|(_, p)| {
                assert_eq!(p["Chat"], their_jid.as_str(), "{p}");
                (
                    p["State"].as_str().unwrap().to_string(),
                    p["Media"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if got.len() >= 3 || tokio::time::Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // whatsapp-rust handles incoming chat states concurrently, so their order is not kept.
    let mut states: Vec<(&str, &str)> = states
        .iter()
        .map(|(s, m)| (s.as_str(), m.as_str()))
        .collect();
    states.sort();
    assert_eq!(
        states,
        [("composing", ""), ("composing", "audio"), ("paused", "")]
    );
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_sync_fills_the_chat_list_without_announcing_each_message_on_sqlite() {
    history(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_sync_fills_the_chat_list_without_announcing_each_message_on_postgres() {
    history(Db::Postgres).await;
}

async fn history(db: Db) {
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    let (me, them) = ("5511977770721", "5511977770722");
    let their_jid = format!("{them}@s.whatsapp.net");
    app.create_session("hist").await;
    pair(&app, &wa, "hist", me).await;
    let session = app.store().get_session("hist").await.unwrap().unwrap().id;
    let device = crate::wa::devices(&wa).await[0]["jid"]
        .as_str()
        .unwrap()
        .to_string();

    // The phone sends its chats: one conversation, two messages, the contact's push name.
    admin(
        &wa,
        &format!("/devices/{device}/history"),
        json!({
            "conversations": [{"id": their_jid, "name": "Ana", "unreadCount": 2, "messages": [
                {"id": "HIST0000000000000001", "text": "old news", "timestamp": 1_700_000_000u64},
                {"id": "HIST0000000000000002", "text": "my answer", "fromMe": true, "timestamp": 1_700_000_100u64},
            ]}],
            "pushnames": [{"id": their_jid, "pushName": "Ana P."}],
        }),
    )
    .await;
    let synced = wait_event(&app, session, "history.sync", |_| true).await;
    assert_eq!(
        (
            &synced["chats"],
            &synced["messages"],
            &synced["Conversations"]
        ),
        (&json!(1), &json!(2), &json!(1)),
        "{synced}"
    );
    assert_eq!(synced["Type"], 3, "RECENT: {synced}");

    let chats = app.get_json("/hist/chat/list").await;
    let chat = chats
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["jid"] == their_jid.as_str())
        .unwrap_or_else(|| panic!("{chats}"))
        .clone();
    assert_eq!(chat["name"], "Ana", "{chat}");
    assert_eq!(chat["unreadCount"], 2, "{chat}");
    assert_eq!(chat["conversationTimestamp"], 1_700_000_100i64, "{chat}");
    let listed = app
        .get_json(&format!("/hist/chat/messages?chatId={their_jid}"))
        .await;
    let got: Vec<(&str, &str, bool, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["msgId"].as_str().unwrap(),
                m["content"].as_str().unwrap(),
                m["fromMe"].as_bool().unwrap(),
                m["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("HIST0000000000000002", "my answer", true, "sent"),
            ("HIST0000000000000001", "old news", false, "delivered"),
        ]
    );
    let contact = app
        .store()
        .get_contact(session, &their_jid)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(contact.push_name.as_deref(), Some("Ana P."));
    let all = outbox(&app, session).await;
    assert!(
        !names(&all)
            .iter()
            .any(|n| *n == "message.received" || *n == "message.sent"),
        "{:?}",
        names(&all)
    );
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecryptable_message_is_announced_not_stored() {
    let Some((app, wa)) = crate::wa::app_with_wamock().await else {
        return;
    };
    let (me, them) = ("5511977770731", "5511977770732");
    let their_jid = user(&wa, them).await;
    app.create_session("undec").await;
    pair(&app, &wa, "undec", me).await;
    let session = app.store().get_session("undec").await.unwrap().unwrap().id;

    let sent = admin(
        &wa,
        &format!("/users/{them}/undecryptable"),
        json!({"to": me}),
    )
    .await;
    let id = sent["id"].as_str().unwrap().to_string();
    let bad = wait_event(&app, session, "message.undecryptable", |p| {
        p["Info"]["ID"] == id.as_str()
    })
    .await;
    assert_eq!(bad["Info"]["Chat"], their_jid.as_str(), "{bad}");
    assert_eq!(bad["Info"]["PushName"], "Simulated", "{bad}");
    assert_eq!(bad["IsUnavailable"], false, "{bad}");
    assert!(bad["DecryptFailMode"].is_string(), "{bad}");
    let path = format!("/undec/chat/messages?chatId={their_jid}");
    let (code, listed) = TestApp::call(app.get(&path)).await;
    assert!(code == 404 || listed == json!([]), "{code} {listed}");
    wa.stop().await;
}
