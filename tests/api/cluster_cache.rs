//! State that survives ownership moves (issue 15): a node that served a session with its key,
//! lost the session's shard, and got it back must not believe what it remembered. While the
//! shard was elsewhere the session was deleted and created again through another node, with a
//! new key: the old key gets 401 on the node that cached it, the new one 200.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::cluster::{formed, get, post, services, three_nodes};
use crate::helpers::GLOBAL_KEY;

/// `GET url` with a session's own key: the status and `X-Onwapp-Served-By`.
async fn with_key(url: String, key: &str) -> (u16, Option<u64>) {
    let r = reqwest::Client::new()
        .get(url)
        .header("Authorization", key)
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("request");
    (r.status().as_u16(), crate::cluster::served_by(&r))
}

async fn delete(url: String) -> (u16, Value) {
    let r = reqwest::Client::new()
        .delete(url)
        .header("Authorization", GLOBAL_KEY)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .expect("request");
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_while_the_shard_was_away_is_refused_when_it_comes_back() {
    let Some(pg) = services().await else {
        return;
    };
    let nodes = three_nodes(&pg.url, None);
    formed(&nodes[0], Duration::from_secs(60)).await;
    let (code, b) = post(
        format!("{}/sessions", nodes[0].base),
        json!({"session": "moved"}),
    )
    .await;
    assert_eq!(code, 201, "{b}");
    let old_key = b["apiKey"].as_str().expect("apiKey").to_string();
    let (_, owner, _) = get(format!("{}/moved/status", nodes[0].base))
        .await
        .expect("an answer");
    let owner = owner.expect("served by");
    let home = nodes.iter().find(|n| n.id == owner).expect("the owner");
    let others: Vec<_> = nodes.iter().filter(|n| n.id != owner).collect();
    // The owner serves (and remembers) the session and its key.
    let (code, by) = with_key(format!("{}/moved/status", home.base), &old_key).await;
    assert_eq!((code, by), (200, Some(owner)));

    // The shard goes away; meanwhile the session is deleted and created again, with a new
    // key, through another node.
    let (code, report) = post(
        format!("{}/admin/drain", home.base),
        json!({"timeoutSeconds": 30}),
    )
    .await;
    assert_eq!(code, 200, "{report}");
    assert_eq!(report["done"], true, "{report}");
    let (code, b) = delete(format!("{}/moved", others[0].base)).await;
    assert_eq!(code, 200, "{b}");
    let (code, b) = post(
        format!("{}/sessions", others[1].base),
        json!({"session": "moved"}),
    )
    .await;
    assert_eq!(code, 201, "{b}");
    let new_key = b["apiKey"].as_str().expect("apiKey").to_string();
    assert_ne!(new_key, old_key);

    // The shard comes back home.
    let (code, b) = post(format!("{}/admin/undrain", home.base), json!({})).await;
    assert_eq!(code, 200, "{b}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, Some(by), _)) = get(format!("{}/moved/status", others[0].base)).await
            && by == owner
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session's shard never came back to node {owner}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (code, by) = with_key(format!("{}/moved/status", home.base), &old_key).await;
    assert_eq!(code, 401, "the revoked key, served by {by:?}");
    let (code, by) = with_key(format!("{}/moved/status", home.base), &new_key).await;
    assert_eq!((code, by), (200, Some(owner)));
}
