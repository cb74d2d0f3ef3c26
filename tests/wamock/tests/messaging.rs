//! A paired whatsapp-rust client (the session) and a simulated user (another real
//! client playing its phone) exchange encrypted texts through wamock, with server acks
//! and delivery receipts both ways.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    TestClient, create_user, init_tracing, pair_and_connect, user_send, wait_devices,
    wait_user_list,
};
use serde_json::json;
use wacore::store::InMemoryBackend;
use wacore::types::presence::ReceiptType;
use wacore_binary::Jid;
use whatsapp_rust::types::events::Event;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_both_ways_with_acks_and_receipts() -> anyhow::Result<()> {
    init_tracing();
    let server = wamock::Server::start("127.0.0.1:0").await?;
    let http = server.http_url();
    let backend = Arc::new(InMemoryBackend::new());
    let session = TestClient::start(&server.ws_url(), backend.clone()).await?;
    pair_and_connect(&server, &session, "5511999990010").await?;
    let session_jid = "5511999990010@s.whatsapp.net";

    let bob = create_user(&http, "5511999990020", "Bob").await?;
    assert_eq!(bob, "5511999990020@s.whatsapp.net");
    assert_eq!(
        create_user(&http, "5511999990020", "Bob").await?,
        bob,
        "idempotent"
    );

    // Session → user: the server acks the send, the user's client decrypts it, and
    // its delivery receipt comes back to the session.
    let client = session.handle.client();
    let to: Jid = bob.parse()?;
    let sent = client.send_text(to, "hello bob").await?;
    let id = sent.message_id.clone();
    session
        .wait_for("server ack", WAIT, |e| match e {
            Event::ServerAck(a) if a.id == id => Some(a.error.clone()),
            _ => None,
        })
        .await?
        .map_or(Ok(()), |code| Err(anyhow::anyhow!("nack {code}")))?;
    let got = wait_user_list(&http, "5511999990020", "inbox", WAIT, |e| {
        e["id"] == id.as_str()
    })
    .await?;
    assert_eq!(got["text"], "hello bob");
    assert_eq!(got["type"], "text");
    assert_eq!(got["from"], session_jid);
    session
        .wait_for("delivery receipt", WAIT, |e| match e {
            Event::Receipt(r) if r.message_ids.contains(&id) => {
                (r.r#type == ReceiptType::Delivered).then_some(())
            }
            _ => None,
        })
        .await?;

    // User → session: the session's client emits the decrypted message, and the user
    // gets the session's delivery receipt.
    let back = user_send(&http, "5511999990020", session_jid, "hi session").await?;
    let (text, sender) = session
        .wait_for("message from the user", WAIT, |e| match e {
            Event::Messages(batch) => batch.iter().find(|m| m.info.id == back).map(|m| {
                (
                    m.message.conversation.clone(),
                    m.info.source.sender.to_non_ad(),
                )
            }),
            _ => None,
        })
        .await?;
    assert_eq!(text.as_deref(), Some("hi session"));
    assert_eq!(sender.user, "5511999990020");
    let receipt = wait_user_list(&http, "5511999990020", "receipts", WAIT, |r| {
        r["id"] == back.as_str()
    })
    .await?;
    assert_eq!(receipt["from"], session_jid);

    // A message to a device that is offline waits on the server and arrives, marked
    // offline, when the device logs in again.
    session.shutdown().await;
    wait_devices(&http, WAIT, |d| d[0]["connected"] == json!(false)).await?;
    let queued = user_send(&http, "5511999990020", session_jid, "while you were away").await?;
    let session = TestClient::start(&server.ws_url(), backend).await?;
    let (text, offline) = session
        .wait_for("queued message", WAIT, |e| match e {
            Event::Messages(batch) => batch
                .iter()
                .find(|m| m.info.id == queued)
                .map(|m| (m.message.conversation.clone(), m.info.is_offline)),
            _ => None,
        })
        .await?;
    assert_eq!(text.as_deref(), Some("while you were away"));
    assert!(offline, "delivered from the offline queue");

    session.shutdown().await;
    server.stop().await;
    Ok(())
}
