//! The session's own profile over HTTP, through whatsapp-rust, against wamock: what the
//! account really set on the server side (wamock's `GET /admin/accounts/{phone}/profile`
//! and its decrypted app state).

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::TestApp;
use crate::wa::{admin_get, app_with_wamock, pair, user, wait_admin};

const PHONE: &str = "5511999995001";
const FRIEND: &str = "5511988885001";

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    TestApp::call(app.post(path).json(&body)).await
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A JPEG-looking file (wamock keeps the bytes as they come).
fn jpeg(tag: u8) -> Vec<u8> {
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
    ];
    b.extend(std::iter::repeat_n(tag, 300));
    b.extend([0xFF, 0xD9]);
    b
}

fn form_with_file(bytes: &[u8]) -> (String, Vec<u8>) {
    let boundary = "profile-test-boundary-41c2";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"me.jpg\"\r\nContent-Type: image/jpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

#[tokio::test]
async fn profile_changes_reach_the_server() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("pf").await;
    let (code, e) = post(&app, "/pf/profile/status", json!({"status": "hi"})).await;
    assert_eq!(code, 409, "not connected yet: {e}");
    user(&wa, FRIEND).await;
    pair(&app, &wa, "pf", PHONE).await;
    let profile_path = format!("/admin/accounts/{PHONE}/profile");

    // About text.
    let (code, r) = post(
        &app,
        "/pf/profile/status",
        json!({"status": "Busy building"}),
    )
    .await;
    assert_eq!((code, r), (200, json!({"status": "Busy building"})));
    let got = wait_admin(&wa, &profile_path, |v| v["status"] == "Busy building").await;
    assert_eq!(got["status"], "Busy building");

    // Push name: presence name and the setting_pushName app-state mutation.
    let (code, r) = post(&app, "/pf/profile/name", json!({"name": "Onwapp Bot"})).await;
    assert_eq!((code, r), (200, json!({"name": "Onwapp Bot"})));
    wait_admin(&wa, &profile_path, |v| v["pushName"] == "Onwapp Bot").await;
    let state = wait_admin(&wa, &format!("/admin/accounts/{PHONE}/app-state"), |v| {
        v.as_array().is_some_and(|a| {
            a.iter()
                .any(|m| m["action"] == "setting_pushName" && m["device"].is_number())
        })
    })
    .await;
    let mine = state
        .as_array()
        .unwrap()
        .iter()
        .rfind(|m| m["action"] == "setting_pushName" && m["device"].is_number())
        .unwrap();
    assert_eq!(mine["value"]["name"], "Onwapp Bot", "{mine}");

    // Picture as base64: wamock holds exactly these bytes under the id we answered.
    let first = jpeg(1);
    let b64 = base64::engine::general_purpose::STANDARD.encode(&first);
    let (code, r) = post(&app, "/pf/profile/picture", json!({"image": b64})).await;
    assert_eq!(code, 200, "{r}");
    let id = r["pictureId"].as_str().unwrap().to_string();
    assert!(!id.is_empty());
    let got = admin_get(&wa, &profile_path).await;
    assert_eq!(got["pictureId"], id.as_str());
    assert_eq!(got["pictureSha256"], sha(&first));
    // A simulated user's client asking for the session's picture gets the same one.
    let seen = admin_get(&wa, &format!("/admin/users/{FRIEND}/picture?of={PHONE}")).await;
    assert_eq!(seen["id"], id.as_str(), "{seen}");

    // GET profile: own jid, the new push name, the picture's URL read back from the server.
    let (code, r) = TestApp::call(app.get("/pf/profile")).await;
    assert_eq!(code, 200, "{r}");
    let p = &r["profile"];
    assert_eq!(p["jid"], format!("{PHONE}@s.whatsapp.net"));
    assert_eq!(p["pushName"], "Onwapp Bot");
    assert_eq!(p["status"], "Busy building", "{r}");
    assert!(
        p["pictureUrl"].as_str().is_some_and(|u| u.contains(&id)),
        "{r}"
    );

    // Picture as a data URL, then as a multipart file.
    let second = jpeg(2);
    let data_url = format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&second)
    );
    let (code, r) = post(&app, "/pf/profile/picture", json!({"image": data_url})).await;
    assert_eq!(code, 200, "{r}");
    assert_eq!(
        admin_get(&wa, &profile_path).await["pictureSha256"],
        sha(&second)
    );
    let third = jpeg(3);
    let (ct, body) = form_with_file(&third);
    let (code, r) = TestApp::call(
        app.post("/pf/profile/picture")
            .header("Content-Type", ct)
            .body(body),
    )
    .await;
    assert_eq!(code, 200, "{r}");
    let got = admin_get(&wa, &profile_path).await;
    assert_eq!(got["pictureSha256"], sha(&third));
    assert_eq!(got["pictureId"], r["pictureId"]);

    // Remove: the server forgets it, and GET profile has no picture any more.
    let (code, r) = post(&app, "/pf/profile/picture/remove", json!({})).await;
    assert_eq!((code, r), (200, json!({})));
    let got = admin_get(&wa, &profile_path).await;
    assert!(got["pictureId"].is_null(), "{got}");
    let r = reqwest::get(format!(
        "{}/admin/users/{FRIEND}/picture?of={PHONE}",
        wa.http_url()
    ))
    .await
    .unwrap();
    assert_eq!(r.status().as_u16(), 404, "the user still sees a picture");
    let (_, r) = TestApp::call(app.get("/pf/profile")).await;
    assert!(r["profile"].get("pictureUrl").is_none(), "{r}");
}

#[tokio::test]
async fn bad_profile_input_is_400_naming_the_field() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("pb").await;
    pair(&app, &wa, "pb", "5511999995002").await;
    let cases = [
        ("/pb/profile/name", json!({"name": "  "}), "name"),
        ("/pb/profile/name", json!({}), "name"),
        ("/pb/profile/status", json!({"status": ""}), "status"),
        ("/pb/profile/status", json!({}), "status"),
        ("/pb/profile/picture", json!({}), "image"),
        ("/pb/profile/picture", json!({"image": ""}), "image"),
        (
            "/pb/profile/picture",
            json!({"image": "%%%not base64"}),
            "image",
        ),
        (
            "/pb/profile/picture",
            json!({"image": "data:image/jpeg,plain"}),
            "image",
        ),
    ];
    for (path, body, field) in cases {
        let (code, r) = post(&app, path, body.clone()).await;
        assert_eq!(code, 400, "{path} {body}: {r}");
        let msg = r["error"].as_str().unwrap_or_default();
        assert!(msg.contains(field), "{path} {body}: {r}");
    }
    // A multipart body without `file`.
    let (code, r) = TestApp::call(
        app.post("/pb/profile/picture")
            .header("Content-Type", "multipart/form-data; boundary=x")
            .body("--x\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nv\r\n--x--\r\n"),
    )
    .await;
    assert_eq!(code, 400, "{r}");
    assert!(
        r["error"].as_str().unwrap_or_default().contains("file"),
        "{r}"
    );
    // Nothing reached the server.
    let got = admin_get(&wa, "/admin/accounts/5511999995002/profile").await;
    assert!(
        got["status"].is_null() && got["pictureId"].is_null(),
        "{got}"
    );
}

#[tokio::test]
/// 409, not OnWapp's 500: the session is in the wrong state, the server is fine (issue 18).
async fn profile_of_an_unpaired_session_is_an_error() {
    let Some((app, _wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("pu").await;
    let (code, r) = TestApp::call(app.get("/pu/profile")).await;
    assert_eq!(code, 409, "{r}");
    assert_eq!(r["error"], "session not authenticated", "{r}");
}
