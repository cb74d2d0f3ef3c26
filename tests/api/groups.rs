//! Groups against wamock: every group endpoint called over HTTP on a paired session, checked
//! in wamock's group state (`/admin/groups/{jid}`) or in what simulated members (real
//! whatsapp-rust clients) decrypted; members' texts and changes reach the session's store
//! and outbox.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::helpers::{Db, TestApp};
use crate::incoming_events::{admin, wait_event};
use crate::wa::{app_on, app_with_wamock, pair, poll, user, user_inbox};

const LIMIT: Duration = Duration::from_secs(20);

/// wamock's state of a group.
pub async fn wamock_group(wa: &wamock::Server, gid: &str) -> Value {
    let url = format!("{}/admin/groups/{gid}", wa.http_url());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// The member entry of `phone` in wamock's group state.
fn member<'a>(group: &'a Value, phone: &str) -> Option<&'a Value> {
    let jid = format!("{phone}@s.whatsapp.net");
    group["participants"]
        .as_array()?
        .iter()
        .find(|p| p["jid"] == jid.as_str())
}

/// Waits until the user's inbox holds the message `id`; returns it.
async fn wait_message(wa: &wamock::Server, phone: &str, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let inbox = user_inbox(wa, phone).await;
        if let Some(m) = inbox
            .as_array()
            .and_then(|a| a.iter().find(|m| m["id"] == id))
        {
            return m.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{phone} never got {id}: {inbox}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn error_of(code: u16, body: &Value, want_code: u16, needle: &str) {
    assert_eq!(code, want_code, "{needle}: {body}");
    let e = body["error"].as_str().unwrap_or_default();
    assert!(e.contains(needle), "{needle:?} not in {body}");
}

fn jpeg(tag: u8) -> Vec<u8> {
    let mut b = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
    ];
    b.extend(std::iter::repeat_n(tag, 300));
    b.extend([0xFF, 0xD9]);
    b
}

/// Creates a group over HTTP; its JID.
pub async fn create_group(app: &TestApp, session: &str, name: &str, members: &[&str]) -> Value {
    let (code, got) = TestApp::call(
        app.post(&format!("/{session}/group/create"))
            .json(&json!({"name": name, "participants": members})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    got
}

#[tokio::test]
async fn groups_end_to_end_on_sqlite() {
    groups_flow(Db::Sqlite).await;
}

#[tokio::test]
async fn groups_end_to_end_on_postgres() {
    groups_flow(Db::Postgres).await;
}

async fn groups_flow(db: Db) {
    let Some((app, wa)) = app_on(db).await else {
        return;
    };
    let (me, a, b, c, d, e) = (
        "5511999996001",
        "5511988886001",
        "5511988886002",
        "5511988886003",
        "5511988886004",
        "5511988886005",
    );
    app.create_session("gr").await;
    pair(&app, &wa, "gr", me).await;
    let session = app.store().get_session("gr").await.unwrap().unwrap().id;
    for p in [a, b, c, d, e] {
        user(&wa, p).await;
    }

    // Create: the session is the super admin, A and B members, in wamock and in the answer.
    let created = create_group(&app, "gr", "Team", &[a, b]).await;
    let gid = created["groupId"].as_str().unwrap().to_string();
    assert!(gid.ends_with("@g.us"), "{created}");
    let data = &created["data"];
    assert_eq!(data["JID"], gid.as_str());
    assert_eq!(data["Name"], "Team");
    assert_eq!(data["OwnerJID"], format!("{me}@s.whatsapp.net"));
    assert_eq!(data["Participants"].as_array().unwrap().len(), 3, "{data}");
    let state = wamock_group(&wa, &gid).await;
    assert_eq!(state["subject"], "Team");
    assert_eq!(member(&state, me).unwrap()["isSuperAdmin"], true, "{state}");
    assert!(member(&state, a).is_some() && member(&state, b).is_some());

    // List and info.
    let list = app.get_json("/gr/group/list").await;
    let row = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["jid"] == gid.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("{gid} not listed: {list}"));
    assert_eq!(row["name"], "Team");
    assert_eq!(row["participantCount"], 3);
    assert_eq!(row["isAnnounce"], false);
    let bare = gid.trim_end_matches("@g.us").to_string();
    let info = app
        .get_json(&format!("/gr/group/info?groupId={bare}"))
        .await;
    assert_eq!(info["groupId"], bare.as_str(), "echoed as given: {info}");
    assert_eq!(info["data"]["JID"], gid.as_str());
    let admins: Vec<&Value> = info["data"]["Participants"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["IsAdmin"] == true)
        .collect();
    assert_eq!(admins.len(), 1, "{info}");

    // Texts: through message/send/text with the group JID and the legacy route; both
    // members' clients decrypt the sender-key message.
    let (code, sent) = TestApp::call(
        app.post("/gr/message/send/text")
            .json(&json!({"phone": gid, "text": "hello team"})),
    )
    .await;
    assert_eq!(code, 200, "{sent}");
    let id = sent["messageId"].as_str().unwrap();
    for who in [a, b] {
        let got = wait_message(&wa, who, id).await;
        assert_eq!(got["text"], "hello team");
        assert_eq!(got["group"], gid.as_str());
        assert_eq!(got["from"], format!("{me}@s.whatsapp.net"));
    }
    let (code, sent) = TestApp::call(
        app.post("/gr/group/send/text")
            .json(&json!({"groupId": bare, "text": "legacy route"})),
    )
    .await;
    assert_eq!(code, 200, "{sent}");
    let got = wait_message(&wa, b, sent["messageId"].as_str().unwrap()).await;
    assert_eq!(got["text"], "legacy route");

    // A member writes: stored in the group chat and announced with the sender.
    let theirs = admin(
        &wa,
        &format!("/users/{a}/send"),
        json!({"to": gid, "text": "hi from a"}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let received = wait_event(&app, session, "message.received", |p| {
        p["Info"]["ID"] == theirs.as_str()
    })
    .await;
    assert_eq!(received["Info"]["Chat"], gid.as_str(), "{received}");
    assert_eq!(received["Info"]["IsGroup"], true);
    assert!(
        received["Info"]["Sender"].as_str().unwrap().starts_with(a),
        "{received}"
    );
    assert_eq!(received["Message"]["conversation"], "hi from a");
    let listed = poll(
        &app,
        &format!("/gr/chat/messages?chatId={gid}"),
        LIMIT,
        |m| {
            m.as_array()
                .is_some_and(|a| a.iter().any(|x| x["msgId"] == theirs.as_str()))
        },
    )
    .await;
    assert!(listed.as_array().unwrap().len() >= 3, "{listed}");

    // A member's change reaches the session as group.update.
    admin(
        &wa,
        &format!("/users/{a}/group"),
        json!({"group": gid, "action": "subject", "value": "Renamed by A"}),
    )
    .await;
    let update = wait_event(&app, session, "group.update", |p| {
        p["Name"]["Name"] == "Renamed by A" || p["Name"] == "Renamed by A"
    })
    .await;
    assert_eq!(update["JID"], gid.as_str(), "{update}");

    // Name (0.2.8's `value` spelling) and topic.
    let (code, got) = TestApp::call(
        app.post("/gr/group/name")
            .json(&json!({"groupId": gid, "value": "Team 2"})),
    )
    .await;
    assert_eq!((code, got), (200, json!({"groupId": gid})));
    let (code, got) = TestApp::call(
        app.post("/gr/group/topic")
            .json(&json!({"groupId": gid, "topic": "About us"})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    let state = wamock_group(&wa, &gid).await;
    assert_eq!(state["subject"], "Team 2");
    assert_eq!(state["description"], "About us");
    let (code, _) = TestApp::call(
        app.post("/gr/group/topic")
            .json(&json!({"groupId": gid, "value": "Second topic"})),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(wamock_group(&wa, &gid).await["description"], "Second topic");

    // Participants: promote, demote, add, remove.
    let (code, got) = TestApp::call(
        app.post("/gr/group/participants/promote")
            .json(&json!({"groupId": gid, "participants": [a]})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["groupId"], gid.as_str());
    assert_eq!(got["data"][0]["JID"], format!("{a}@s.whatsapp.net"));
    assert_eq!(got["data"][0]["Error"], 0);
    assert_eq!(
        member(&wamock_group(&wa, &gid).await, a).unwrap()["isAdmin"],
        true
    );
    let (code, _) = TestApp::call(
        app.post("/gr/group/participants/demote")
            .json(&json!({"groupId": gid, "participants": [a]})),
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(
        member(&wamock_group(&wa, &gid).await, a).unwrap()["isAdmin"],
        false
    );
    let (code, got) = TestApp::call(
        app.post("/gr/group/participants/add")
            .json(&json!({"groupId": gid, "participants": [c]})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert!(member(&wamock_group(&wa, &gid).await, c).is_some());
    let (code, _) = TestApp::call(
        app.post("/gr/group/participants/remove")
            .json(&json!({"groupId": gid, "participants": [c]})),
    )
    .await;
    assert_eq!(code, 200);
    assert!(member(&wamock_group(&wa, &gid).await, c).is_none());

    // Photo: set (base64), read back, removed.
    let pic = jpeg(7);
    let (code, got) = TestApp::call(app.post("/gr/group/photo").json(&json!({
        "groupId": gid,
        "image": base64::engine::general_purpose::STANDARD.encode(&pic),
    })))
    .await;
    assert_eq!(code, 200, "{got}");
    let state = wamock_group(&wa, &gid).await;
    assert_eq!(got["pictureId"], state["pictureId"], "{state}");
    let avatar = app
        .get_json(&format!("/gr/group/avatar?groupId={gid}"))
        .await;
    assert_eq!(avatar["id"], state["pictureId"], "{avatar}");
    assert!(avatar["url"].as_str().unwrap().starts_with("https://"));
    let (code, got) = TestApp::call(
        app.post("/gr/group/photo/remove")
            .json(&json!({"groupId": gid})),
    )
    .await;
    assert_eq!(
        (code, got),
        (200, json!({"message": "group picture deleted"}))
    );
    assert!(wamock_group(&wa, &gid).await["pictureId"].is_null());
    let avatar = app
        .get_json(&format!("/gr/group/avatar?groupId={gid}"))
        .await;
    assert_eq!(avatar, json!({"url": ""}));

    // Settings.
    for (path, body) in [
        ("announce", json!({"groupId": gid, "announce": true})),
        ("locked", json!({"groupId": gid, "locked": true})),
        ("approval", json!({"groupId": gid, "approvalMode": true})),
        ("memberadd", json!({"groupId": gid, "mode": "admin_add"})),
    ] {
        let (code, got) = TestApp::call(app.post(&format!("/gr/group/{path}")).json(&body)).await;
        assert_eq!((code, &got), (200, &json!({})), "{path}");
    }
    let state = wamock_group(&wa, &gid).await;
    assert_eq!(
        (
            &state["announce"],
            &state["locked"],
            &state["approval"],
            &state["memberAddMode"]
        ),
        (
            &json!(true),
            &json!(true),
            &json!(true),
            &json!("admin_add")
        ),
        "{state}"
    );

    // Invite link, reset, and the group behind it.
    let link = app
        .get_json(&format!("/gr/group/invitelink?groupId={gid}"))
        .await;
    let code = state["inviteCode"].as_str().unwrap();
    assert_eq!(link["link"], format!("https://chat.whatsapp.com/{code}"));
    assert_eq!(link["groupId"], gid.as_str());
    let reset = app
        .get_json(&format!("/gr/group/invitelink?groupId={gid}&reset=true"))
        .await;
    let new_code = wamock_group(&wa, &gid).await["inviteCode"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(new_code, code);
    assert_eq!(
        reset["link"],
        format!("https://chat.whatsapp.com/{new_code}")
    );
    let link = reset["link"].as_str().unwrap().to_string();
    for q in [format!("inviteLink={link}"), format!("link={new_code}")] {
        let got = app.get_json(&format!("/gr/group/inviteinfo?{q}")).await;
        assert_eq!(got["groupId"], gid.as_str(), "{got}");
        assert_eq!(got["data"]["Name"], "Team 2");
    }

    // Approval on: D and E ask to join with the link; D is approved, E rejected.
    for who in [d, e] {
        let joined = admin(
            &wa,
            &format!("/users/{who}/join"),
            json!({"code": new_code}),
        )
        .await;
        assert_eq!(joined["pending"], true, "{joined}");
    }
    let pending = app
        .get_json(&format!("/gr/group/requests?groupId={gid}"))
        .await;
    assert_eq!(pending["groupId"], bare.as_str(), "{pending}");
    let jids: Vec<&str> = pending["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["JID"].as_str().unwrap())
        .collect();
    assert_eq!(
        jids,
        [format!("{d}@s.whatsapp.net"), format!("{e}@s.whatsapp.net")]
    );
    let (code, got) = TestApp::call(
        app.post("/gr/group/requests/action")
            .json(&json!({"groupId": gid, "participants": [d], "action": "approve"})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got["groupId"], bare.as_str());
    assert_eq!(got["data"][0]["Error"], 0, "{got}");
    let (code, _) = TestApp::call(
        app.post("/gr/group/requests/action")
            .json(&json!({"groupId": gid, "participants": [e], "action": "reject"})),
    )
    .await;
    assert_eq!(code, 200);
    let state = wamock_group(&wa, &gid).await;
    assert!(member(&state, d).is_some(), "{state}");
    assert!(member(&state, e).is_none(), "{state}");
    assert_eq!(state["requests"], json!([]));

    // The session joins another group by link (no approval there).
    let other = admin(
        &wa,
        &format!("/users/{a}/groups"),
        json!({"subject": "A's group", "participants": [b]}),
    )
    .await["jid"]
        .as_str()
        .unwrap()
        .to_string();
    let other_code = wamock_group(&wa, &other).await["inviteCode"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, got) = TestApp::call(
        app.post("/gr/group/join")
            .json(&json!({"inviteLink": format!("https://chat.whatsapp.com/{other_code}")})),
    )
    .await;
    assert_eq!((code, got), (200, json!({"groupId": other})));
    assert!(member(&wamock_group(&wa, &other).await, me).is_some());
    let joined = wait_event(&app, session, "group.joined", |p| {
        p["JID"] == other.as_str()
    })
    .await;
    assert_eq!(joined["Sender"], format!("{me}@s.whatsapp.net"), "{joined}");

    // Leave: no longer a member; the group's info is then refused.
    let (code, got) =
        TestApp::call(app.post("/gr/group/leave").json(&json!({"groupId": other}))).await;
    assert_eq!((code, got), (200, json!({"groupId": other})));
    assert!(member(&wamock_group(&wa, &other).await, me).is_none());
    let (code, got) = TestApp::call(app.get(&format!("/gr/group/info?groupId={other}"))).await;
    error_of(code, &got, 403, "not allowed");
}

#[tokio::test]
async fn group_input_errors_and_unknown_groups() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("gbad").await;
    // Not connected yet: 409 once the input is fine.
    let (code, got) = TestApp::call(app.get("/gbad/group/list")).await;
    error_of(code, &got, 409, "not connected");
    let (code, got) = TestApp::call(
        app.post("/gbad/group/leave")
            .json(&json!({"groupId": "120363000000000001"})),
    )
    .await;
    error_of(code, &got, 409, "not connected");
    pair(&app, &wa, "gbad", "5511999996101").await;
    user(&wa, "5511988886101").await;

    let bad = [
        (app.post("/gbad/group/create").json(&json!({"participants": ["5511988886101"]})), "name"),
        (app.post("/gbad/group/create").json(&json!({"name": "X", "participants": []})), "participants is required"),
        (app.post("/gbad/group/create").json(&json!({"name": "X", "participants": ["abc"]})), "participants[0]"),
        (app.get("/gbad/group/info"), "groupId query parameter is required"),
        (app.get("/gbad/group/info?groupId=not-a-group"), "groupId must be a group ID"),
        (app.get("/gbad/group/info?groupId=5511988886101@s.whatsapp.net"), "groupId must be a group ID"),
        (app.post("/gbad/group/leave").json(&json!({})), "groupId"),
        (app.post("/gbad/group/name").json(&json!({"groupId": "120363000000000001"})), "name"),
        (app.post("/gbad/group/participants/add").json(&json!({"groupId": "120363000000000001", "participants": []})), "participants is required"),
        (app.post("/gbad/group/memberadd").json(&json!({"groupId": "120363000000000001", "mode": "everyone"})), "mode must be 'admin_add' or 'all_member_add'"),
        (app.post("/gbad/group/requests/action").json(&json!({"groupId": "120363000000000001", "participants": ["5511988886101"], "action": "maybe"})), "action must be 'approve' or 'reject'"),
        (app.get("/gbad/group/inviteinfo"), "inviteLink query parameter is required"),
        (app.get("/gbad/group/inviteinfo?link=https://chat.whatsapp.com/!!"), "inviteLink must be an invite link"),
        (app.post("/gbad/group/join").json(&json!({"inviteLink": ""})), "inviteLink is required"),
        (app.post("/gbad/group/photo").json(&json!({"groupId": "120363000000000001", "image": ""})), "image is required"),
        (app.post("/gbad/group/send/text").json(&json!({"groupId": "120363000000000001", "text": ""})), "text is required"),
    ];
    for (req, needle) in bad {
        let (code, got) = TestApp::call(req).await;
        error_of(code, &got, 400, needle);
    }

    // Unknown groups and invites: 404, not 500.
    let unknown = "120363999999999999@g.us";
    for req in [
        app.get(&format!("/gbad/group/info?groupId={unknown}")),
        app.get(&format!("/gbad/group/invitelink?groupId={unknown}")),
        app.get(&format!("/gbad/group/requests?groupId={unknown}")),
        app.post("/gbad/group/name")
            .json(&json!({"groupId": unknown, "name": "x"})),
        app.post("/gbad/group/participants/promote")
            .json(&json!({"groupId": unknown, "participants": ["5511988886101"]})),
        app.post("/gbad/group/announce")
            .json(&json!({"groupId": unknown, "announce": true})),
        app.post("/gbad/group/leave")
            .json(&json!({"groupId": unknown})),
    ] {
        let (code, got) = TestApp::call(req).await;
        error_of(code, &got, 404, "group not found");
    }
    let (code, got) =
        TestApp::call(app.get("/gbad/group/inviteinfo?inviteLink=NoSuchCode123")).await;
    error_of(code, &got, 404, "invite link not found");
    let (code, got) = TestApp::call(
        app.post("/gbad/group/join")
            .json(&json!({"inviteLink": "NoSuchCode123"})),
    )
    .await;
    error_of(code, &got, 404, "invite link not found");

    // A member who is not an admin is refused with 403.
    let gid = admin(
        &wa,
        "/users/5511988886101/groups",
        json!({"subject": "Theirs", "participants": ["5511999996101"]}),
    )
    .await["jid"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, got) = TestApp::call(
        app.post("/gbad/group/announce")
            .json(&json!({"groupId": gid, "announce": true})),
    )
    .await;
    error_of(code, &got, 403, "not allowed");
    assert_eq!(wamock_group(&wa, &gid).await["announce"], false);
}
