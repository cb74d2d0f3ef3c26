//! Faults: a 515 the client recovers from by itself, a removed device (401) that logs
//! out, a replaced stream, and a second login of the same device taking over.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestClient, devices, init_tracing, pair_and_connect, post_json, wait_devices};
use serde_json::json;
use wacore::store::InMemoryBackend;
use whatsapp_rust::types::events::Event;

const WAIT: Duration = Duration::from_secs(10);

async fn paired(
    phone: &str,
) -> anyhow::Result<(wamock::Server, TestClient, Arc<InMemoryBackend>, String)> {
    let server = wamock::Server::start("127.0.0.1:0").await?;
    let backend = Arc::new(InMemoryBackend::new());
    let client = TestClient::start(&server.ws_url(), backend.clone()).await?;
    let jid = pair_and_connect(&server, &client, phone).await?;
    Ok((server, client, backend, jid))
}

async fn kick(
    server: &wamock::Server,
    jid: &str,
    reason: &str,
) -> anyhow::Result<serde_json::Value> {
    post_json(
        format!("{}/admin/devices/{jid}/kick", server.http_url()),
        json!({ "reason": reason }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_515_the_client_reconnects_by_itself() -> anyhow::Result<()> {
    init_tracing();
    let (server, client, _backend, jid) = paired("5511999990030").await?;
    let before = server.handshakes();
    let answer = kick(&server, &jid, "515").await?;
    assert_eq!(
        answer,
        json!({ "jid": jid, "reason": "515", "closed": true })
    );
    client
        .wait_for("Connected again", WAIT, |e| {
            matches!(e, Event::Connected(_)).then_some(())
        })
        .await?;
    wait_devices(&server.http_url(), WAIT, |d| {
        d == &json!([{ "jid": jid, "connected": true, "sockets": 1, "maxSockets": 1, "replaced": 0 }])
    })
    .await?;
    // Registered by now, the client resumes with IK.
    assert_eq!(
        server.handshakes().ik,
        before.ik + 1,
        "{:?}",
        server.handshakes()
    );
    client.shutdown().await;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_device_is_logged_out_and_forgotten() -> anyhow::Result<()> {
    init_tracing();
    let (server, client, _backend, jid) = paired("5511999990031").await?;
    kick(&server, &jid, "401").await?;
    let on_connect = client
        .wait_for("LoggedOut", WAIT, |e| match e {
            Event::LoggedOut(l) => Some(l.on_connect),
            _ => None,
        })
        .await?;
    assert!(!on_connect, "logged out by a stream error, not at connect");
    assert_eq!(devices(&server.http_url()).await?, json!([]));
    client.shutdown().await;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_stream_stops_the_client() -> anyhow::Result<()> {
    init_tracing();
    let (server, client, _backend, jid) = paired("5511999990032").await?;
    // The counts right before the kick: whatsapp-rust 0.7 has been seen to log in twice right
    // after pairing's 515 (its second login replacing its first), which is not what this is
    // about.
    let before = wait_devices(&server.http_url(), WAIT, |d| d[0]["sockets"] == 1).await?;
    let (max, replaced) = (
        before[0]["maxSockets"].clone(),
        before[0]["replaced"].clone(),
    );
    kick(&server, &jid, "replaced").await?;
    client
        .wait_for("StreamReplaced", WAIT, |e| {
            matches!(e, Event::StreamReplaced(_)).then_some(())
        })
        .await?;
    // Stopped, and no login since.
    wait_devices(&server.http_url(), WAIT, |d| {
        d == &json!([{ "jid": jid, "connected": false, "sockets": 0, "maxSockets": max, "replaced": replaced }])
    })
    .await?;
    // Bad requests.
    let http = server.http_url();
    let bad = reqwest::Client::new()
        .post(format!("{http}/admin/devices/{jid}/kick"))
        .json(&json!({ "reason": "418" }))
        .send()
        .await?;
    assert_eq!(bad.status(), 400);
    let offline = reqwest::Client::new()
        .post(format!("{http}/admin/devices/{jid}/kick"))
        .json(&json!({ "reason": "515" }))
        .send()
        .await?;
    assert_eq!(offline.status(), 409);
    let unknown = reqwest::Client::new()
        .post(format!(
            "{http}/admin/devices/5511000000000:3@s.whatsapp.net/kick"
        ))
        .json(&json!({ "reason": "515" }))
        .send()
        .await?;
    assert_eq!(unknown.status(), 404);
    client.shutdown().await;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_login_replaces_the_first() -> anyhow::Result<()> {
    init_tracing();
    let (server, first, backend, jid) = paired("5511999990033").await?;
    let second = TestClient::start(&server.ws_url(), backend).await?;
    second
        .wait_for("second Connected", WAIT, |e| {
            matches!(e, Event::Connected(_)).then_some(())
        })
        .await?;
    first
        .wait_for("StreamReplaced on the first", WAIT, |e| {
            matches!(e, Event::StreamReplaced(_)).then_some(())
        })
        .await?;
    assert_eq!(
        devices(&server.http_url()).await?,
        json!([{ "jid": jid, "connected": true, "sockets": 1, "maxSockets": 2, "replaced": 1 }])
    );
    first.shutdown().await;
    second.shutdown().await;
    server.stop().await;
    Ok(())
}
