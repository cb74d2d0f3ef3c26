//! Status stories against wamock: a contact of the session (a simulated user, a real
//! whatsapp-rust client) receives each story over `status@broadcast` and decrypts it
//! itself (sender key + per-device distribution); media are checked by the hash of the
//! bytes its client downloaded.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Db, TestApp};
use crate::wa::{app_on, pair, poll, user, user_inbox};

fn file(magic: &[u8], len: usize, seed: u8) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend((b.len()..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed)));
    b
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A multipart body: a `caption` field and the file in `file` with its content type.
fn form(bytes: &[u8], content_type: &str, caption: &str) -> (String, Vec<u8>) {
    let boundary = "status-test-boundary-7d1e";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"caption\"\r\n\r\n{caption}\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"story\"\r\nContent-Type: {content_type}\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

fn error_of(code: u16, body: &Value, want_code: u16, needle: &str) {
    assert_eq!(code, want_code, "{body}");
    let e = body["error"].as_str().unwrap_or_default();
    assert!(e.contains(needle), "{needle:?} not in {body}");
}

/// Pairs `name` as `phone` and makes `contact` (a simulated user) one of its contacts by
/// writing to it.
async fn session_with_contact(
    app: &TestApp,
    wa: &wamock::Server,
    name: &str,
    phone: &str,
    contact: &str,
) {
    app.create_session(name).await;
    pair(app, wa, name, phone).await;
    user(wa, contact).await;
    let r = reqwest::Client::new()
        .post(format!("{}/admin/users/{contact}/send", wa.http_url()))
        .json(&json!({"to": format!("{phone}@s.whatsapp.net"), "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    poll(
        app,
        &format!("/{name}/contact/list"),
        Duration::from_secs(20),
        |b| b.as_object().is_some_and(|o| !o.is_empty()),
    )
    .await;
}

/// The inbox entry of message `id`, once `done` accepts it.
async fn story(wa: &wamock::Server, phone: &str, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let inbox = user_inbox(wa, phone).await;
        if let Some(e) = inbox
            .as_array()
            .and_then(|a| a.iter().find(|e| e["id"] == id && done(e)))
        {
            return e.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "story {id} never arrived: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send_story(app: &TestApp, name: &str, body: Value) -> String {
    let (code, got) = TestApp::call(app.post(&format!("/{name}/status/send")).json(&body)).await;
    assert_eq!(code, 200, "{got}");
    assert!(got["timestamp"].as_i64().is_some_and(|t| t > 0), "{got}");
    got["messageId"].as_str().unwrap().to_string()
}

async fn stories_reach_a_contact(db: Db, name: &str, phone: &str, contact: &str) {
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    session_with_contact(&app, &wa, name, phone, contact).await;
    let me = format!("{phone}@s.whatsapp.net");

    // Text: the contact decrypts it from status@broadcast, sent by the session's account.
    let id = send_story(&app, name, json!({"text": "a text story"})).await;
    let got = story(&wa, contact, &id, |_| true).await;
    assert_eq!(got["chat"], "status@broadcast", "{got}");
    assert_eq!(got["from"], me.as_str(), "{got}");
    assert_eq!(got["text"], "a text story", "{got}");
    assert_eq!(got["backgroundArgb"], 0xFF1E_6E4Fu32, "{got}");

    // Image (base64) with a caption: the bytes the contact's client downloaded.
    let photo = file(b"\x89PNG\r\n\x1a\n", 30_000, 3);
    let id = send_story(&app, name, json!({"image": b64(&photo), "caption": "look"})).await;
    let got = story(&wa, contact, &id, |e| {
        e["sha256"].is_string() || e["mediaError"].is_string()
    })
    .await;
    assert_eq!(got["chat"], "status@broadcast", "{got}");
    assert_eq!(got["type"], "image", "{got}");
    assert_eq!(got["caption"], "look", "{got}");
    assert_eq!(got["mimetype"], "image/png", "{got}");
    assert_eq!(got["sha256"], sha(&photo), "{got}");

    // Video as a data URL.
    let clip = file(b"\0\0\0\x20ftypisom\0\0\x02\0", 60_000, 4);
    let id = send_story(
        &app,
        name,
        json!({"video": format!("data:video/mp4;base64,{}", b64(&clip))}),
    )
    .await;
    let got = story(&wa, contact, &id, |e| {
        e["sha256"].is_string() || e["mediaError"].is_string()
    })
    .await;
    assert_eq!(got["type"], "video", "{got}");
    assert_eq!(got["mimetype"], "video/mp4", "{got}");
    assert_eq!(got["sha256"], sha(&clip), "{got}");

    // 0.2.8's multipart form: a video file (by its content type) with a caption field.
    let reel = file(b"\0\0\0\x20ftypisom\0\0\x02\0", 50_000, 5);
    let (ct, body) = form(&reel, "video/mp4", "from a form");
    let (code, sent) = TestApp::call(
        app.post(&format!("/{name}/status/send"))
            .header("Content-Type", ct)
            .body(body),
    )
    .await;
    assert_eq!(code, 200, "{sent}");
    let id = sent["messageId"].as_str().unwrap();
    let got = story(&wa, contact, id, |e| {
        e["sha256"].is_string() || e["mediaError"].is_string()
    })
    .await;
    assert_eq!(got["chat"], "status@broadcast", "{got}");
    assert_eq!(got["type"], "video", "{got}");
    assert_eq!(got["caption"], "from a form", "{got}");
    assert_eq!(got["sha256"], sha(&reel), "{got}");

    // Privacy: the status category wamock answers (WhatsApp's default, contacts).
    let (code, got) = TestApp::call(app.get(&format!("/{name}/status/privacy"))).await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(
        got,
        json!({"privacy": [{"Type": "contacts", "List": [], "IsDefault": true}]})
    );

    // Bad input.
    let path = format!("/{name}/status/send");
    let (code, e) = TestApp::call(app.post(&path).json(&json!({}))).await;
    error_of(code, &e, 400, "text, image or video is required");
    let (code, e) = TestApp::call(app.post(&path).json(&json!({"image": "%%%"}))).await;
    error_of(code, &e, 400, "image");
    let (code, e) = TestApp::call(
        app.post(&path)
            .json(&json!({"image": b64(&photo), "video": b64(&clip)})),
    )
    .await;
    error_of(code, &e, 400, "either image or video");

    // Not connected: 409.
    let (code, _) = TestApp::call(app.post(&format!("/{name}/disconnect"))).await;
    assert_eq!(code, 200);
    let (code, e) = TestApp::call(app.post(&path).json(&json!({"text": "x"}))).await;
    error_of(code, &e, 409, "not connected");
    let (code, e) = TestApp::call(app.get(&format!("/{name}/status/privacy"))).await;
    error_of(code, &e, 409, "not connected");
}

#[tokio::test]
async fn text_image_and_video_stories_reach_a_contact() {
    stories_reach_a_contact(Db::Sqlite, "st", "5511999990601", "5511988880601").await;
}

#[tokio::test]
async fn stories_reach_a_contact_on_postgres() {
    stories_reach_a_contact(Db::Postgres, "sp", "5511999990602", "5511988880602").await;
}

#[tokio::test]
async fn a_session_without_contacts_is_told_so() {
    let Some((app, wa)) = app_on(Db::Sqlite).await else {
        return;
    };
    app.create_session("s0").await;
    pair(&app, &wa, "s0", "5511999990603").await;
    let (code, e) = TestApp::call(app.post("/s0/status/send").json(&json!({"text": "x"}))).await;
    error_of(code, &e, 400, "no contacts");
}
