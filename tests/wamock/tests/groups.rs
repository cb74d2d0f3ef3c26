//! Groups between simulated users (real whatsapp-rust clients): one creates a group with
//! its own client, members decrypt each other's sender-key texts, roles and settings
//! change through the `w:g2` IQs, and a third user joins with the invite code.

mod common;

use std::time::Duration;

use common::{create_user, get_json, init_tracing, post_json, user_send, wait_user_list};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_exchange_sender_key_texts_and_manage_the_group() -> anyhow::Result<()> {
    init_tracing();
    let server = wamock::Server::start("127.0.0.1:0").await?;
    let http = server.http_url();
    let (alice, bob, carol) = ("5511999991001", "5511999991002", "5511999991003");
    create_user(&http, alice, "Alice").await?;
    create_user(&http, bob, "Bob").await?;
    create_user(&http, carol, "Carol").await?;

    let created = post_json(
        format!("{http}/admin/users/{alice}/groups"),
        json!({"subject": "Team", "participants": [bob]}),
    )
    .await?;
    let gid = created["jid"].as_str().unwrap_or_default().to_string();
    assert!(gid.ends_with("@g.us"), "{created}");
    let state = get_json(format!("{http}/admin/groups/{gid}")).await?;
    assert_eq!(state["subject"], "Team");
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(2));
    assert_eq!(state["participants"][0]["isSuperAdmin"], true);

    // Alice → group: Bob's client decrypts the sender-key message.
    let id = user_send(&http, alice, &gid, "hello team").await?;
    let got = wait_user_list(&http, bob, "inbox", WAIT, |e| e["id"] == id.as_str()).await?;
    assert_eq!(got["text"], "hello team");
    assert_eq!(got["group"], gid.as_str());
    assert_eq!(got["from"], format!("{alice}@s.whatsapp.net"));
    // And back, plus a second message on the same sender key.
    let id = user_send(&http, bob, &gid, "hi alice").await?;
    let got = wait_user_list(&http, alice, "inbox", WAIT, |e| e["id"] == id.as_str()).await?;
    assert_eq!(got["text"], "hi alice");
    let id = user_send(&http, alice, &gid, "again").await?;
    wait_user_list(&http, bob, "inbox", WAIT, |e| {
        e["id"] == id.as_str() && e["text"] == "again"
    })
    .await?;

    // Settings and roles.
    post_json(
        format!("{http}/admin/users/{alice}/group"),
        json!({"group": gid, "action": "subject", "value": "Team 2"}),
    )
    .await?;
    post_json(
        format!("{http}/admin/users/{alice}/group"),
        json!({"group": gid, "action": "promote", "participants": [bob]}),
    )
    .await?;
    post_json(
        format!("{http}/admin/users/{alice}/group"),
        json!({"group": gid, "action": "description", "value": "About us"}),
    )
    .await?;
    let state = get_json(format!("{http}/admin/groups/{gid}")).await?;
    assert_eq!(state["subject"], "Team 2");
    assert_eq!(state["description"], "About us");
    assert_eq!(state["participants"][1]["isAdmin"], true);

    // Carol joins with the code; a message after that reaches her too.
    let code = state["inviteCode"].as_str().unwrap_or_default().to_string();
    let joined = post_json(
        format!("{http}/admin/users/{carol}/join"),
        json!({"code": code}),
    )
    .await?;
    assert_eq!(joined["jid"], gid.as_str());
    assert_eq!(joined["pending"], false);
    let id = user_send(&http, bob, &gid, "welcome carol").await?;
    let got = wait_user_list(&http, carol, "inbox", WAIT, |e| e["id"] == id.as_str()).await?;
    assert_eq!(got["text"], "welcome carol");
    wait_user_list(&http, alice, "inbox", WAIT, |e| e["id"] == id.as_str()).await?;

    // Carol leaves.
    post_json(
        format!("{http}/admin/users/{carol}/group"),
        json!({"group": gid, "action": "leave"}),
    )
    .await?;
    let state = get_json(format!("{http}/admin/groups/{gid}")).await?;
    assert_eq!(state["participants"].as_array().map(Vec::len), Some(2));
    server.stop().await;
    Ok(())
}
