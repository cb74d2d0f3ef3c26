//! Nothing acknowledged is lost through a cluster (issue 15): four users stream texts to a
//! session of a three-node cluster while its owner is killed with `kill -9`, and, separately,
//! drained (`POST /admin/drain`, the Kubernetes `preStop`). Afterwards every text is in the
//! chat history, asked through any node, and reached the webhook, once or again with the same
//! `X-Webhook-Id`.

use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use serde_json::json;

use crate::cluster::{Member, formed, get, paired_session, post, services, three_nodes};
use crate::inbound_crash::{TEXTS, USERS, all_stored_once, receiver, streams_to};

/// What happens to the owner mid-stream.
#[derive(Debug, Clone, Copy)]
enum Upset {
    Kill,
    Drain,
}

async fn through_the_cluster(upset: Upset, me: &str, first_user: u64) {
    let Some(pg) = services().await else {
        return;
    };
    let wa = wamock::Server::start("127.0.0.1:0").await.unwrap();
    let mut nodes = three_nodes(&pg.url, Some(&wa.ws_url()));
    formed(&nodes[0], Duration::from_secs(60)).await;
    let session = "flow";
    let owner = paired_session(&nodes, &wa, session, me).await;
    let (log, hook) = receiver().await;
    let (code, b) = post(
        format!("{}/{session}/webhook", nodes[0].base),
        json!({"url": hook, "events": ["message.received"]}),
    )
    .await;
    assert_eq!(code, 200, "{b}");

    let (streams, sent, events) = streams_to(&wa, me, first_user).await;
    let total = USERS * TEXTS;
    let deadline = Instant::now() + Duration::from_secs(120);
    while sent.load(Ordering::SeqCst) < total / 3 {
        assert!(Instant::now() < deadline, "the users are not sending");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at = sent.load(Ordering::SeqCst);
    let i = nodes.iter().position(|n| n.id == owner).expect("the owner");
    match upset {
        Upset::Kill => {
            let mut dead: Member = nodes.remove(i);
            dead.child.kill().unwrap();
            dead.child.wait().unwrap();
        }
        Upset::Drain => {
            let (code, report) = post(
                format!("{}/admin/drain", nodes[i].base),
                json!({"timeoutSeconds": 30}),
            )
            .await;
            assert_eq!(code, 200, "{report}");
            assert_eq!(report["done"], true, "{report}");
        }
    }
    // The streams go on to the end.
    events.send_replace(2);
    let mut truth = Vec::with_capacity(total);
    for s in streams {
        truth.extend(s.await.expect("a user's stream").0);
    }
    let survivor = nodes.iter().find(|n| n.id != owner).expect("a survivor");
    let (deliveries, texts) = all_stored_once(
        &survivor.base,
        session,
        &truth,
        &log,
        &format!("owner {owner} upset ({upset:?}) after {at} sends"),
    )
    .await;
    let (_, now, _) = get(format!("{}/{session}/status", survivor.base))
        .await
        .expect("an answer");
    eprintln!(
        "{upset:?} of owner {owner} after {at} of {total} sends; node {now:?} serves the session; \
         {deliveries} webhook deliveries for {texts} texts"
    );
    wa.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_streamed_through_a_kill_9_of_the_owner_are_all_stored_and_delivered() {
    through_the_cluster(Upset::Kill, "5511966662500", 5511966662501).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn texts_streamed_through_a_drain_of_the_owner_are_all_stored_and_delivered() {
    through_the_cluster(Upset::Drain, "5511966663500", 5511966663501).await;
}
