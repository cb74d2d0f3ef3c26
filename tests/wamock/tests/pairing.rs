//! A real whatsapp-rust 0.7 client pairs with wamock by QR, logs in, and later logs in
//! again from its stored keys.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TestClient, devices, init_tracing, pair_and_connect, post_json, wait_devices};
use serde_json::json;
use wacore::store::InMemoryBackend;
use whatsapp_rust::types::events::Event;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qr_pairing_then_connected() -> anyhow::Result<()> {
    init_tracing();
    let server = wamock::Server::start("127.0.0.1:0").await?;
    let client = TestClient::start(&server.ws_url(), Arc::new(InMemoryBackend::new())).await?;

    let jid = pair_and_connect(&server, &client, "5511999990001").await?;
    assert_eq!(jid, "5511999990001:1@s.whatsapp.net");

    let listed = devices(&server.http_url()).await?;
    assert_eq!(listed[0]["jid"], json!(jid));
    assert_eq!(listed[0]["connected"], json!(true));
    assert_eq!(listed[0]["sockets"], json!(1));
    // One socket, or (whatsapp-rust 0.7 now and then connects once more right after its
    // reconnect on the 515, seen in CI) a second login of the client that replaced its first:
    // never two sockets left up.
    let max = listed[0]["maxSockets"].as_u64().unwrap_or(0);
    assert!(max == 1 || max == 2, "{listed}");
    assert_eq!(listed[0]["replaced"], json!(max - 1), "{listed}");
    // The pairing connection ran XX; the reconnect after 515 ran XX again (the client
    // only caches the server key once it is registered).
    assert_eq!(server.handshakes().xx, 2);

    client.shutdown().await;
    wait_devices(&server.http_url(), Duration::from_secs(10), |d| {
        d[0]["connected"] == json!(false) && d[0]["sockets"] == json!(0)
    })
    .await?;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_client_logs_in_without_qr() -> anyhow::Result<()> {
    init_tracing();
    let server = wamock::Server::start("127.0.0.1:0").await?;
    let backend = Arc::new(InMemoryBackend::new());

    let first = TestClient::start(&server.ws_url(), backend.clone()).await?;
    let jid = pair_and_connect(&server, &first, "5511999990002").await?;
    first.shutdown().await;
    let before = wait_devices(&server.http_url(), Duration::from_secs(10), |d| {
        d[0]["connected"] == json!(false)
    })
    .await?;

    let second = TestClient::start(&server.ws_url(), backend).await?;
    second
        .wait_for("Connected", Duration::from_secs(20), |e| match e {
            Event::PairingQrCode(_) => Some(Err(anyhow::anyhow!(
                "a restarted client was asked to pair again"
            ))),
            Event::Connected(_) => Some(Ok(())),
            _ => None,
        })
        .await??;
    // The restarted client's login replaced nothing: the first client was gone. Compared
    // with the counts before the restart, not with zero: CI once logged four connections
    // here (the first client connected again 2 ms after its reconnect on the 515, so its
    // own new login replaced its previous one: maxSockets 2, replaced 1) while this restart
    // was clean. What happens while pairing is `qr_pairing_then_connected`'s concern.
    let listed = devices(&server.http_url()).await?;
    assert_eq!(listed[0]["jid"], json!(jid));
    assert_eq!(listed[0]["connected"], json!(true));
    assert_eq!(listed[0]["sockets"], json!(1));
    assert_eq!(
        listed[0]["replaced"], before[0]["replaced"],
        "{before} -> {listed}"
    );
    assert_eq!(
        listed[0]["maxSockets"], before[0]["maxSockets"],
        "{before} -> {listed}"
    );
    // The stored server key was used: the restart resumed with Noise IK, no new XX.
    // (`ik` can exceed 1: whatsapp-rust 0.7's shutdown may race one reconnect attempt
    // of the first client.)
    let handshakes = server.handshakes();
    assert_eq!(handshakes.xx, 2, "{handshakes:?}");
    assert!(handshakes.ik >= 1, "{handshakes:?}");

    second.shutdown().await;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_forgot_the_device_logs_it_out() -> anyhow::Result<()> {
    init_tracing();
    let backend = Arc::new(InMemoryBackend::new());
    let first_server = wamock::Server::start("127.0.0.1:0").await?;
    let first = TestClient::start(&first_server.ws_url(), backend.clone()).await?;
    pair_and_connect(&first_server, &first, "5511999990003").await?;
    first.shutdown().await;
    first_server.stop().await;

    // A new wamock: another server key and no accounts. The client resumes with IK
    // against the key it cached, the server answers XXfallback, then refuses the
    // login of a device it does not know.
    let server = wamock::Server::start("127.0.0.1:0").await?;
    let client = TestClient::start(&server.ws_url(), backend).await?;
    let on_connect = client
        .wait_for("LoggedOut", Duration::from_secs(20), |e| match e {
            Event::LoggedOut(l) => Some(l.on_connect),
            _ => None,
        })
        .await?;
    assert!(on_connect, "logged out by the connect failure");
    assert_eq!(server.handshakes().xx_fallback, 1);
    assert_eq!(devices(&server.http_url()).await?, json!([]));

    client.shutdown().await;
    server.stop().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_by_phone_code() -> anyhow::Result<()> {
    init_tracing();
    let server = wamock::Server::start("127.0.0.1:0").await?;
    let http = server.http_url();
    let phone = "5511999990004";
    let client = TestClient::start_with(
        &server.ws_url(),
        Arc::new(InMemoryBackend::new()),
        Some(phone),
    )
    .await?;
    let code = client
        .wait_for("pairing code", Duration::from_secs(10), |e| match e {
            Event::PairingCode(c) => Some(c.code.clone()),
            _ => None,
        })
        .await?;
    // A wrong code does not open the client's key bundle.
    let wrong = if code.starts_with('A') {
        "BBBB-BBBB"
    } else {
        "AAAA-AAAA"
    };
    let refused = reqwest::Client::new()
        .post(format!("{http}/admin/pair-code"))
        .json(&json!({ "phone": phone, "code": wrong }))
        .send()
        .await?;
    assert_eq!(refused.status(), 422, "{}", refused.text().await?);
    // No client waits for a code for another number.
    let unknown = reqwest::Client::new()
        .post(format!("{http}/admin/pair-code"))
        .json(&json!({ "phone": "5511999990999", "code": code }))
        .send()
        .await?;
    assert_eq!(unknown.status(), 404);

    let dashed = format!("{}-{}", &code[..4], &code[4..]);
    let answer = post_json(
        format!("{http}/admin/pair-code"),
        json!({ "phone": phone, "code": dashed }),
    )
    .await?;
    let jid = answer["jid"].as_str().unwrap_or_default().to_string();
    assert_eq!(jid, "5511999990004:1@s.whatsapp.net");
    client
        .wait_for("PairSuccess", Duration::from_secs(10), |e| {
            matches!(e, Event::PairSuccess(_)).then_some(())
        })
        .await?;
    client
        .wait_for("Connected", Duration::from_secs(10), |e| {
            matches!(e, Event::Connected(_)).then_some(())
        })
        .await?;
    // One socket in the end. whatsapp-rust 0.7 has been seen to log in twice right after
    // pairing's 515, its second login replacing its first (see faults.rs): at most that.
    let listed = wait_devices(&http, Duration::from_secs(10), |d| {
        d[0]["sockets"] == 1 && d[0]["connected"] == true
    })
    .await?;
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed[0]["jid"], jid.as_str(), "{listed}");
    let (max, replaced) = (
        listed[0]["maxSockets"].as_u64().unwrap_or(99),
        listed[0]["replaced"].as_u64().unwrap_or(99),
    );
    assert!(
        (max, replaced) == (1, 0) || (max, replaced) == (2, 1),
        "{listed}"
    );
    client.shutdown().await;
    server.stop().await;
    Ok(())
}
