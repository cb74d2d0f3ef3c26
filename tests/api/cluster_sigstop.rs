//! An owner frozen with SIGSTOP (issue 7). Its lease runs out while it sleeps, another node
//! fences the shard with a higher epoch and reconnects the paired session, and messages flow.
//! Once resumed with SIGCONT, the old owner sees its lease lost on the first check: a request
//! sent to it for the session is forwarded to the new owner (or served after a clean handback
//! at a newer epoch), never served at its old epoch, and it never logs in to WhatsApp while
//! another node holds the session; placement then hands its share back by planned handoffs.
//!
//! A frozen process cannot close its socket, so the new owner's login replaces it: wamock
//! counts that one replacement (`replaced` one more than before the freeze, `maxSockets` 2).
//! The point is that it stays the only one.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{
    Member, formed, paired_session, post, served_by, served_epoch, services, shards_per_node,
    three_nodes, wait_for,
};
use crate::helpers::GLOBAL_KEY;
use crate::process::send_signal;

/// `GET /{session}/status` through `node`: status, served by, served at epoch, body.
async fn status(node: &Member, session: &str) -> Option<(u16, Option<u64>, Option<u64>, Value)> {
    let r = reqwest::Client::new()
        .get(format!("{}/{session}/status", node.base))
        .header("Authorization", GLOBAL_KEY)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .ok()?;
    let (code, by, epoch) = (r.status().as_u16(), served_by(&r), served_epoch(&r));
    Some((code, by, epoch, r.json().await.unwrap_or(Value::Null)))
}

/// Polls wamock until `done` holds for the only device.
async fn wait_device(wa: &wamock::Server, limit: Duration, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let d = crate::wa::devices(wa).await;
        if d.as_array().map(Vec::len) == Some(1) && done(&d[0]) {
            return d[0].clone();
        }
        assert!(Instant::now() < deadline, "wamock never got there: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_owner_loses_the_session_and_once_resumed_neither_writes_nor_reconnects() {
    let Some(pg) = services().await else {
        return;
    };
    let wa = wamock::Server::start("127.0.0.1:0").await.unwrap();
    let nodes = three_nodes(&pg.url, Some(&wa.ws_url()));
    let initial = shards_per_node(&formed(&nodes[0], Duration::from_secs(60)).await);
    let (me, them) = ("5511955550911", "5511955550912");
    let owner = paired_session(&nodes, &wa, "frz", me).await;
    crate::wa::user(&wa, them).await;
    let frozen = nodes.iter().find(|n| n.id == owner).unwrap();
    let others: Vec<&Member> = nodes.iter().filter(|n| n.id != owner).collect();
    let (code, _, before, b) = status(others[0], "frz").await.unwrap();
    assert_eq!(code, 200, "{b}");
    let before = before.expect("x-onwapp-served-epoch");
    let (code, b) = post(
        format!("{}/frz/message/send/text", others[0].base),
        json!({"phone": them, "text": "before the freeze"}),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    crate::wa::wait_inbox(&wa, them, 1).await;

    // wamock's counts before the freeze (pairing's own reconnects are not what this is about:
    // whatsapp-rust 0.7 has been seen to reconnect twice right after pairing's 515).
    let paired = wait_device(&wa, Duration::from_secs(5), |d| d["sockets"] == 1).await;
    let replaced_before = paired["replaced"].as_u64().unwrap_or(0);
    let max_after_freeze = json!(paired["maxSockets"].as_u64().unwrap_or(1).max(2));

    // Freeze the owner: another node owns the session and reconnects it (no QR).
    send_signal(frozen.child.id(), "STOP");
    let stopped = Instant::now();
    let deadline = stopped + Duration::from_secs(30);
    // What each poll saw and when it came back, for the failure message.
    let mut polls = Vec::new();
    let (new_owner, epoch) = loop {
        let seen = status(others[0], "frz").await;
        polls.push(format!(
            "{:.1}s: {}",
            stopped.elapsed().as_secs_f64(),
            seen.as_ref()
                .map_or("no answer within 10 s".to_string(), |(c, by, e, b)| {
                    format!("{c} by {by:?} at epoch {e:?}: {b}")
                })
        ));
        if let Some((200, Some(by), Some(epoch), b)) = seen
            && by != owner
            && b["status"] == "connected"
        {
            break (by, epoch);
        }
        assert!(
            Instant::now() < deadline,
            "no node took the session over: {polls:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let took = stopped.elapsed();
    assert!(
        epoch > before,
        "fenced at a newer epoch: {before} -> {epoch}"
    );
    // The first poll was forwarded to the frozen owner, which accepted it and never answered:
    // it was routed again once the shard moved, so the failover shows within TTL + 5 s.
    assert!(
        took < Duration::from_secs(3 + 5),
        "took {took:?}: {polls:#?}"
    );
    let (code, b) = post(
        format!("{}/frz/message/send/text", others[1].base),
        json!({"phone": them, "text": "while the old owner sleeps"}),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    crate::wa::wait_inbox(&wa, them, 2).await;
    // The frozen process could not close its socket: the new login replaced it, once.
    let d = wait_device(&wa, Duration::from_secs(10), |d| d["sockets"] == 1).await;
    assert_eq!(
        (d["maxSockets"].clone(), d["replaced"].clone()),
        (max_after_freeze.clone(), json!(replaced_before + 1)),
        "{paired} -> {d}"
    );

    // A send for the session reaches the frozen node's socket backlog, then it resumes: the
    // very first thing it does is to route that request.
    let queued = tokio::spawn({
        let url = format!("{}/frz/message/send/text", frozen.base);
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("Authorization", GLOBAL_KEY)
                .timeout(Duration::from_secs(30))
                .json(&json!({"phone": "5511955550912", "text": "sent to the resumed node"}))
                .send()
                .await
                .unwrap();
            let (by, epoch) = (served_by(&r), served_epoch(&r));
            (
                r.status().as_u16(),
                by,
                epoch,
                r.text().await.unwrap_or_default(),
            )
        }
    });
    // Only ordering: let the request reach the frozen node's kernel buffers first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    send_signal(frozen.child.id(), "CONT");
    let resumed = Instant::now();
    let (code, by, served_at, b) = queued.await.unwrap();
    assert_eq!(code, 200, "{b}");
    let (by, served_at) = (by.unwrap(), served_at.unwrap());
    assert!(
        by != owner || served_at > epoch,
        "the resumed node served at epoch {served_at} (the shard is at {epoch} elsewhere)"
    );
    crate::wa::wait_inbox(&wa, them, 3).await;
    eprintln!(
        "owner {owner} frozen; node {new_owner} connected the session at epoch {epoch} (was \
         {before}) after {took:?}; the send queued at the frozen node was served by node {by} at \
         epoch {served_at}, {:?} after SIGCONT",
        resumed.elapsed()
    );

    // The resumed node is a member again (its lease valid) and placement, which depends only
    // on the live nodes, hands it back its share by planned handoffs: the map ends as before
    // the freeze, and the session with it.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = formed(frozen, Duration::from_secs(30)).await;
        if st["lease"] == "valid" && shards_per_node(&st) == initial {
            break;
        }
        assert!(Instant::now() < deadline, "the map did not settle: {st}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let settled = resumed.elapsed();
    let st = wait_for(
        &format!("{}/frz/status", frozen.base),
        Duration::from_secs(30),
        |b| b["status"] == "connected",
    )
    .await;
    assert_eq!(st["phone"], me, "{st}");
    let (_, home, home_epoch, _) = status(others[0], "frz").await.unwrap();
    assert_eq!(home, Some(owner), "the session is back on its first owner");
    assert!(home_epoch > Some(epoch), "{home_epoch:?} after {epoch}");
    let (code, b) = post(
        format!("{}/frz/message/send/text", others[1].base),
        json!({"phone": them, "text": "after the resume"}),
    )
    .await;
    assert_eq!(code, 200, "{b}");
    let inbox = crate::wa::wait_inbox(&wa, them, 4).await;
    assert_eq!(inbox[3]["text"], "after the resume", "{inbox}");
    // Still the one replacement of the freeze: the resumed node never logged in over the new
    // owner; the handback stopped the new owner's client before the old one connected.
    let d = wait_device(&wa, Duration::from_secs(5), |d| d["sockets"] == 1).await;
    assert_eq!(d["replaced"], json!(replaced_before + 1), "{paired} -> {d}");
    assert_eq!(d["maxSockets"], max_after_freeze, "{paired} -> {d}");
    eprintln!(
        "settled {settled:?} after SIGCONT: the map as before the freeze, the session back on \
         node {owner} at epoch {home_epoch:?}; wamock: {d}"
    );
    drop(nodes);
    wa.stop().await;
}
