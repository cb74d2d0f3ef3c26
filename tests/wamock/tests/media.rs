//! Media both ways: the session uploads an image to wamock and sends it, the simulated
//! user's client downloads and decrypts it (its inbox shows the bytes' SHA-256); the
//! user sends one back and the session's client downloads the same bytes.

mod common;

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use common::{TestClient, create_user, init_tracing, pair_and_connect, post_json, wait_user_list};
use serde_json::json;
use sha2::{Digest, Sha256};
use wacore::download::MediaType;
use wacore::store::InMemoryBackend;
use wacore_binary::Jid;
use waproto::buffa::MessageField;
use waproto::whatsapp as wa;
use whatsapp_rust::types::events::Event;
use whatsapp_rust::upload::UploadOptions;

const WAIT: Duration = Duration::from_secs(15);

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_both_ways_with_bytes_checked() -> anyhow::Result<()> {
    init_tracing();
    let server = wamock::Server::start("127.0.0.1:0").await?;
    let http = server.http_url();
    let session = TestClient::start(&server.ws_url(), Arc::new(InMemoryBackend::new())).await?;
    pair_and_connect(&server, &session, "5511999990040").await?;
    let session_jid = "5511999990040@s.whatsapp.net";
    let bob = create_user(&http, "5511999990041", "Bob").await?;

    // Session → user.
    let client = session.handle.client();
    let picture = file(70_000, 7);
    let up = client
        .upload(picture.clone(), MediaType::Image, UploadOptions::new())
        .await?;
    assert!(
        up.url.starts_with("https://media.wamock.test/"),
        "{}",
        up.url
    );
    let image = wa::Message {
        image_message: MessageField::some(wa::message::ImageMessage {
            url: Some(up.url),
            direct_path: Some(up.direct_path),
            media_key: Some(up.media_key.to_vec()),
            file_sha256: Some(up.file_sha256.to_vec()),
            file_enc_sha256: Some(up.file_enc_sha256.to_vec()),
            file_length: Some(up.file_length),
            media_key_timestamp: Some(up.media_key_timestamp),
            mimetype: Some("image/png".into()),
            caption: Some("look".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let sent = client.send_message(bob.parse::<Jid>()?, image).await?;
    let id = sent.message_id;
    let got = wait_user_list(&http, "5511999990041", "inbox", WAIT, |e| {
        e["id"] == id.as_str() && (e["sha256"].is_string() || e["mediaError"].is_string())
    })
    .await?;
    assert_eq!(got["type"], "image");
    assert_eq!(got["mimetype"], "image/png");
    assert_eq!(got["caption"], "look");
    assert_eq!(got["from"], session_jid);
    assert_eq!(got["sha256"], hex(&Sha256::digest(&picture)), "{got}");
    assert_eq!(got["fileLength"], picture.len());

    // User → session.
    let photo = file(40_000, 99);
    let back = post_json(
        format!("{http}/admin/users/5511999990041/send"),
        json!({
            "to": session_jid,
            "media": {
                "type": "image",
                "data": BASE64_STANDARD.encode(&photo),
                "mimetype": "image/jpeg",
                "caption": "back",
            },
        }),
    )
    .await?;
    let back_id = back["id"].as_str().unwrap_or_default().to_string();
    let received = session
        .wait_for("image from the user", WAIT, |e| match e {
            Event::Messages(batch) => batch
                .iter()
                .find(|m| m.info.id == back_id)
                .and_then(|m| m.message.image_message.as_option().cloned()),
            _ => None,
        })
        .await?;
    assert_eq!(received.caption.as_deref(), Some("back"));
    assert_eq!(received.mimetype.as_deref(), Some("image/jpeg"));
    let bytes = client.download(&received).await?;
    assert_eq!(bytes, photo);

    // The HTTP side refuses a wrong media auth and unknown blobs.
    let web = reqwest::Client::new();
    let bad_auth = web
        .post(format!("{http}/mms/image/abc?auth=wrong&token=abc"))
        .body(vec![1u8, 2, 3])
        .send()
        .await?;
    assert_eq!(bad_auth.status(), 401);
    let missing = web
        .get(format!("{http}/v/t62.7118-24/nothing"))
        .send()
        .await?;
    assert_eq!(missing.status(), 404);

    session.shutdown().await;
    server.stop().await;
    Ok(())
}
