//! Session lifecycle through whatsapp-rust against wamock: connect, QR, pairing as a phone,
//! connected state, disconnect, reconnect without QR, logout.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, spawn_with};
use crate::wa::{
    app_on, app_with_wamock, devices, pair, poll, user, user_inbox, wait_inbox, wait_status,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_reaches_the_simulated_user_decrypted() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("tx").await;
    let body = json!({"phone": "5511988880001", "text": "hello from onwapp"});
    // Not connected yet: 409, nothing sent.
    let (code, e) = TestApp::call(app.post("/tx/message/send/text").json(&body)).await;
    assert_eq!(code, 409, "{e}");
    assert_eq!(e["error"], "session tx is not connected");

    pair(&app, &wa, "tx", "5511999990201").await;
    user(&wa, "5511988880001").await;
    let (code, sent) = TestApp::call(app.post("/tx/message/send/text").json(&body)).await;
    assert_eq!(code, 200, "{sent}");
    let id = sent["messageId"].as_str().unwrap().to_string();
    assert!(sent["timestamp"].as_i64().unwrap() > 1_700_000_000);

    let inbox = wait_inbox(&wa, "5511988880001", 1).await;
    assert_eq!(inbox[0]["id"], id.as_str(), "{inbox}");
    assert_eq!(inbox[0]["type"], "text");
    assert_eq!(inbox[0]["text"], "hello from onwapp");
    assert!(
        inbox[0]["from"]
            .as_str()
            .unwrap()
            .starts_with("5511999990201"),
        "{inbox}"
    );

    // Location (0 is a valid coordinate), contact card, and an edit of the text.
    let sends = [
        (
            "/tx/message/send/location",
            json!({"phone": "5511988880001", "latitude": 0.0, "longitude": -46.63, "name": "Here"}),
        ),
        (
            "/tx/message/send/contact",
            json!({"phone": "5511988880001", "contactName": "Ana", "contactPhone": "5511977770000"}),
        ),
        (
            "/tx/message/edit",
            json!({"phone": "5511988880001", "messageId": id, "newText": "edited"}),
        ),
    ];
    for (path, body) in &sends {
        let (code, b) = TestApp::call(app.post(path).json(body)).await;
        assert_eq!(code, 200, "{path}: {b}");
        assert!(
            b["messageId"].as_str().is_some_and(|m| !m.is_empty()),
            "{b}"
        );
    }
    let inbox = wait_inbox(&wa, "5511988880001", 4).await;
    let kinds: Vec<&str> = inbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["text", "location", "contact", "protocol"],
        "{inbox}"
    );

    // Bad input: 400 naming the field, nothing sent.
    for (bad, field) in [
        (json!({"text": "x"}), "phone"),
        (json!({"phone": "abc", "text": "x"}), "phone"),
        (json!({"phone": "5511988880001", "text": ""}), "text"),
        (json!({"phone": "5511988880001"}), "text"),
        (
            json!({"phone": "5511988880001", "text": "x", "quoted": {"messageId": ""}}),
            "quoted.messageId",
        ),
    ] {
        let (code, e) = TestApp::call(app.post("/tx/message/send/text").json(&bad)).await;
        assert_eq!(code, 400, "{bad}");
        assert!(e["error"].as_str().unwrap().contains(field), "{bad}: {e}");
    }
    for (path, bad, field) in [
        (
            "location",
            json!({"phone": "5511988880001", "latitude": 91.0, "longitude": 0.0}),
            "latitude",
        ),
        (
            "location",
            json!({"phone": "5511988880001", "latitude": "x", "longitude": 0.0}),
            "latitude",
        ),
        (
            "location",
            json!({"phone": "5511988880001", "latitude": 1.0, "longitude": 181.0}),
            "longitude",
        ),
        (
            "location",
            json!({"phone": "5511988880001", "latitude": 1.0}),
            "longitude",
        ),
        (
            "contact",
            json!({"phone": "5511988880001", "contactName": "", "contactPhone": "5511977770000"}),
            "contactName",
        ),
        (
            "contact",
            json!({"phone": "5511988880001", "contactName": "Ana", "contactPhone": "x"}),
            "contactPhone",
        ),
    ] {
        let url = format!("/tx/message/send/{path}");
        let (code, e) = TestApp::call(app.post(&url).json(&bad)).await;
        assert_eq!(code, 400, "{bad}");
        assert!(e["error"].as_str().unwrap().contains(field), "{bad}: {e}");
    }
    let edit = json!({"phone": "5511988880001", "messageId": "X", "newText": ""});
    let (code, e) = TestApp::call(app.post("/tx/message/edit").json(&edit)).await;
    assert_eq!(code, 400, "{e}");
    let after = user_inbox(&wa, "5511988880001").await;
    assert_eq!(
        after.as_array().unwrap().len(),
        4,
        "refused input sent nothing: {after}"
    );

    // Deleting our text for everyone reaches the user as a revoke.
    let (code, b) = TestApp::call(
        app.post("/tx/message/delete")
            .json(&json!({"phone": "5511988880001", "messageId": id, "forMe": false})),
    )
    .await;
    assert_eq!((code, b["messageId"].clone()), (200, json!(id)), "{b}");
    let seen = wait_inbox(&wa, "5511988880001", 5).await;
    assert_eq!(seen[4]["type"], "protocol", "{seen}");
    // Deleting it for me too is an app-state write (tests/api/chat_actions.rs checks it).
    let (code, b) = TestApp::call(
        app.post("/tx/message/delete")
            .json(&json!({"phone": "5511988880001", "messageId": id, "forMe": true})),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let (code, e) = TestApp::call(
        app.post("/tx/message/delete")
            .json(&json!({"phone": "5511988880001"})),
    )
    .await;
    assert_eq!(code, 400, "{e}");
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_by_qr_then_disconnect_reconnect_and_logout_on_sqlite() {
    lifecycle(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_by_qr_then_disconnect_reconnect_and_logout_on_postgres() {
    lifecycle(Db::Postgres).await;
}

/// QR pairing, connected state, disconnect and reconnect, a server restart that resumes the
/// session from the stored keys, logout that deletes them.
async fn lifecycle(db: Db) {
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    app.create_session("wa1").await;
    // No QR before connecting.
    assert_eq!(
        app.get_json("/wa1/qr").await,
        json!({"status": "disconnected"})
    );

    let (code, b) = TestApp::call(app.post("/wa1/connect")).await;
    assert_eq!(code, 200);
    assert_eq!(
        b,
        json!({"message": "scan QR code to authenticate", "status": "connecting", "qr": "/wa1/qr"})
    );

    let qr = poll(&app, "/wa1/qr", Duration::from_secs(15), |b| {
        b.get("code").is_some()
    })
    .await;
    assert_eq!(qr["status"], "connecting");
    assert!(
        qr["qr"]
            .as_str()
            .unwrap()
            .starts_with("data:image/png;base64,")
    );
    let img = app.get("/wa1/qr?format=image").send().await.unwrap();
    assert_eq!(img.headers()["content-type"], "image/png");
    assert_eq!(&img.bytes().await.unwrap()[..4], b"\x89PNG");

    // wamock plays the phone and scans it.
    let scanned: Value = reqwest::Client::new()
        .post(format!("{}/admin/scan-qr", wa.http_url()))
        .json(&json!({"qr": qr["code"], "phone": "5511999990101", "pushName": "Owner"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        scanned["jid"], "5511999990101:1@s.whatsapp.net",
        "{scanned}"
    );

    let st = wait_status(&app, "wa1", "connected", Duration::from_secs(40)).await;
    assert_eq!(st["phone"], "5511999990101", "{st}");
    assert!(
        st["deviceJid"]
            .as_str()
            .unwrap()
            .starts_with("5511999990101"),
        "{st}"
    );
    assert_eq!(
        app.get_json("/wa1/qr").await,
        json!({"status": "connected"})
    );
    let (_, again) = TestApp::call(app.post("/wa1/connect")).await;
    assert_eq!(
        again,
        json!({"message": "session connected", "status": "connected"})
    );

    // Disconnect keeps the pairing: the next connect logs in without a QR.
    let (code, b) = TestApp::call(app.post("/wa1/disconnect")).await;
    assert_eq!((code, b), (200, json!({"message": "session disconnected"})));
    assert_eq!(app.get_json("/wa1/status").await["status"], "disconnected");
    let (_, b) = TestApp::call(app.post("/wa1/connect")).await;
    assert_eq!(b["status"], "connecting");
    assert!(b.get("qr").is_none(), "a paired session needs no QR: {b}");
    wait_status(&app, "wa1", "connected", Duration::from_secs(40)).await;
    let listed = devices(&wa).await;
    assert_eq!(listed[0]["sockets"], 1, "{listed}");

    // A restart of the server: the paired session reconnects by itself, no QR, one socket.
    let app = app.restart().await;
    let st = wait_status(&app, "wa1", "connected", Duration::from_secs(40)).await;
    assert_eq!(st["phone"], "5511999990101", "{st}");
    assert_eq!(
        app.get_json("/wa1/qr").await,
        json!({"status": "connected"})
    );
    let listed = devices(&wa).await;
    assert_eq!(listed[0]["sockets"], 1, "{listed}");

    let (code, b) = TestApp::call(app.post("/wa1/logout")).await;
    assert_eq!(
        (code, b),
        (200, json!({"message": "logged out successfully"}))
    );
    let st = app.get_json("/wa1/status").await;
    assert_eq!(st["status"], "disconnected");
    assert!(
        st.get("deviceJid").is_none() && st.get("phone").is_none(),
        "{st}"
    );
    // Logged out: the keys are gone, the next connect asks for a QR again.
    let (_, b) = TestApp::call(app.post("/wa1/connect")).await;
    assert_eq!(b["message"], "scan QR code to authenticate", "{b}");
    wa.stop().await;
}

#[tokio::test]
async fn pairphone_validates_the_phone() {
    let Some(app) = spawn_with(Db::Sqlite, |_| {}).await else {
        return;
    };
    app.create_session("pp").await;
    for bad in [
        json!({}),
        json!({"phone": ""}),
        json!({"phone": "12ab"}),
        json!({"phone": 5511}),
    ] {
        let (code, e) = TestApp::call(app.post("/pp/pairphone").json(&bad)).await;
        assert_eq!(code, 400, "{bad}");
        assert!(e["error"].as_str().unwrap().contains("phone"), "{e}");
    }
    let (code, _) = TestApp::call(
        app.post("/ghost/pairphone")
            .json(&json!({"phone": "5511999990000"})),
    )
    .await;
    assert_eq!(code, 404);
}

/// `pairphone` on a session that was never connected connects it first; when WhatsApp does not
/// answer (here: nothing listens where it should be), the answer is a 409 that says so, not a
/// 502 from a pairing request sent to a socket that never opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairphone_while_whatsapp_is_unreachable_is_a_clear_409() {
    let port = crate::process::free_port();
    let Some(app) = spawn_with(Db::Sqlite, move |c| {
        c.whatsapp_server_url = Some(format!("ws://127.0.0.1:{port}/ws/chat"));
    })
    .await
    else {
        return;
    };
    app.create_session("far").await;
    let (code, e) = TestApp::call(
        app.post("/far/pairphone")
            .json(&json!({"phone": "5511999990000"})),
    )
    .await;
    assert_eq!(code, 409, "{e}");
    let msg = e["error"].as_str().unwrap();
    assert!(msg.contains("has not reached WhatsApp"), "{msg}");
    assert!(msg.contains("/far/qr"), "{msg}");
    // The status says why it is not connecting, instead of `connecting` and nothing else.
    let st = crate::wa::poll(&app, "/far/status", Duration::from_secs(30), |b| {
        b.get("statusReason").is_some()
    })
    .await;
    assert_eq!(st["status"], "connecting", "{st}");
    let why = st["statusReason"].as_str().unwrap();
    assert!(why.starts_with("cannot reach WhatsApp: "), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_and_sent_messages_are_stored_and_queued_as_events_on_sqlite() {
    messages_flow(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incoming_and_sent_messages_are_stored_and_queued_as_events_on_postgres() {
    messages_flow(Db::Postgres).await;
}

async fn messages_flow(db: Db) {
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    app.create_session("rx").await;
    pair(&app, &wa, "rx", "5511999990401").await;
    let user_jid = user(&wa, "5511988880401").await;
    // The user writes to the session.
    let r = reqwest::Client::new()
        .post(format!("{}/admin/users/5511988880401/send", wa.http_url()))
        .json(&json!({"to": "5511999990401@s.whatsapp.net", "text": "hi bridge"}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    let path = format!("/rx/chat/messages?chatId={user_jid}");
    let got = poll(&app, &path, Duration::from_secs(20), |b| {
        b.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let m = &got[0];
    assert_eq!(m["content"], "hi bridge", "{got}");
    assert_eq!(
        (m["type"].clone(), m["fromMe"].clone(), m["status"].clone()),
        (json!("text"), json!(false), json!("delivered"))
    );
    assert_eq!(m["chatJid"], user_jid.as_str());

    // The session answers; both are listed newest first.
    let (code, sent) = TestApp::call(
        app.post("/rx/message/send/text")
            .json(&json!({"phone": "5511988880401", "text": "hello back"})),
    )
    .await;
    assert_eq!(code, 200, "{sent}");
    let got = app.get_json(&path).await;
    let contents: Vec<&str> = got
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["hello back", "hi bridge"], "{got}");
    assert_eq!(got[0]["msgId"], sent["messageId"]);
    assert_eq!(got[0]["fromMe"], true);
    // limit and offset.
    let one = app.get_json(&format!("{path}&limit=1&offset=1")).await;
    assert_eq!(one.as_array().unwrap().len(), 1);
    assert_eq!(one[0]["content"], "hi bridge");

    let chats = app.get_json("/rx/chat/list").await;
    assert_eq!(chats[0]["jid"], user_jid.as_str(), "{chats}");
    assert_eq!(chats[0]["unreadCount"], 1, "{chats}");
    let info = app
        .get_json(&format!("/rx/chat/info?chatId={user_jid}"))
        .await;
    assert_eq!(info["jid"], user_jid.as_str());
    let (code, e) = TestApp::call(app.get("/rx/chat/info?chatId=nobody@s.whatsapp.net")).await;
    assert_eq!((code, e), (404, json!({"error": "chat not found"})));
    for bad in [
        "/rx/chat/messages",
        "/rx/chat/info",
        "/rx/chat/list?limit=x",
        "/rx/chat/list?offset=-1",
    ] {
        let (code, e) = TestApp::call(app.get(bad)).await;
        assert_eq!(code, 400, "{bad}: {e}");
    }

    // A reaction to the user's message, then its removal (empty emoji).
    let hi = got.as_array().unwrap()[1]["msgId"]
        .as_str()
        .unwrap()
        .to_string();
    for emoji in ["❤️", ""] {
        let body = json!({"phone": "5511988880401", "messageId": hi, "emoji": emoji});
        let (code, b) = TestApp::call(app.post("/rx/message/react").json(&body)).await;
        assert_eq!(code, 200, "{b}");
    }
    let seen = wait_inbox(&wa, "5511988880401", 3).await;
    let reactions: Vec<(&str, &str)> = seen
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["type"] == "reaction")
        .map(|m| {
            (
                m["type"].as_str().unwrap(),
                m["text"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(reactions, [("reaction", "❤️"), ("reaction", "")], "{seen}");
    for (bad, field) in [
        (json!({"phone": "5511988880401", "emoji": "x"}), "messageId"),
        (json!({"phone": "5511988880401", "messageId": hi}), "emoji"),
        (
            json!({"phone": "nope", "messageId": hi, "emoji": "x"}),
            "phone",
        ),
    ] {
        let (code, e) = TestApp::call(app.post("/rx/message/react").json(&bad)).await;
        assert_eq!(code, 400, "{bad}");
        assert!(e["error"].as_str().unwrap().contains(field), "{bad}: {e}");
    }

    // Each message and its event were written together: two events wait in the outbox.
    let store = app.store();
    let session = store.get_session("rx").await.unwrap().unwrap();
    let events: Vec<_> = store
        .pending_events(session.id, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e.event.as_str(), "message.received" | "message.sent"))
        .collect();
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["message.received", "message.sent"]);
    assert_eq!(events[0].payload.0["sessionId"], "rx");
    assert_eq!(events[0].payload.0["message"]["content"], "hi bridge");
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pair_by_phone_code() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("pc").await;
    let (code, b) = TestApp::call(
        app.post("/pc/pairphone")
            .json(&json!({"phone": "+55 11 99999-0501"})),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let typed = b["code"].as_str().unwrap().to_string();
    assert_eq!((typed.len(), typed.find('-')), (9, Some(4)), "{b}");
    let r = reqwest::Client::new()
        .post(format!("{}/admin/pair-code", wa.http_url()))
        .json(&json!({"phone": "5511999990501", "code": typed}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "{}",
        r.text().await.unwrap_or_default()
    );
    let st = wait_status(&app, "pc", "connected", Duration::from_secs(30)).await;
    assert_eq!(st["phone"], "5511999990501", "{st}");
    // Paired: asking again is a conflict, not a new code.
    let (code, e) = TestApp::call(
        app.post("/pc/pairphone")
            .json(&json!({"phone": "5511999990501"})),
    )
    .await;
    assert_eq!(code, 409, "{e}");
    wa.stop().await;
}
