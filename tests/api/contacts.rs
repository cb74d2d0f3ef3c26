//! Contacts against wamock: which numbers are on WhatsApp, LIDs, usync user info and the
//! blocklist, checked against what wamock knows of each account.

use serde_json::{Value, json};

use crate::helpers::TestApp;
use std::time::Duration;

use crate::wa::{app_with_wamock, pair, poll, user};

/// wamock's view of an account: `{"phone", "lid", "pushName"}`.
async fn account(wa: &wamock::Server, phone: &str) -> Value {
    let url = format!("{}/admin/accounts/{phone}", wa.http_url());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn wamock_blocklist(wa: &wamock::Server, phone: &str) -> Value {
    let url = format!("{}/admin/accounts/{phone}/blocklist", wa.http_url());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

fn error_of(code: u16, body: &Value, want_code: u16, needle: &str) {
    assert_eq!(code, want_code, "{body}");
    let e = body["error"].as_str().unwrap_or_default();
    assert!(e.contains(needle), "{needle:?} not in {body}");
}

#[tokio::test]
async fn check_lid_and_info_follow_wamock_accounts() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("ct").await;
    pair(&app, &wa, "ct", "5511999990301").await;
    user(&wa, "5511988880301").await;

    // Registered user, the session's own number (with +), an unknown number: by index.
    let (code, got) = TestApp::call(
        app.post("/ct/contact/check")
            .json(&json!({"phones": ["5511988880301", "+5511999990301", "5511977770399"]})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(
        got,
        json!([
            {"phone": "5511988880301", "isRegistered": true, "jid": "5511988880301@s.whatsapp.net"},
            {"phone": "+5511999990301", "isRegistered": true, "jid": "5511999990301@s.whatsapp.net"},
            {"phone": "5511977770399", "isRegistered": false},
        ])
    );

    // LID: the one wamock gave the account; none for an unknown number.
    let want = account(&wa, "5511988880301").await;
    let (code, got) = TestApp::call(app.get("/ct/contact/lid?phone=5511988880301")).await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got, json!({"phone": "5511988880301", "lid": want["lid"]}));
    assert!(want["lid"].as_str().unwrap().ends_with("@lid"), "{want}");
    let (code, got) = TestApp::call(app.get("/ct/contact/lid?phone=5511977770399")).await;
    error_of(code, &got, 404, "LID not found for this contact");

    // Info: from the JSON body (as OnWapp reads it) or ?phone=; the user's phone is device 0.
    for req in [
        app.get("/ct/contact/info")
            .json(&json!({"phones": ["5511988880301"]})),
        app.get("/ct/contact/info?phone=5511988880301"),
    ] {
        let (code, got) = TestApp::call(req).await;
        assert_eq!(code, 200, "{got}");
        let u = &got["users"]["5511988880301@s.whatsapp.net"];
        assert!(u.is_object(), "{got}");
        assert_eq!(u["status"], "", "{got}");
        let devices = u["devices"].as_array().unwrap();
        assert!(
            devices.contains(&json!("5511988880301@s.whatsapp.net")),
            "{got}"
        );
    }

    // Bad input names the field.
    let bad = [
        (app.post("/ct/contact/check").json(&json!({})), "phones"),
        (
            app.post("/ct/contact/check").json(&json!({"phones": []})),
            "phones is required",
        ),
        (
            app.post("/ct/contact/check")
                .json(&json!({"phones": ["5511988880301", "1203630@g.us"]})),
            "phones[1]",
        ),
        (
            app.get("/ct/contact/lid"),
            "phone query parameter is required",
        ),
        (app.get("/ct/contact/lid?phone=1203630@g.us"), "phone"),
        (app.get("/ct/contact/info"), "phones is required"),
        (
            app.get("/ct/contact/info").json(&json!({"phones": []})),
            "phones is required",
        ),
    ];
    for (req, needle) in bad {
        let (code, got) = TestApp::call(req).await;
        error_of(code, &got, 400, needle);
    }
}

#[tokio::test]
async fn blocking_and_unblocking_reach_the_account_blocklist() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("bl").await;
    pair(&app, &wa, "bl", "5511999990302").await;
    user(&wa, "5511988880302").await;
    let lid = account(&wa, "5511988880302").await["lid"].clone();

    let (code, got) = TestApp::call(app.get("/bl/contact/blocklist")).await;
    assert_eq!((code, got), (200, json!({"jids": []})));

    let (code, got) = TestApp::call(
        app.post("/bl/contact/blocklist")
            .json(&json!({"phone": "5511988880302", "action": "block"})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got, json!({"action": "block", "phone": "5511988880302"}));
    // wamock holds the block under the LID, with the phone number beside it.
    let held = wamock_blocklist(&wa, "5511999990302").await;
    assert_eq!(held.as_array().map(Vec::len), Some(1), "{held}");
    assert_eq!(held[0]["jid"], lid, "{held}");
    assert_eq!(held[0]["pn"], "5511988880302@s.whatsapp.net", "{held}");
    let (code, got) = TestApp::call(app.get("/bl/contact/blocklist")).await;
    assert_eq!((code, got), (200, json!({"jids": [lid]})));

    // Any action other than "block" unblocks (as OnWapp), echoed back.
    let (code, got) = TestApp::call(
        app.post("/bl/contact/blocklist")
            .json(&json!({"phone": "+5511988880302", "action": "remove"})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got, json!({"action": "remove", "phone": "+5511988880302"}));
    assert_eq!(wamock_blocklist(&wa, "5511999990302").await, json!([]));
    let (code, got) = TestApp::call(app.get("/bl/contact/blocklist")).await;
    assert_eq!((code, got), (200, json!({"jids": []})));

    let bad = [
        (json!({"action": "block"}), "phone"),
        (json!({"phone": "", "action": "block"}), "phone"),
        (json!({"phone": "1203630@g.us", "action": "block"}), "phone"),
        (json!({"phone": "5511988880302"}), "action"),
        (
            json!({"phone": "5511988880302", "action": " "}),
            "action is required",
        ),
    ];
    for (body, needle) in bad {
        let (code, got) = TestApp::call(app.post("/bl/contact/blocklist").json(&body)).await;
        error_of(code, &got, 400, needle);
    }
}

#[tokio::test]
async fn contact_list_holds_push_names_of_who_wrote() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("cl").await;
    let (code, got) = TestApp::call(app.get("/cl/contact/list")).await;
    assert_eq!((code, got), (200, json!({})));

    pair(&app, &wa, "cl", "5511999990303").await;
    user(&wa, "5511988880303").await;
    let r = reqwest::Client::new()
        .post(format!("{}/admin/users/5511988880303/send", wa.http_url()))
        .json(&json!({"to": "5511999990303@s.whatsapp.net", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let got = poll(&app, "/cl/contact/list", Duration::from_secs(20), |b| {
        b.as_object().is_some_and(|o| !o.is_empty())
    })
    .await;
    assert_eq!(
        got,
        json!({"5511988880303@s.whatsapp.net": {
            "pushName": "Simulated", "businessName": "", "fullName": "", "firstName": ""
        }})
    );

    // Read from the database: still there once disconnected.
    let (code, _) = TestApp::call(app.post("/cl/disconnect")).await;
    assert_eq!(code, 200);
    let (code, again) = TestApp::call(app.get("/cl/contact/list")).await;
    assert_eq!((code, again), (200, got));
}

#[tokio::test]
async fn avatar_is_the_picture_wamock_holds() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("av").await;
    app.create_session("pic").await;
    pair(&app, &wa, "av", "5511999990305").await;
    pair(&app, &wa, "pic", "5511999990306").await;

    // No picture yet: an empty URL.
    let (code, got) = TestApp::call(app.get("/av/contact/avatar?phone=5511999990306")).await;
    assert_eq!((code, got), (200, json!({"url": ""})));

    // The other session sets one; this session sees the id wamock holds, with a URL.
    let mut jpeg = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
    ];
    jpeg.extend([7u8; 300]);
    jpeg.extend([0xFF, 0xD9]);
    let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &jpeg);
    let (code, set) = TestApp::call(
        app.post("/pic/profile/picture")
            .json(&json!({"image": b64})),
    )
    .await;
    assert_eq!(code, 200, "{set}");
    let url = format!("{}/admin/accounts/5511999990306/profile", wa.http_url());
    let held: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let (code, got) = TestApp::call(app.get("/av/contact/avatar?phone=+5511999990306")).await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["id"], held["pictureId"], "{got} vs {held}");
    assert!(
        got["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://")),
        "{got}"
    );

    for (path, needle) in [
        ("/av/contact/avatar", "phone query parameter is required"),
        (
            "/av/contact/avatar?phone=",
            "phone query parameter is required",
        ),
        ("/av/contact/avatar?phone=abc", "phone"),
    ] {
        let (code, got) = TestApp::call(app.get(path)).await;
        error_of(code, &got, 400, needle);
    }
}

#[tokio::test]
async fn business_profile_is_what_the_business_account_published() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("bz").await;
    pair(&app, &wa, "bz", "5511999990307").await;
    user(&wa, "5511988880307").await;
    user(&wa, "5511988880308").await;

    let published = json!({
        "description": "Pães e bolos desde 1990",
        "email": "contato@padaria.example",
        "website": ["https://padaria.example"],
        "address": "Rua das Flores, 10",
        "categories": [{"id": "133436743388217", "name": "Bakery"}],
        "timezone": "America/Sao_Paulo",
        "hours": [
            {"dayOfWeek": "mon", "mode": "specific_hours", "openTime": 420, "closeTime": 1080},
            {"dayOfWeek": "sun", "mode": "appointment_only"}
        ]
    });
    let url = format!("{}/admin/accounts/5511988880307/business", wa.http_url());
    let r = reqwest::Client::new()
        .put(url)
        .json(&published)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (code, got) = TestApp::call(app.get("/bz/contact/business?phone=5511988880307")).await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(
        got,
        json!({"profile": {
            "JID": "5511988880307@s.whatsapp.net",
            "Address": "Rua das Flores, 10",
            "Email": "contato@padaria.example",
            "Categories": [{"ID": "133436743388217", "Name": "Bakery"}],
            "ProfileOptions": {},
            "BusinessHoursTimeZone": "America/Sao_Paulo",
            "BusinessHours": [
                {"DayOfWeek": "mon", "Mode": "specific_hours", "OpenTime": 420, "CloseTime": 1080},
                {"DayOfWeek": "sun", "Mode": "appointment_only", "OpenTime": 0, "CloseTime": 0}
            ],
            "Description": "Pães e bolos desde 1990",
            "Website": ["https://padaria.example"]
        }})
    );

    // A personal account has no business profile: 404, not an empty success.
    let (code, got) = TestApp::call(app.get("/bz/contact/business?phone=5511988880308")).await;
    error_of(code, &got, 404, "5511988880308 has no business profile");

    for (path, needle) in [
        ("/bz/contact/business", "phone query parameter is required"),
        ("/bz/contact/business?phone=abc", "phone"),
        (
            "/bz/contact/business?phone=123@g.us",
            "phone must be a phone number",
        ),
    ] {
        let (code, got) = TestApp::call(app.get(path)).await;
        error_of(code, &got, 400, needle);
    }
}

#[tokio::test]
async fn qr_link_is_the_accounts_contact_code_and_revoke_replaces_it() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("qrl").await;
    pair(&app, &wa, "qrl", "5511999990309").await;
    let held = || async {
        let url = format!("{}/admin/accounts/5511999990309/profile", wa.http_url());
        let v: Value = reqwest::get(url).await.unwrap().json().await.unwrap();
        v["contactQr"].as_str().unwrap_or_default().to_string()
    };

    let (code, first) = TestApp::call(app.get("/qrl/contact/qrlink")).await;
    assert_eq!(code, 200, "{first}");
    let code_now = held().await;
    assert_eq!(code_now.len(), 14, "wamock made no code");
    assert_eq!(
        first,
        json!({"link": format!("https://wa.me/qr/{code_now}")})
    );

    // Asking again gives the same link; revoking makes a new one, which wamock now holds.
    let (_, again) = TestApp::call(app.get("/qrl/contact/qrlink?revoke=false")).await;
    assert_eq!(again, first);
    let (code, revoked) = TestApp::call(app.get("/qrl/contact/qrlink?revoke=true")).await;
    assert_eq!(code, 200, "{revoked}");
    assert_ne!(revoked, first);
    assert_eq!(
        revoked,
        json!({"link": format!("https://wa.me/qr/{}", held().await)})
    );

    let (code, got) = TestApp::call(app.get("/qrl/contact/qrlink?revoke=maybe")).await;
    error_of(code, &got, 400, "revoke");
}
