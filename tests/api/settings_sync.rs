//! Settings that reach WhatsApp, over HTTP, through whatsapp-rust, against wamock: privacy
//! pushed at once or at the next connect and read back, the default disappearing timer,
//! `alwaysOnline` as a subscribed user hears it, and `syncHistory` keeping history out.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Db, TestApp};
use crate::incoming_events::{admin, outbox, wait_event};
use crate::wa::{
    admin_get, app_on, app_with_wamock, devices, pair, poll, user, wait_admin, wait_status,
};

const LIMIT: Duration = Duration::from_secs(20);

async fn post_settings(app: &TestApp, name: &str, body: Value) -> Value {
    let (code, b) = TestApp::call(app.post(&format!("/{name}/settings")).json(&body)).await;
    assert_eq!(code, 200, "{body}: {b}");
    b
}

async fn kick(wa: &wamock::Server, reason: &str) {
    let jid = devices(wa).await[0]["jid"].as_str().unwrap().to_string();
    admin(
        wa,
        &format!("/devices/{jid}/kick"),
        json!({"reason": reason}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_is_pushed_and_read_back_on_sqlite() {
    privacy(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privacy_is_pushed_and_read_back_on_postgres() {
    privacy(Db::Postgres).await;
}

async fn privacy(db: Db) {
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    let phone = "5511999996001";
    let privacy = format!("/admin/accounts/{phone}/privacy");
    app.create_session("ps").await;

    // Stored before the first connect: kept, pushed once the session is connected.
    let b = post_settings(
        &app,
        "ps",
        json!({"lastSeen": "contacts", "defaultDisappearingTimer": "7d"}),
    )
    .await;
    assert_eq!(b["lastSeen"], "contacts");
    assert!(b.get("privacySyncedAt").is_none(), "{b}");
    pair(&app, &wa, "ps", phone).await;
    let got = wait_admin(&wa, &privacy, |v| {
        v["categories"]["last"] == "contacts" && v["disappearingDuration"] == 604_800
    })
    .await;
    assert_eq!(got["categories"]["online"], "all", "{got}");
    // Read back: WhatsApp's default for `status` is `contacts`, not our `all`.
    let synced = poll(&app, "/ps/settings", LIMIT, |b| {
        b.get("privacySyncedAt").is_some()
    })
    .await;
    assert_eq!(synced["lastSeen"], "contacts", "{synced}");
    assert_eq!(synced["status"], "contacts", "{synced}");
    assert_eq!(synced["defaultDisappearingTimer"], "7d", "{synced}");

    // Connected: every changed field reaches WhatsApp before the answer.
    let b = post_settings(
        &app,
        "ps",
        json!({
            "online": "match_last_seen",
            "profilePhoto": "none",
            "status": "none",
            "readReceipts": "none",
            "groupAdd": "contacts",
            "callAdd": "known",
            "defaultDisappearingTimer": "24h",
        }),
    )
    .await;
    let got = admin_get(&wa, &privacy).await;
    let c = &got["categories"];
    assert_eq!(
        (
            &c["online"],
            &c["profile"],
            &c["status"],
            &c["readreceipts"],
            &c["groupadd"],
            &c["calladd"],
            &got["disappearingDuration"],
        ),
        (
            &json!("match_last_seen"),
            &json!("none"),
            &json!("none"),
            &json!("none"),
            &json!("contacts"),
            &json!("known"),
            &json!(86_400),
        ),
        "{got}"
    );
    assert_eq!(b["readReceipts"], "none", "{b}");
    let first_sync = b["privacySyncedAt"].as_str().unwrap().to_string();

    // Changed on the phone: the next POST reads it back.
    admin(
        &wa,
        &format!("/accounts/{phone}/privacy"),
        json!({"last": "none"}),
    )
    .await;
    let b = post_settings(&app, "ps", json!({"alwaysOnline": false})).await;
    assert_eq!(b["lastSeen"], "none", "{b}");
    assert!(
        b["privacySyncedAt"].as_str().unwrap() > first_sync.as_str(),
        "{b}"
    );
    // ... and so does a reconnect.
    admin(
        &wa,
        &format!("/accounts/{phone}/privacy"),
        json!({"profile": "contacts"}),
    )
    .await;
    kick(&wa, "515").await;
    poll(&app, "/ps/settings", LIMIT, |b| {
        b["profilePhoto"] == "contacts"
    })
    .await;

    // Stored while disconnected, pushed at the next connect.
    let (code, _) = TestApp::call(app.post("/ps/disconnect")).await;
    assert_eq!(code, 200);
    let b = post_settings(&app, "ps", json!({"lastSeen": "all", "callAdd": "all"})).await;
    assert_eq!(
        (&b["lastSeen"], &b["callAdd"]),
        (&json!("all"), &json!("all"))
    );
    let got = admin_get(&wa, &privacy).await;
    assert_eq!(got["categories"]["last"], "none", "not pushed yet: {got}");
    let (code, _) = TestApp::call(app.post("/ps/connect")).await;
    assert_eq!(code, 200);
    wait_status(&app, "ps", "connected", LIMIT).await;
    wait_admin(&wa, &privacy, |v| {
        v["categories"]["last"] == "all" && v["categories"]["calladd"] == "all"
    })
    .await;
    let id = app.store().get_session("ps").await.unwrap().unwrap().id;
    assert!(eventually_cleared(&app, id).await, "pending never cleared");
    let synced = app.get_json("/ps/settings").await;
    assert_eq!(
        (&synced["lastSeen"], &synced["callAdd"]),
        (&json!("all"), &json!("all"))
    );
    wa.stop().await;
}

/// Whether the row's pending list empties within the limit.
async fn eventually_cleared(app: &TestApp, session: uuid::Uuid) -> bool {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while tokio::time::Instant::now() < deadline {
        let row = app.store().get_settings(session).await.unwrap().unwrap();
        if row.privacy_pending.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The presences `user` heard from `phone`, oldest first: `true` = available.
async fn heard(wa: &wamock::Server, user: &str, phone: &str) -> Vec<bool> {
    let all = admin_get(wa, &format!("/admin/users/{user}/presence")).await;
    all.as_array()
        .unwrap()
        .iter()
        .filter(|p| p["from"] == format!("{phone}@s.whatsapp.net"))
        .map(|p| p["available"] == true)
        .collect()
}

async fn wait_heard(wa: &wamock::Server, user: &str, phone: &str, n: usize, last: bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let got = heard(wa, user, phone).await;
        if got.len() >= n && got.last() == Some(&last) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the user heard only {got:?} (wanted {n}, last {last})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_online_keeps_the_session_available() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    let (phone, friend) = ("5511999996011", "5511988886011");
    user(&wa, friend).await;
    app.create_session("ao").await;
    pair(&app, &wa, "ao", phone).await;
    admin(
        &wa,
        &format!("/users/{friend}/presence/subscribe"),
        json!({"to": phone}),
    )
    .await;
    wait_heard(&wa, friend, phone, 1, true).await;

    // Gone away by hand; turning alwaysOnline on announces the session at once.
    let n = heard(&wa, friend, phone).await.len();
    let (code, b) =
        TestApp::call(app.post("/ao/presence").json(&json!({"available": false}))).await;
    assert_eq!(code, 200, "{b}");
    wait_heard(&wa, friend, phone, n + 1, false).await;
    post_settings(&app, "ao", json!({"alwaysOnline": true})).await;
    wait_heard(&wa, friend, phone, n + 2, true).await;

    // Away again, then the connection drops: back online after the reconnect.
    let (code, _) =
        TestApp::call(app.post("/ao/presence").json(&json!({"available": false}))).await;
    assert_eq!(code, 200);
    wait_heard(&wa, friend, phone, n + 3, false).await;
    kick(&wa, "515").await;
    wait_heard(&wa, friend, phone, n + 4, true).await;
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_history_off_keeps_history_out_on_sqlite() {
    history_off(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_history_off_keeps_history_out_on_postgres() {
    history_off(Db::Postgres).await;
}

async fn history_off(db: Db) {
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    let phone = "5511999996021";
    let (off_chat, on_chat) = (
        "5511977776021@s.whatsapp.net",
        "5511977776022@s.whatsapp.net",
    );
    app.create_session("hs").await;
    pair(&app, &wa, "hs", phone).await;
    let session = app.store().get_session("hs").await.unwrap().unwrap().id;
    let device = devices(&wa).await[0]["jid"].as_str().unwrap().to_string();
    let history = |chat: &str, id: &str| {
        json!({"conversations": [{"id": chat, "name": "Old friend", "messages": [
            {"id": id, "text": "from long ago", "timestamp": 1_700_000_000u64},
        ]}]})
    };

    post_settings(&app, "hs", json!({"syncHistory": false})).await;
    admin(
        &wa,
        &format!("/devices/{device}/history"),
        history(off_chat, "HISTOFF0000000000001"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let chats = app.get_json("/hs/chat/list").await;
    assert!(
        !chats.to_string().contains(off_chat),
        "history stored while syncHistory is off: {chats}"
    );
    assert!(
        !outbox(&app, session)
            .await
            .iter()
            .any(|(n, _)| n == "history.sync"),
        "history.sync announced while syncHistory is off"
    );

    // The same push with syncHistory on is stored (and the first one still is not).
    post_settings(&app, "hs", json!({"syncHistory": true})).await;
    admin(
        &wa,
        &format!("/devices/{device}/history"),
        history(on_chat, "HISTON00000000000001"),
    )
    .await;
    wait_event(&app, session, "history.sync", |_| true).await;
    let chats = app.get_json("/hs/chat/list").await;
    assert!(chats.to_string().contains(on_chat), "{chats}");
    assert!(!chats.to_string().contains(off_chat), "{chats}");
    let listed = app
        .get_json(&format!("/hs/chat/messages?chatId={off_chat}"))
        .await;
    assert_eq!(listed, json!([]), "{listed}");
    wa.stop().await;
}
