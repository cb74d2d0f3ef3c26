//! Calls over HTTP, through whatsapp-rust, against wamock: a simulated user rings the
//! session, the offer (and the caller's hang-up) reach the outbox as `call.*` events, and the
//! session's reject (by hand or with `autoRejectCalls`) reaches wamock for that call id.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Db, TestApp};
use crate::incoming_events::{admin, outbox, wait_event};
use crate::wa::{app_on, app_with_wamock, pair, user};

const LIMIT: Duration = Duration::from_secs(20);

/// The calls wamock recorded for `phone`, once `done` accepts them.
async fn wait_calls(wa: &wamock::Server, phone: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let got: Value = reqwest::get(format!("{}/admin/accounts/{phone}/calls", wa.http_url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "calls never got there: {got}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn answers<'a>(calls: &'a Value, id: &str) -> Vec<&'a str> {
    calls
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["callId"] == id)
        .flat_map(|c| c["answers"].as_array().unwrap())
        .filter_map(|a| a["action"].as_str())
        .collect()
}

async fn reject(app: &TestApp, name: &str, body: Value) -> (u16, Value) {
    TestApp::call(app.post(&format!("/{name}/call/reject")).json(&body)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_is_announced_and_rejected_on_sqlite() {
    offer_and_reject(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_is_announced_and_rejected_on_postgres() {
    offer_and_reject(Db::Postgres).await;
}

async fn offer_and_reject(db: Db) {
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    let (phone, caller) = ("5511999997001", "5511988887001");
    let caller_jid = user(&wa, caller).await;
    app.create_session("cl").await;
    let (code, e) = reject(&app, "cl", json!({"callFrom": caller, "callId": "X"})).await;
    assert_eq!(code, 409, "not connected: {e}");
    pair(&app, &wa, "cl", phone).await;
    let session = app.store().get_session("cl").await.unwrap().unwrap().id;

    // The user rings: call.offer with the caller and the call id; the client acked the offer.
    let placed = admin(&wa, &format!("/users/{caller}/call"), json!({"to": phone})).await;
    let id = placed["callId"].as_str().unwrap().to_string();
    let offer = wait_event(&app, session, "call.offer", |p| p["CallID"] == id.as_str()).await;
    assert_eq!(offer["From"], caller_jid.as_str(), "{offer}");
    assert_eq!(offer["CallCreator"], caller_jid.as_str(), "{offer}");
    assert_eq!(offer["RemotePlatform"], "android", "{offer}");
    assert_eq!(offer["sessionId"], "cl", "{offer}");
    wait_calls(&wa, phone, |c| answers(c, &id).contains(&"receipt")).await;

    // Bad input first: nothing reaches wamock.
    for (body, field) in [
        (json!({}), "callFrom"),
        (json!({"callId": id}), "callFrom"),
        (json!({"callFrom": caller}), "callId"),
        (json!({"callFrom": caller, "callId": "  "}), "callId"),
        (json!({"callFrom": "not a phone", "callId": id}), "callFrom"),
        (
            json!({"callFrom": "123456789@g.us", "callId": id}),
            "callFrom",
        ),
    ] {
        let (code, e) = reject(&app, "cl", body.clone()).await;
        assert_eq!(code, 400, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().contains(field), "{body}: {e}");
    }
    let (code, e) = reject(
        &app,
        "cl",
        json!({"callFrom": caller, "callId": "NOSUCHCALL"}),
    )
    .await;
    assert_eq!(code, 404, "{e}");
    let (code, e) = reject(
        &app,
        "cl",
        json!({"callFrom": "5511900000000", "callId": id}),
    )
    .await;
    assert_eq!(code, 404, "another caller: {e}");
    let calls = wait_calls(&wa, phone, |_| true).await;
    assert!(!answers(&calls, &id).contains(&"reject"), "{calls}");

    // The reject reaches wamock for that call, from the session's device.
    let (code, r) = reject(&app, "cl", json!({"callFrom": caller, "callId": id})).await;
    assert_eq!((code, r), (200, json!({})));
    let calls = wait_calls(&wa, phone, |c| answers(c, &id).contains(&"reject")).await;
    let rejected = calls[0]["answers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["action"] == "reject")
        .unwrap();
    assert!(
        rejected["from"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{phone}:")),
        "{calls}"
    );

    // A second call the caller hangs up on: call.terminate for it.
    let placed = admin(
        &wa,
        &format!("/users/{caller}/call"),
        json!({"to": phone, "video": true}),
    )
    .await;
    let second = placed["callId"].as_str().unwrap().to_string();
    wait_event(&app, session, "call.offer", |p| {
        p["CallID"] == second.as_str()
    })
    .await;
    admin(
        &wa,
        &format!("/users/{caller}/hangup"),
        json!({"to": phone, "callId": second}),
    )
    .await;
    let end = wait_event(&app, session, "call.terminate", |p| {
        p["CallID"] == second.as_str()
    })
    .await;
    assert_eq!(end["From"], caller_jid.as_str(), "{end}");
    let names: Vec<String> = outbox(&app, session)
        .await
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.as_str() == "call.offer").count(),
        2,
        "{names:?}"
    );
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_reject_calls_rejects_without_an_api_call() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    let (phone, caller) = ("5511999997011", "5511988887011");
    user(&wa, caller).await;
    app.create_session("ar").await;
    pair(&app, &wa, "ar", phone).await;
    let session = app.store().get_session("ar").await.unwrap().unwrap().id;
    let (code, b) = TestApp::call(
        app.post("/ar/settings")
            .json(&json!({"autoRejectCalls": true})),
    )
    .await;
    assert_eq!(code, 200, "{b}");

    let placed = admin(&wa, &format!("/users/{caller}/call"), json!({"to": phone})).await;
    let id = placed["callId"].as_str().unwrap().to_string();
    let calls = wait_calls(&wa, phone, |c| answers(c, &id).contains(&"reject")).await;
    assert!(answers(&calls, &id).contains(&"receipt"), "{calls}");
    // The offer is still announced.
    wait_event(&app, session, "call.offer", |p| p["CallID"] == id.as_str()).await;
    wa.stop().await;
}
