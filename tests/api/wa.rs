//! The wamock harness shared by the engine-driven tests: a server paired with wamock,
//! pairing by QR, simulated users and what they received.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Db, TestApp, spawn_with};

pub async fn app_with_wamock() -> Option<(TestApp, wamock::Server)> {
    app_on(Db::Sqlite).await
}

pub async fn app_on(db: Db) -> Option<(TestApp, wamock::Server)> {
    let server = wamock::Server::start("127.0.0.1:0")
        .await
        .expect("wamock starts");
    let url = server.ws_url();
    let app = spawn_with(db, move |c| c.whatsapp_server_url = Some(url)).await?;
    Some((app, server))
}

/// Polls `GET path` until `done` accepts the body; panics with the last body after `limit`.
pub async fn poll(
    app: &TestApp,
    path: &str,
    limit: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let body = app.get_json(path).await;
        if done(&body) {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET {path} never got there: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn wait_status(app: &TestApp, name: &str, want: &str, limit: Duration) -> Value {
    poll(app, &format!("/{name}/status"), limit, |b| {
        b["status"] == want
    })
    .await
}

/// Connects `name`, scans its QR as `phone` on wamock, waits until connected.
pub async fn pair(app: &TestApp, wa: &wamock::Server, name: &str, phone: &str) {
    let (code, _) = TestApp::call(app.post(&format!("/{name}/connect"))).await;
    assert_eq!(code, 200);
    let qr = poll(app, &format!("/{name}/qr"), Duration::from_secs(15), |b| {
        b.get("code").is_some()
    })
    .await;
    let r = reqwest::Client::new()
        .post(format!("{}/admin/scan-qr", wa.http_url()))
        .json(&json!({"qr": qr["code"], "phone": phone}))
        .send()
        .await
        .unwrap();
    assert!(
        r.status().is_success(),
        "scan-qr: {}",
        r.text().await.unwrap_or_default()
    );
    wait_status(app, name, "connected", Duration::from_secs(40)).await;
}

/// What a simulated user's client received, decrypted, in arrival order.
pub async fn user_inbox(wa: &wamock::Server, phone: &str) -> Value {
    let url = format!("{}/admin/users/{phone}/inbox", wa.http_url());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Waits until the user received at least `n` messages.
pub async fn wait_inbox(wa: &wamock::Server, phone: &str, n: usize) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = user_inbox(wa, phone).await;
        if got.as_array().is_some_and(|a| a.len() >= n) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the user got only {got}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// wamock's view of the paired devices and their live sockets.
pub async fn devices(wa: &wamock::Server) -> Value {
    let url = format!("{}/admin/devices", wa.http_url());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// A simulated user on wamock: a phone of its own, with a real Signal identity.
pub async fn user(wa: &wamock::Server, phone: &str) -> String {
    let b: Value = reqwest::Client::new()
        .post(format!("{}/admin/users", wa.http_url()))
        .json(&json!({"phone": phone, "pushName": "Simulated"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    b["jid"]
        .as_str()
        .unwrap_or_else(|| panic!("no user: {b}"))
        .to_string()
}

/// `GET` on wamock's HTTP side (`path` from the root, e.g. `/admin/accounts/...`), as JSON.
pub async fn admin_get(wa: &wamock::Server, path: &str) -> Value {
    reqwest::get(format!("{}{path}", wa.http_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls a wamock admin `GET` (for up to 20 s) until `done` accepts it.
pub async fn wait_admin(wa: &wamock::Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let got = admin_get(wa, path).await;
        if done(&got) {
            return got;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "GET {path} never got there: {got}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The simulated user `from` sends `to` a JPEG image with `caption` through wamock; the
/// message id.
pub async fn user_sends_image(
    wa: &wamock::Server,
    from: &str,
    to: &str,
    jpeg: &[u8],
    caption: &str,
) -> String {
    use base64::{Engine as _, prelude::BASE64_STANDARD};
    let sent: Value = reqwest::Client::new()
        .post(format!("{}/admin/users/{from}/send", wa.http_url()))
        .json(&json!({"to": to, "media": {
            "type": "image", "data": BASE64_STANDARD.encode(jpeg),
            "mimetype": "image/jpeg", "caption": caption}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    sent["id"].as_str().expect("id").to_string()
}
