//! Media both ways, through whatsapp-rust against wamock: every kind sent from base64, a data
//! URL or a URL served by a loopback HTTP server here, checked by the bytes the simulated
//! user's client downloaded and decrypted; bad input refused with nothing sent; received media
//! listed, downloaded in the background and served back byte for byte.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Router,
    http::{StatusCode, header},
    response::{IntoResponse, Redirect},
    routing::get,
};
use base64::{Engine as _, prelude::BASE64_STANDARD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::{Db, TestApp, spawn_with};
use crate::wa::{pair, poll, user, user_inbox, user_sends_image};

const LIMIT: u64 = 256 * 1024;

/// A server paired with wamock; media URLs may reach loopback (the file server below) unless
/// `guarded`; files over 256 KiB are refused.
async fn app(db: Db, guarded: bool) -> Option<(TestApp, wamock::Server)> {
    let server = wamock::Server::start("127.0.0.1:0")
        .await
        .expect("wamock starts");
    let url = server.ws_url();
    let app = spawn_with(db, move |c| {
        c.whatsapp_server_url = Some(url);
        c.media_allow_private_urls = !guarded;
        c.media_max_bytes = LIMIT;
    })
    .await?;
    Some((app, server))
}

fn file(magic: &[u8], len: usize, seed: u8) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend((b.len()..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    b
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn png() -> Vec<u8> {
    file(b"\x89PNG\r\n\x1a\n", 40_000, 1)
}

fn mp4() -> Vec<u8> {
    file(b"\0\0\0\x20ftypisom\0\0\x02\0", 90_000, 2)
}

/// Files over plain HTTP on 127.0.0.1: `/photo.png` (image/png), `/clip` (an MP4 announced
/// as application/octet-stream), `/hop` (302 to the photo), `/loop` (redirects forever),
/// `/missing` (404), `/big` (over the limit).
async fn file_server() -> SocketAddr {
    let router = Router::new()
        .route(
            "/photo.png",
            get(|| async { ([(header::CONTENT_TYPE, "image/png")], png()) }),
        )
        .route(
            "/clip",
            get(|| async { ([(header::CONTENT_TYPE, "application/octet-stream")], mp4()) }),
        )
        .route("/hop", get(|| async { Redirect::to("/photo.png") }))
        .route("/loop", get(|| async { Redirect::temporary("/loop") }))
        .route(
            "/missing",
            get(|| async { (StatusCode::NOT_FOUND, "no").into_response() }),
        )
        .route(
            "/big",
            get(|| async { file(b"\0\0\0\x20ftypisom", LIMIT as usize + 1, 3) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

/// The user's inbox entry for `id` once its media download finished.
async fn delivered(wa: &wamock::Server, phone: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let inbox = user_inbox(wa, phone).await;
        if let Some(e) = inbox.as_array().and_then(|a| {
            a.iter()
                .find(|e| e["id"] == id && (e["sha256"].is_string() || e["mediaError"].is_string()))
        }) {
            return e.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} never arrived: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A `multipart/form-data` body: text fields, then the file as `file`.
fn form(fields: &[(&str, &str)], file: Option<(&str, &str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "media-test-boundary-7d3f";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .into_bytes(),
        );
    }
    if let Some((name, mime, bytes)) = file {
        body.extend(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: {mime}\r\n\r\n"
            )
            .into_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend(b"\r\n");
    }
    body.extend(format!("--{boundary}--\r\n").into_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn send_form(app: &TestApp, kind: &str, (ct, body): (String, Vec<u8>)) -> (u16, Value) {
    TestApp::call(
        app.post(&format!("/md/message/send/{kind}"))
            .header("Content-Type", ct)
            .body(body),
    )
    .await
}

async fn send(app: &TestApp, kind: &str, body: Value) -> String {
    let (code, b) = TestApp::call(app.post(&format!("/md/message/send/{kind}")).json(&body)).await;
    assert_eq!(code, 200, "{kind}: {b}");
    assert!(
        b["timestamp"].as_i64().unwrap_or_default() > 1_700_000_000,
        "{b}"
    );
    b["messageId"].as_str().expect("messageId").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_reaches_the_user_with_its_bytes() {
    let Some((app, wa)) = app(Db::Sqlite, false).await else {
        return;
    };
    let files = file_server().await;
    app.create_session("md").await;
    pair(&app, &wa, "md", "5511999990301").await;
    let to = "5511988880301";
    user(&wa, to).await;

    // Image from base64, with caption and MIME type.
    let photo = png();
    let id = send(
        &app,
        "image",
        json!({"phone": to, "image": BASE64_STANDARD.encode(&photo), "caption": "look", "mimetype": "image/png"}),
    )
    .await;
    let got = delivered(&wa, to, &id).await;
    assert_eq!(got["type"], "image", "{got}");
    assert_eq!(got["mimetype"], "image/png");
    assert_eq!(got["caption"], "look");
    assert_eq!(got["sha256"], sha(&photo), "{got}");
    assert_eq!(got["fileLength"], photo.len());
    let first = id;

    // Image from a URL behind a redirect: the MIME type is the response's Content-Type; the
    // reply context reaches the user.
    let id = send(
        &app,
        "image",
        json!({"phone": to, "image": format!("http://{files}/hop"), "quoted": {"messageId": first}}),
    )
    .await;
    let got = delivered(&wa, to, &id).await;
    assert_eq!(got["mimetype"], "image/png");
    assert_eq!(got["sha256"], sha(&photo), "{got}");
    assert_eq!(got["quotedId"], first.as_str(), "{got}");

    // Voice note: Ogg sniffed, sent as Opus, ptt.
    let voice = file(b"OggS\0\x02\0\0", 30_000, 4);
    let id = send(
        &app,
        "audio",
        json!({"phone": to, "audio": BASE64_STANDARD.encode(&voice), "ptt": true}),
    )
    .await;
    let got = delivered(&wa, to, &id).await;
    assert_eq!(got["type"], "audio");
    assert_eq!(got["mimetype"], "audio/ogg; codecs=opus");
    assert_eq!(got["ptt"], true, "{got}");
    assert_eq!(got["sha256"], sha(&voice));

    // Video from a URL that calls it application/octet-stream: sniffed as MP4.
    let clip = mp4();
    let id = send(
        &app,
        "video",
        json!({"phone": to, "video": format!("http://{files}/clip"), "caption": "clip"}),
    )
    .await;
    let got = delivered(&wa, to, &id).await;
    assert_eq!(got["type"], "video");
    assert_eq!(got["mimetype"], "video/mp4");
    assert_eq!(got["caption"], "clip");
    assert_eq!(got["sha256"], sha(&clip));
    assert_eq!(got["fileLength"], clip.len());

    // Document from a data: URL, named with 0.2.8's `fileName` spelling.
    let pdf = file(b"%PDF-1.7\n", 20_000, 5);
    let id = send(
        &app,
        "document",
        json!({"phone": to, "document": format!("data:application/pdf;base64,{}", BASE64_STANDARD.encode(&pdf)), "fileName": "report.pdf"}),
    )
    .await;
    let got = delivered(&wa, to, &id).await;
    assert_eq!(got["type"], "document");
    assert_eq!(got["mimetype"], "application/pdf");
    assert_eq!(got["fileName"], "report.pdf", "{got}");
    assert_eq!(got["sha256"], sha(&pdf));

    // Sticker: WebP sniffed.
    let webp = file(b"RIFF\0\0\0\0WEBPVP8 ", 10_000, 6);
    let id = send(
        &app,
        "sticker",
        json!({"phone": to, "sticker": BASE64_STANDARD.encode(&webp)}),
    )
    .await;
    let got = delivered(&wa, to, &id).await;
    assert_eq!(got["type"], "sticker");
    assert_eq!(got["mimetype"], "image/webp");
    assert_eq!(got["sha256"], sha(&webp));
    let sticker = id;

    // 0.2.8's multipart form: a document (named, typed by the form) and a voice note.
    let sheet = file(b"PK\x03\x04", 12_000, 7);
    let xlsx = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    let (code, b) = send_form(
        &app,
        "document",
        form(
            &[
                ("phone", to),
                ("filename", "sheet.xlsx"),
                ("mimeType", xlsx),
            ],
            Some(("sheet.xlsx", "application/octet-stream", &sheet)),
        ),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let got = delivered(&wa, to, b["messageId"].as_str().unwrap()).await;
    assert_eq!(got["fileName"], "sheet.xlsx", "{got}");
    assert_eq!(got["mimetype"], xlsx);
    assert_eq!(got["sha256"], sha(&sheet));
    let (code, b) = send_form(
        &app,
        "audio",
        form(
            &[("phone", to), ("ptt", "true")],
            Some(("v.ogg", "audio/ogg", &voice)),
        ),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let got = delivered(&wa, to, b["messageId"].as_str().unwrap()).await;
    assert_eq!(got["ptt"], true, "{got}");
    assert_eq!(got["mimetype"], "audio/ogg; codecs=opus");
    assert_eq!(got["sha256"], sha(&voice));
    let last = b["messageId"].as_str().unwrap().to_string();

    // What we sent is in the media store with its file, and listed newest first.
    let list = app.get_json("/md/media/list").await;
    assert_eq!(list["count"], 8, "{list}");
    assert_eq!(list["limit"], 100);
    assert_eq!(list["offset"], 0);
    assert_eq!(list["media"][0]["msgId"], last.as_str(), "{list}");
    let stored = list["media"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["msgId"] == sticker.as_str())
        .expect("the sticker is listed");
    assert_eq!(stored["mediaType"], "sticker");
    assert_eq!(stored["mimeType"], "image/webp");
    assert_eq!(stored["fromMe"], true);
    assert_eq!(stored["downloaded"], true);
    assert_eq!(stored["fileSize"], webp.len());
    assert!(stored["waDirectPath"].is_string(), "{stored}");
    assert!(
        stored["chatJid"].as_str().unwrap().starts_with(to),
        "{stored}"
    );
    let page = app.get_json("/md/media/list?limit=2&offset=1").await;
    assert_eq!(page["count"], 2);
    assert_eq!(page["media"][0]["msgId"], list["media"][1]["msgId"]);
    let r = app
        .get(&format!("/md/media/download?messageId={first}&format=file"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/png");
    assert_eq!(sha(&r.bytes().await.unwrap()), sha(&photo));
    let pending = app.get_json("/md/media/pending").await;
    assert_eq!(pending["count"], 0, "{pending}");

    // Bad input: refused with the problem named, and nothing reaches the user.
    let before = user_inbox(&wa, to).await.as_array().map_or(0, Vec::len);
    let png64 = BASE64_STANDARD.encode(&photo);
    let refusals = [
        (
            "image",
            json!({"phone": to}),
            "image is required".to_string(),
        ),
        (
            "image",
            json!({"phone": to, "image": ""}),
            "image is required".into(),
        ),
        (
            "image",
            json!({"phone": to, "image": "bm90 IGJhc2U2NCE*"}),
            "invalid base64 image".into(),
        ),
        (
            "image",
            json!({"phone": to, "image": "ftp://example.com/a.png"}),
            "failed to download image from URL: url: only http and https schemes are allowed"
                .into(),
        ),
        (
            "image",
            json!({"phone": to, "image": format!("http://{files}/missing")}),
            "failed to download image from URL: url: failed to download: 404 Not Found".into(),
        ),
        (
            "image",
            json!({"phone": to, "image": format!("http://{files}/loop")}),
            "failed to download image from URL: url: stopped after 5 redirects".into(),
        ),
        (
            "video",
            json!({"phone": to, "video": format!("http://{files}/big")}),
            "failed to download video from URL: file: file size exceeds the 256 KiB limit".into(),
        ),
        (
            "audio",
            json!({"phone": to, "audio": BASE64_STANDARD.encode(vec![7u8; LIMIT as usize + 1])}),
            "audio: file size exceeds the 256 KiB limit".into(),
        ),
        (
            "document",
            json!({"phone": to, "document": png64}),
            "filename is required".into(),
        ),
        (
            "document",
            json!({"phone": to, "document": png64, "filename": " "}),
            "filename is required".into(),
        ),
        (
            "sticker",
            json!({"phone": "", "sticker": png64}),
            "phone".into(),
        ),
        (
            "image",
            json!({"phone": to, "image": png64, "quoted": {"messageId": ""}}),
            "quoted.messageId is required".into(),
        ),
    ];
    for (kind, body, want) in &refusals {
        let (code, b) =
            TestApp::call(app.post(&format!("/md/message/send/{kind}")).json(body)).await;
        assert_eq!(code, 400, "{kind} {body}: {b}");
        let error = b["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with(want.as_str()),
            "{kind}: {error:?} should start with {want:?}"
        );
    }
    let form_refusals = [
        (
            "image",
            form(&[("phone", to)], None),
            "failed to get file from form",
        ),
        (
            "image",
            form(&[], Some(("a.png", "image/png", &photo))),
            "phone is required",
        ),
        (
            "document",
            form(&[("phone", to)], Some(("a.pdf", "application/pdf", &pdf))),
            "filename is required",
        ),
    ];
    for (kind, body, want) in form_refusals {
        let (code, b) = send_form(&app, kind, body).await;
        assert_eq!(code, 400, "{kind}: {b}");
        assert!(
            b["error"].as_str().unwrap_or_default().starts_with(want),
            "{b}"
        );
    }
    // A session that is not connected: 409 before any download.
    app.create_session("idle").await;
    let (code, b) = TestApp::call(
        app.post("/idle/message/send/image")
            .json(&json!({"phone": to, "image": format!("http://{files}/photo.png")})),
    )
    .await;
    assert_eq!(code, 409, "{b}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = user_inbox(&wa, to).await.as_array().map_or(0, Vec::len);
    assert_eq!(after, before, "nothing more was sent");
    assert_eq!(app.get_json("/md/media/list").await["count"], 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_urls_are_refused_by_default() {
    let Some((app, wa)) = app(Db::Sqlite, true).await else {
        return;
    };
    let files = file_server().await;
    app.create_session("md").await;
    pair(&app, &wa, "md", "5511999990302").await;
    let to = "5511988880302";
    user(&wa, to).await;
    let cases = [
        (
            format!("http://{files}/photo.png"),
            "failed to download image from URL: url: URLs pointing to private/internal IPs are not allowed",
        ),
        (
            format!("http://localhost:{}/photo.png", files.port()),
            "failed to download image from URL: url: localhost URLs are not allowed",
        ),
        (
            "http://169.254.169.254/latest/meta-data".to_string(),
            "failed to download image from URL: url: URLs pointing to private/internal IPs are not allowed",
        ),
    ];
    for (url, want) in &cases {
        let (code, b) = TestApp::call(
            app.post("/md/message/send/image")
                .json(&json!({"phone": to, "image": url})),
        )
        .await;
        assert_eq!(code, 400, "{url}: {b}");
        assert_eq!(b["error"], *want);
    }
    assert_eq!(user_inbox(&wa, to).await, json!([]));
}

/// A send with a bad file is told what is wrong with it even when the session is not
/// connected: invalid base64, a data URL that is not base64, a forbidden URL. A good file to a
/// disconnected session is the 409.
#[tokio::test]
async fn bad_media_input_is_named_before_the_session_state() {
    let Some(app) = spawn_with(Db::Sqlite, |_| {}).await else {
        return;
    };
    app.create_session("off").await;
    for (body, says) in [
        (
            json!({"phone": "5511999990000", "image": "***not base64***"}),
            "invalid base64 image",
        ),
        (
            json!({"phone": "5511999990000", "image": "data:image/png,abc"}),
            "data URLs must be base64",
        ),
        (
            json!({"phone": "5511999990000", "image": "http://127.0.0.1:9/x.png"}),
            "image",
        ),
        (
            json!({"phone": "5511999990000", "image": "http://169.254.169.254/latest"}),
            "image",
        ),
        (
            json!({"phone": "5511999990000", "image": "ftp://example.com/x.png"}),
            "image",
        ),
    ] {
        let (code, e) = TestApp::call(app.post("/off/message/send/image").json(&body)).await;
        assert_eq!(code, 400, "{body} -> {e}");
        let msg = e["error"].as_str().unwrap();
        assert!(msg.contains(says), "{body} -> {msg}");
    }
    let png = BASE64_STANDARD.encode(png());
    let (code, e) = TestApp::call(
        app.post("/off/message/send/image")
            .json(&json!({"phone": "5511999990000", "image": png})),
    )
    .await;
    assert_eq!(code, 409, "{e}");
}

/// A simulated user sends the session an image: it is listed, downloaded in the background
/// and served back with the same bytes. A file over the limit stays pending and
/// `media/process` records another failed attempt.
async fn received_media_is_kept(db: Db) {
    let Some((app, wa)) = app(db, false).await else {
        return;
    };
    app.create_session("md").await;
    pair(&app, &wa, "md", "5511999990303").await;
    let from = "5511988880303";
    user(&wa, from).await;
    let photo = file(&[0xFF, 0xD8, 0xFF, 0xE0], 50_000, 9);
    let id = user_sends_image(&wa, from, "5511999990303", &photo, "from the phone").await;

    let list = poll(&app, "/md/media/list", Duration::from_secs(20), |b| {
        b["media"][0]["downloaded"] == true
    })
    .await;
    let m = &list["media"][0];
    assert_eq!(list["count"], 1, "{list}");
    assert_eq!(m["msgId"], id.as_str());
    assert_eq!(m["mediaType"], "image");
    assert_eq!(m["mimeType"], "image/jpeg");
    assert_eq!(m["caption"], "from the phone");
    assert_eq!(m["fromMe"], false);
    assert_eq!(m["chatJid"], format!("{from}@s.whatsapp.net"));
    assert_eq!(m["fileSize"], photo.len());
    assert_eq!(m["downloadAttempts"], 1);
    assert!(
        m["waMediaKey"].is_string() && m["waFileSha256"].is_string(),
        "{m}"
    );
    assert_eq!(
        m["waFileSha256"],
        BASE64_STANDARD.encode(Sha256::digest(&photo)),
        "WhatsApp's hash of the file"
    );
    assert!(m.get("downloadError").is_none(), "{m}");
    let key = m["storageKey"].as_str().expect("storageKey");
    assert!(
        key.contains("/received/") && key.ends_with(&format!("{id}_image.jpg")),
        "{key}"
    );
    let url = m["storageUrl"].as_str().expect("storageUrl").to_string();
    assert_eq!(
        url,
        format!("/md/media/download?messageId={id}&format=file")
    );

    let record = app
        .get_json(&format!("/md/media/download?messageId={id}"))
        .await;
    assert_eq!(&record, m);
    let r = app.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert!(
        r.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename="),
    );
    assert_eq!(
        sha(&r.bytes().await.unwrap()),
        sha(&photo),
        "the same bytes"
    );

    // Unknown ids and missing parameters.
    let (code, b) = TestApp::call(app.get("/md/media/download?messageId=nope")).await;
    assert_eq!((code, b["error"].as_str()), (404, Some("media not found")));
    let (code, b) = TestApp::call(app.get("/md/media/download")).await;
    assert_eq!(
        (code, b["error"].as_str()),
        (400, Some("messageId query parameter is required"))
    );
    let (code, _) =
        TestApp::call(app.get(&format!("/md/media/download?messageId={id}&format=zip"))).await;
    assert_eq!(code, 400);

    // A row whose file is not here yet (as after a failed attempt): process downloads it from
    // WhatsApp now.
    let session = app.store().get_session("md").await.unwrap().unwrap();
    let mut row = app
        .store()
        .get_media(session.id, &id)
        .await
        .unwrap()
        .unwrap();
    row.id = uuid::Uuid::now_v7();
    row.msg_id = "REPLAY0001".into();
    (row.downloaded, row.storage_key, row.stored_at) = (false, None, None);
    row.download_attempts = 1;
    row.download_error = Some("earlier failure".into());
    assert!(app.store().insert_media(&row).await.unwrap());
    let pending = app.get_json("/md/media/pending").await;
    assert_eq!(pending["count"], 1, "{pending}");
    assert_eq!(pending["media"][0]["msgId"], "REPLAY0001");
    let (code, b) = TestApp::call(app.post("/md/media/process")).await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(
        b,
        json!({"failed": 0, "message": "Media processing completed", "success": 1})
    );
    let replay = app
        .get_json("/md/media/download?messageId=REPLAY0001")
        .await;
    assert_eq!(replay["downloaded"], true, "{replay}");
    assert_eq!(replay["downloadAttempts"], 2);
    assert!(replay.get("downloadError").is_none(), "{replay}");
    let r = app
        .get("/md/media/download?messageId=REPLAY0001&format=file")
        .send()
        .await
        .unwrap();
    assert_eq!(sha(&r.bytes().await.unwrap()), sha(&photo));
    assert_eq!(app.get_json("/md/media/pending").await["count"], 0);

    // Over the limit: the background download fails, the row stays pending; process tries
    // again and counts the failure.
    let big = file(b"\0\0\0\x20ftypisom", LIMIT as usize + 10, 11);
    let sent: Value = reqwest::Client::new()
        .post(format!("{}/admin/users/{from}/send", wa.http_url()))
        .json(&json!({"to": "5511999990303", "media": {
            "type": "video", "data": BASE64_STANDARD.encode(&big), "mimetype": "video/mp4"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let big_id = sent["id"].as_str().expect("id").to_string();
    let pending = poll(&app, "/md/media/pending", Duration::from_secs(20), |b| {
        b["media"][0]["downloadAttempts"] == 1
    })
    .await;
    assert_eq!(pending["count"], 1, "{pending}");
    let p = &pending["media"][0];
    assert_eq!(p["msgId"], big_id.as_str());
    assert_eq!(p["downloaded"], false);
    assert_eq!(p["downloadError"], "file size exceeds the 256 KiB limit");
    assert!(p.get("storageUrl").is_none(), "{p}");
    let (code, b) = TestApp::call(app.get(&format!(
        "/md/media/download?messageId={big_id}&format=file"
    )))
    .await;
    assert_eq!(code, 409, "{b}");
    let (code, b) = TestApp::call(app.post("/md/media/process?batchSize=5")).await;
    assert_eq!(code, 200, "{b}");
    assert_eq!(
        b,
        json!({"failed": 1, "message": "Media processing completed", "success": 0})
    );
    let again = app
        .get_json(&format!("/md/media/download?messageId={big_id}"))
        .await;
    assert_eq!(again["downloadAttempts"], 2, "{again}");

    // Not connected: 409.
    let (code, _) = TestApp::call(app.post("/md/disconnect")).await;
    assert_eq!(code, 200);
    let (code, b) = TestApp::call(app.post("/md/media/process")).await;
    assert_eq!(code, 409, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_media_is_kept_on_sqlite() {
    received_media_is_kept(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_media_is_kept_on_postgres() {
    received_media_is_kept(Db::Postgres).await;
}
