//! Chat actions and presence over HTTP, through whatsapp-rust, against wamock: what the other
//! side really got (the simulated user's chat states, receipts, inbox and presences; the
//! account's app state as wamock decrypts it; the session client's presence events).

use std::time::Duration;

use serde_json::{Value, json};
use whatsapp_rust::types::events::{ChannelEventHandler, Event};

use crate::helpers::TestApp;
use crate::wa::{app_with_wamock, pair, poll, user, wait_admin, wait_inbox};

const LIMIT: Duration = Duration::from_secs(20);

async fn admin_post(wa: &wamock::Server, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", wa.http_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "POST {path}: {:?}", r.status());
    r.json().await.unwrap()
}

fn len(v: &Value) -> usize {
    v.as_array().map_or(0, Vec::len)
}

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    TestApp::call(app.post(path).json(&body)).await
}

/// The mutations the session's account uploaded, as wamock decrypted them.
async fn app_state(wa: &wamock::Server, phone: &str, action: &str, n: usize) -> Vec<Value> {
    let path = format!("/admin/accounts/{phone}/app-state");
    let all = wait_admin(wa, &path, |v| {
        v.as_array()
            .is_some_and(|a| a.iter().filter(|m| m["action"] == action).count() >= n)
    })
    .await;
    all.as_array()
        .unwrap()
        .iter()
        .filter(|m| m["action"] == action)
        .cloned()
        .collect()
}

#[tokio::test]
async fn typing_and_read_receipts_reach_the_user() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("ca").await;
    let body = json!({"phone": "5511988881001", "state": "composing"});
    let (code, e) = post(&app, "/ca/chat/presence", body.clone()).await;
    assert_eq!(code, 409, "not connected yet: {e}");

    user(&wa, "5511988881001").await;
    pair(&app, &wa, "ca", "5511999991001").await;

    // composing, composing + audio (recording), recording, paused: each echoed.
    let states = [
        (json!({"state": "composing"}), "composing"),
        (json!({"state": "composing", "media": "audio"}), "recording"),
        (json!({"state": "recording"}), "recording"),
        (json!({"state": "paused"}), "paused"),
    ];
    for (extra, _) in &states {
        let mut b = extra.clone();
        b["phone"] = json!("5511988881001");
        let (code, r) = post(&app, "/ca/chat/presence", b).await;
        assert_eq!(code, 200, "{r}");
        assert_eq!(r, json!({"state": extra["state"]}));
    }
    let seen = wait_admin(&wa, "/admin/users/5511988881001/chatstates", |v| {
        len(v) >= states.len()
    })
    .await;
    let got: Vec<&str> = seen
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = states.iter().map(|(_, s)| *s).collect();
    assert_eq!(got, want, "{seen}");
    assert_eq!(seen[0]["from"], "5511999991001@s.whatsapp.net", "{seen}");
    assert_eq!(seen[0]["chat"], "5511999991001@s.whatsapp.net", "{seen}");

    // The user writes twice; the session marks both read; the user gets read receipts.
    let mut ids = Vec::new();
    for text in ["one", "two"] {
        let sent = admin_post(
            &wa,
            "/admin/users/5511988881001/send",
            json!({"to": "5511999991001", "text": text}),
        )
        .await;
        ids.push(sent["id"].as_str().unwrap().to_string());
    }
    poll(
        &app,
        "/ca/chat/messages?chatId=5511988881001@s.whatsapp.net",
        LIMIT,
        |b| len(b) >= 2,
    )
    .await;
    let info = "/ca/chat/info?chatId=5511988881001@s.whatsapp.net";
    assert_eq!(app.get_json(info).await["unreadCount"], 2);
    let (code, r) = post(
        &app,
        "/ca/chat/markread",
        json!({"phone": "5511988881001", "messageIds": ids}),
    )
    .await;
    assert_eq!((code, r), (200, json!({})));
    // Our store follows: nothing unread, both messages read.
    let chat = app.get_json(info).await;
    assert!(chat.get("unreadCount").is_none(), "{chat}");
    let listed = app
        .get_json("/ca/chat/messages?chatId=5511988881001@s.whatsapp.net")
        .await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["status"] == "read"),
        "{listed}"
    );
    let receipts = wait_admin(&wa, "/admin/users/5511988881001/receipts", |v| {
        ids.iter().all(|id| {
            v.as_array()
                .unwrap()
                .iter()
                .any(|r| r["id"] == id.as_str() && r["type"] == "read")
        })
    })
    .await;
    let read = receipts
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["type"] == "read")
        .unwrap();
    assert_eq!(read["from"], "5511999991001@s.whatsapp.net", "{receipts}");
    app.stop().await;
    wa.stop().await;
}

#[tokio::test]
async fn archive_unread_and_delete_for_me_reach_the_accounts_app_state() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("cs").await;
    user(&wa, "5511988881002").await;
    pair(&app, &wa, "cs", "5511999991002").await;
    let chat = "5511988881002@s.whatsapp.net";

    // The phone's push name reached the session through app state.
    let seeded = app_state(&wa, "5511999991002", "setting_pushName", 1).await;
    assert_eq!(seeded[0]["collection"], "critical_block", "{seeded:?}");

    let (code, r) = post(
        &app,
        "/cs/chat/archive",
        json!({"phone": "5511988881002", "archive": true}),
    )
    .await;
    assert_eq!((code, r), (200, json!({"status": "archived"})));
    let (code, r) = post(
        &app,
        "/cs/chat/archive",
        json!({"phone": chat, "archive": false}),
    )
    .await;
    assert_eq!((code, r), (200, json!({"status": "unarchived"})));
    let archive = app_state(&wa, "5511999991002", "archive", 2).await;
    assert_eq!(archive[0]["index"], json!(["archive", chat]), "{archive:?}");
    assert_eq!(archive[0]["value"], json!({"archived": true}));
    assert_eq!(archive[1]["value"], json!({"archived": false}));
    assert_eq!(archive[0]["collection"], "regular_low");
    assert_eq!(archive[0]["operation"], "set");
    assert!(archive.iter().all(|m| m["error"].is_null()), "{archive:?}");
    // Versions follow each other: the client built the second on the first.
    assert_eq!(
        archive[1]["version"].as_u64().unwrap(),
        archive[0]["version"].as_u64().unwrap() + 1
    );

    let (code, r) = post(&app, "/cs/chat/unread", json!({"phone": "5511988881002"})).await;
    assert_eq!((code, r), (200, json!({"status": "marked_unread"})));
    let unread = app_state(&wa, "5511999991002", "markChatAsRead", 1).await;
    assert_eq!(unread[0]["index"], json!(["markChatAsRead", chat]));
    assert_eq!(unread[0]["value"], json!({"read": false}));
    let listed = app.get_json("/cs/chat/list?unread=true").await;
    assert_eq!(
        listed,
        json!([{"jid": chat, "markedAsUnread": true}]),
        "the chat list shows it unread"
    );

    // A message the session sent, deleted for me only: app state, no revoke to the user.
    let (code, sent) = post(
        &app,
        "/cs/message/send/text",
        json!({"phone": "5511988881002", "text": "keep it to yourself"}),
    )
    .await;
    assert_eq!(code, 200, "{sent}");
    let id = sent["messageId"].as_str().unwrap().to_string();
    wait_inbox(&wa, "5511988881002", 1).await;
    let (code, r) = post(
        &app,
        "/cs/message/delete",
        json!({"phone": "5511988881002", "messageId": id, "forMe": true}),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["messageId"], id.as_str());
    let deleted = app_state(&wa, "5511999991002", "deleteMessageForMe", 1).await;
    assert_eq!(
        deleted[0]["index"],
        json!(["deleteMessageForMe", chat, id, "1", "0"]),
        "{deleted:?}"
    );
    assert_eq!(deleted[0]["collection"], "regular_high");
    assert_eq!(deleted[0]["value"]["deleteMedia"], true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let inbox = wait_inbox(&wa, "5511988881002", 1).await;
    assert_eq!(len(&inbox), 1, "the user saw no revoke: {inbox}");
    let listed = app
        .get_json(&format!("/cs/chat/messages?chatId={chat}"))
        .await;
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["msgId"] != id.as_str()),
        "gone from our store: {listed}"
    );

    // Unknown messages cannot be deleted for me (their sender is not known).
    let (code, e) = post(
        &app,
        "/cs/message/delete",
        json!({"phone": "5511988881002", "messageId": "NOPE", "forMe": true}),
    )
    .await;
    assert_eq!(code, 404, "an unknown message: {e}");
    assert!(e["error"].as_str().unwrap().contains("messageId"), "{e}");
    app.stop().await;
    wa.stop().await;
}

#[tokio::test]
async fn disappearing_timers_reach_the_user() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("cd").await;
    user(&wa, "5511988881003").await;
    pair(&app, &wa, "cd", "5511999991003").await;
    let info = "/cd/chat/info?chatId=5511988881003@s.whatsapp.net";
    for (timer, seconds) in [
        ("24h", json!(86_400)),
        ("7d", json!(604_800)),
        ("off", Value::Null),
    ] {
        let (code, r) = post(
            &app,
            "/cd/chat/disappearing",
            json!({"phone": "5511988881003", "timer": timer}),
        )
        .await;
        assert_eq!(code, 200, "{r}");
        assert_eq!(r, json!({"message": format!("timer set to {timer}")}));
        // The chat record follows (omitted when off).
        let chat = app.get_json(info).await;
        assert_eq!(chat["ephemeralExpiration"], seconds, "{chat}");
    }
    let inbox = wait_inbox(&wa, "5511988881003", 3).await;
    let got: Vec<(Value, Value)> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["protocolType"].clone(), m["ephemeralExpiration"].clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (json!("EPHEMERAL_SETTING"), json!(86_400)),
            (json!("EPHEMERAL_SETTING"), json!(604_800)),
            (json!("EPHEMERAL_SETTING"), json!(0)),
        ],
        "{inbox}"
    );
    app.stop().await;
    wa.stop().await;
}

/// Waits for the next presence event from `who` on a session client's event stream.
async fn next_presence(
    events: &whatsapp_rust::async_channel::Receiver<std::sync::Arc<Event>>,
    who: &str,
) -> bool {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let event = tokio::time::timeout(left, events.recv())
            .await
            .expect("a presence event in time")
            .expect("the client runs");
        if let Event::Presence(p) = &*event
            && p.from.user == who
        {
            return !p.unavailable;
        }
    }
}

#[tokio::test]
async fn presence_both_ways() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("cp").await;
    user(&wa, "5511988881004").await;
    pair(&app, &wa, "cp", "5511999991004").await;

    // The user watches the session: available once it connected and learned its push name
    // (a subscription made just before that first sees it unavailable, then available).
    admin_post(
        &wa,
        "/admin/users/5511988881004/presence/subscribe",
        json!({"to": "5511999991004"}),
    )
    .await;
    let path = "/admin/users/5511988881004/presence";
    let available = |v: &Value| {
        v.as_array()
            .and_then(|a| a.last())
            .is_some_and(|p| p["available"] == true)
    };
    let seen = wait_admin(&wa, path, available).await;
    let n = len(&seen);
    assert_eq!(
        seen[n - 1],
        json!({"from": "5511999991004@s.whatsapp.net", "available": true})
    );
    let (code, r) = post(&app, "/cp/presence", json!({"available": false})).await;
    assert_eq!((code, r), (200, json!({"status": "unavailable"})));
    let seen = wait_admin(&wa, path, |v| len(v) > n).await;
    assert_eq!(seen[n]["available"], false, "{seen}");
    assert!(
        seen[n]["lastSeen"].as_i64().unwrap() > 1_700_000_000,
        "{seen}"
    );
    let (code, r) = post(&app, "/cp/presence", json!({"available": true})).await;
    assert_eq!((code, r), (200, json!({"status": "available"})));
    let seen = wait_admin(&wa, path, |v| len(v) > n + 1).await;
    assert_eq!(seen[n + 1]["available"], true, "{seen}");

    // The session watches the user: its client hears the user's presence.
    let client = app
        .engine()
        .connected_client("cp")
        .expect("a connected client");
    let (handler, events) = ChannelEventHandler::new();
    client.subscribe_handler(handler).detach();
    let (code, r) = post(
        &app,
        "/cp/presence/subscribe",
        json!({"phone": "5511988881004"}),
    )
    .await;
    assert_eq!((code, r), (200, json!({})));
    assert!(
        next_presence(&events, "5511988881004").await,
        "a connected user is available"
    );
    admin_post(&wa, path, json!({"available": false})).await;
    assert!(
        !next_presence(&events, "5511988881004").await,
        "the user went away"
    );
    app.stop().await;
    wa.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field() {
    let Some((app, _wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("cb").await;
    let cases = [
        ("/cb/chat/presence", json!({"state": "composing"}), "phone"),
        (
            "/cb/chat/presence",
            json!({"phone": "5511988881005"}),
            "state",
        ),
        (
            "/cb/chat/presence",
            json!({"phone": "5511988881005", "state": "typing"}),
            "state",
        ),
        (
            "/cb/chat/presence",
            json!({"phone": "5511988881005", "state": ""}),
            "state",
        ),
        (
            "/cb/chat/presence",
            json!({"phone": "5511988881005", "state": "composing", "media": "video"}),
            "media",
        ),
        (
            "/cb/chat/presence",
            json!({"phone": "not a phone", "state": "paused"}),
            "phone",
        ),
        ("/cb/chat/markread", json!({"messageIds": ["A"]}), "phone"),
        (
            "/cb/chat/markread",
            json!({"phone": "5511988881005"}),
            "messageIds",
        ),
        (
            "/cb/chat/markread",
            json!({"phone": "5511988881005", "messageIds": []}),
            "messageIds",
        ),
        (
            "/cb/chat/markread",
            json!({"phone": "5511988881005", "messageIds": [" "]}),
            "messageIds",
        ),
        ("/cb/chat/unread", json!({}), "phone"),
        ("/cb/chat/archive", json!({"archive": true}), "phone"),
        (
            "/cb/chat/archive",
            json!({"phone": "5511988881005"}),
            "archive",
        ),
        (
            "/cb/chat/archive",
            json!({"phone": "5511988881005", "archive": "yes"}),
            "archive",
        ),
        ("/cb/chat/disappearing", json!({"timer": "24h"}), "phone"),
        (
            "/cb/chat/disappearing",
            json!({"phone": "5511988881005"}),
            "timer",
        ),
        (
            "/cb/chat/disappearing",
            json!({"phone": "5511988881005", "timer": "soon"}),
            "timer",
        ),
        (
            "/cb/chat/disappearing",
            json!({"phone": "5511988881005", "timer": "24"}),
            "timer",
        ),
        ("/cb/presence", json!({}), "available"),
        ("/cb/presence", json!({"available": "yes"}), "available"),
        ("/cb/presence/subscribe", json!({}), "phone"),
        ("/cb/presence/subscribe", json!({"phone": "12"}), "phone"),
        (
            "/cb/message/delete",
            json!({"phone": "5511988881005", "forMe": true}),
            "messageId",
        ),
    ];
    for (path, body, field) in cases {
        let (code, e) = post(&app, path, body.clone()).await;
        assert_eq!(code, 400, "{path} {body}: {e}");
        let msg = e["error"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{path} {body}: {msg}");
    }
    // Valid input on a session that is not connected: 409, nothing sent.
    for (path, body) in [
        ("/cb/chat/unread", json!({"phone": "5511988881005"})),
        ("/cb/presence", json!({"available": true})),
        (
            "/cb/chat/disappearing",
            json!({"phone": "5511988881005", "timer": "90d"}),
        ),
    ] {
        let (code, e) = post(&app, path, body).await;
        assert_eq!(code, 409, "{path}: {e}");
    }
    app.stop().await;
}

/// What the chat actions write to our store, read back through the API, on both databases.
async fn chat_state_follows_in_the_store(app: TestApp) {
    use onwapp::store::chat::MessageRow;
    app.create_session("st").await;
    let store = app.store();
    let session = store.get_session("st").await.unwrap().unwrap().id;
    let chat = "5511988881006@s.whatsapp.net";
    for (id, from_me, at) in [
        ("A", false, 1_700_000_001),
        ("B", false, 1_700_000_002),
        ("C", true, 1_700_000_003),
    ] {
        let row = MessageRow {
            msg_id: id.into(),
            chat_jid: chat.into(),
            sender_jid: Some(
                if from_me {
                    "5511999991006@s.whatsapp.net"
                } else {
                    chat
                }
                .into(),
            ),
            push_name: None,
            timestamp: at,
            kind: "text".into(),
            media_type: None,
            content: Some(id.into()),
            from_me,
            is_group: false,
            quoted_id: None,
            status: if from_me { "sent" } else { "delivered" }.into(),
        };
        let event = if from_me {
            "message.sent"
        } else {
            "message.received"
        };
        assert!(
            store
                .record_message(session, &row, event, &json!({}))
                .await
                .unwrap()
        );
    }
    let info = format!("/st/chat/info?chatId={chat}");
    assert_eq!(app.get_json(&info).await["unreadCount"], 2);

    // Reading one received message (and our own, which stays as it was) leaves one unread.
    store
        .mark_messages_read(session, chat, &["A", "C"])
        .await
        .unwrap();
    assert_eq!(app.get_json(&info).await["unreadCount"], 1);
    let status = |m: &Value| (m["msgId"].clone(), m["status"].clone());
    let listed = app
        .get_json(&format!("/st/chat/messages?chatId={chat}"))
        .await;
    let got: Vec<_> = listed.as_array().unwrap().iter().map(status).collect();
    assert_eq!(
        got,
        vec![
            (json!("C"), json!("sent")),
            (json!("B"), json!("delivered")),
            (json!("A"), json!("read")),
        ]
    );

    // Marked unread until it is read.
    store.mark_chat_unread(session, chat).await.unwrap();
    assert_eq!(app.get_json(&info).await["markedAsUnread"], true);
    assert_eq!(len(&app.get_json("/st/chat/list?unread=true").await), 1);
    store
        .mark_messages_read(session, chat, &["B"])
        .await
        .unwrap();
    let read = app.get_json(&info).await;
    assert_eq!(
        read,
        json!({"jid": chat, "conversationTimestamp": 1_700_000_003})
    );
    assert_eq!(len(&app.get_json("/st/chat/list?unread=true").await), 0);

    // Timers, also for a chat without messages.
    store
        .set_chat_ephemeral(session, chat, 604_800)
        .await
        .unwrap();
    assert_eq!(app.get_json(&info).await["ephemeralExpiration"], 604_800);
    let other = "5511988881007@s.whatsapp.net";
    store
        .set_chat_ephemeral(session, other, 86_400)
        .await
        .unwrap();
    let fresh = app.get_json(&format!("/st/chat/info?chatId={other}")).await;
    assert_eq!(fresh, json!({"jid": other, "ephemeralExpiration": 86_400}));
    store
        .mark_chat_unread(session, "5511988881008@s.whatsapp.net")
        .await
        .unwrap();

    // Deleted for me: gone, once.
    assert!(store.forget_message(session, chat, "B").await.unwrap());
    assert!(!store.forget_message(session, chat, "B").await.unwrap());
    let listed = app
        .get_json(&format!("/st/chat/messages?chatId={chat}"))
        .await;
    assert_eq!(len(&listed), 2, "{listed}");
}

crate::on_both_databases!(chat_state_follows_in_the_store);
