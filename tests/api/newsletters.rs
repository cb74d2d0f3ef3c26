//! Newsletters (channels) against wamock: what the session creates, follows, mutes, reacts
//! to and views is checked in wamock's own state of the channel; what it reads back is what
//! a simulated user posted there through its own client.

use serde_json::{Value, json};

use crate::helpers::{Db, TestApp};
use crate::wa::{app_on, app_with_wamock, pair, user};

/// wamock's view of a channel.
async fn channel(wa: &wamock::Server, jid: &str) -> Value {
    let url = format!("{}/admin/newsletters/{jid}", wa.http_url());
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

async fn admin_post(wa: &wamock::Server, path: &str, body: Value) -> Value {
    let r = reqwest::Client::new()
        .post(format!("{}{path}", wa.http_url()))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_success(), "{path}: {status} {body}");
    body
}

fn error_of(code: u16, body: &Value, want_code: u16, needle: &str) {
    assert_eq!(code, want_code, "{body}");
    let e = body["error"].as_str().unwrap_or_default();
    assert!(e.contains(needle), "{needle:?} not in {body}");
}

#[tokio::test]
async fn create_list_and_info_show_the_channel_wamock_holds() {
    let Some((app, wa)) = app_with_wamock().await else {
        return;
    };
    app.create_session("nc").await;
    pair(&app, &wa, "nc", "5511999990501").await;

    let (code, got) = TestApp::call(
        app.post("/nc/newsletter/create")
            .json(&json!({"name": "Daily news", "description": "What happened"})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    let jid = got["data"]["id"].as_str().unwrap().to_string();
    assert!(jid.ends_with("@newsletter"), "{got}");
    assert_eq!(got["data"]["state"]["type"], "active", "{got}");
    assert_eq!(got["data"]["thread_metadata"]["name"]["text"], "Daily news");
    assert_eq!(
        got["data"]["thread_metadata"]["description"]["text"],
        "What happened"
    );
    assert_eq!(got["data"]["viewer_metadata"]["role"], "owner", "{got}");

    // wamock holds it, owned by the session's account.
    let held = channel(&wa, &jid).await;
    assert_eq!(held["owner"], "5511999990501", "{held}");
    assert_eq!(held["name"], "Daily news", "{held}");
    assert_eq!(held["description"], "What happened", "{held}");

    // list: a bare array with it; info by newsletterId and by the 0.2.8 newsletterJid.
    let (code, list) = TestApp::call(app.get("/nc/newsletter/list")).await;
    assert_eq!(code, 200, "{list}");
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["id"], jid.as_str());
    for q in ["newsletterId", "newsletterJid"] {
        let (code, info) = TestApp::call(app.get(&format!("/nc/newsletter/info?{q}={jid}"))).await;
        assert_eq!(code, 200, "{info}");
        assert_eq!(info["data"]["id"], jid.as_str(), "{info}");
        assert_eq!(
            info["data"]["thread_metadata"]["name"]["text"],
            "Daily news"
        );
    }

    // Bad input.
    let (code, e) = TestApp::call(app.post("/nc/newsletter/create").json(&json!({}))).await;
    error_of(code, &e, 400, "name is required");
    let (code, e) = TestApp::call(app.get("/nc/newsletter/info")).await;
    error_of(code, &e, 400, "newsletterId query parameter is required");
    let (code, e) =
        TestApp::call(app.get("/nc/newsletter/info?newsletterId=5511999990501@s.whatsapp.net"))
            .await;
    error_of(code, &e, 400, "newsletterId must be a newsletter JID");
    let (code, e) =
        TestApp::call(app.get("/nc/newsletter/info?newsletterId=120363999999999999@newsletter"))
            .await;
    error_of(code, &e, 404, "not found");
}

#[tokio::test]
async fn follow_read_react_mute_view_and_live_reach_the_channel() {
    let Some((app, wa)) = app_on(Db::Postgres).await else {
        return;
    };
    app.create_session("nf").await;
    pair(&app, &wa, "nf", "5511999990502").await;
    user(&wa, "5511988880502").await;

    // A simulated user owns a channel and posts two texts to it.
    let created = admin_post(
        &wa,
        "/admin/users/5511988880502/newsletters",
        json!({"name": "User channel"}),
    )
    .await;
    let jid = created["jid"].as_str().unwrap().to_string();
    let post_path = format!("/admin/users/5511988880502/newsletters/{jid}/post");
    let first = admin_post(&wa, &post_path, json!({"text": "first post"})).await;
    let second = admin_post(&wa, &post_path, json!({"text": "second post"})).await;
    let sid = second["serverId"].as_u64().unwrap();

    // follow (0.2.8's newsletterJid spelling): wamock's followers gain the session.
    let (code, got) = TestApp::call(
        app.post("/nf/newsletter/follow")
            .json(&json!({"newsletterJid": jid})),
    )
    .await;
    assert_eq!((code, &got), (200, &json!({})));
    assert_eq!(
        channel(&wa, &jid).await["followers"],
        json!(["5511999990502"])
    );
    let (_, list) = TestApp::call(app.get("/nf/newsletter/list")).await;
    assert_eq!(list[0]["id"], jid.as_str(), "{list}");
    assert_eq!(list[0]["viewer_metadata"]["role"], "subscriber", "{list}");

    // messages: the user's posts, with their server ids and texts.
    let (code, got) =
        TestApp::call(app.get(&format!("/nf/newsletter/messages?newsletterId={jid}"))).await;
    assert_eq!(code, 200, "{got}");
    let msgs = got["data"].as_array().unwrap();
    assert_eq!(msgs.len(), 2, "{got}");
    assert_eq!(msgs[0]["MessageServerID"], first["serverId"], "{got}");
    assert_eq!(msgs[0]["MessageID"], first["id"], "{got}");
    assert_eq!(msgs[0]["Message"]["conversation"], "first post", "{got}");
    assert_eq!(msgs[1]["MessageServerID"], sid, "{got}");
    assert_eq!(msgs[1]["Message"]["conversation"], "second post", "{got}");

    // react: wamock stores it on that server id; messages shows the count.
    let (code, got) = TestApp::call(
        app.post("/nf/newsletter/react")
            .json(&json!({"newsletterId": jid, "serverId": sid, "reaction": "👍"})),
    )
    .await;
    assert_eq!((code, &got), (200, &json!({})));
    let held = channel(&wa, &jid).await;
    assert_eq!(
        held["messages"][1]["reactions"],
        json!({"5511999990502": "👍"}),
        "{held}"
    );
    let (_, got) =
        TestApp::call(app.get(&format!("/nf/newsletter/messages?newsletterId={jid}"))).await;
    assert_eq!(got["data"][1]["ReactionCounts"], json!({"👍": 1}), "{got}");

    // mute on, then off: wamock's flag for the session's account.
    for mute in [true, false] {
        let (code, got) = TestApp::call(
            app.post("/nf/newsletter/mute")
                .json(&json!({"newsletterId": jid, "mute": mute})),
        )
        .await;
        assert_eq!((code, &got), (200, &json!({})));
        assert_eq!(
            channel(&wa, &jid).await["mutes"],
            json!({"5511999990502": mute})
        );
    }

    // viewed: wamock counts the session's view on both posts.
    let (code, got) = TestApp::call(
        app.post("/nf/newsletter/viewed")
            .json(&json!({"newsletterId": jid, "serverIds": [first["serverId"], sid]})),
    )
    .await;
    assert_eq!(code, 200, "{got}");
    assert_eq!(got, json!({"message": "messages marked as viewed"}));
    let held = channel(&wa, &jid).await;
    for m in held["messages"].as_array().unwrap() {
        assert_eq!(m["views"], json!(["5511999990502"]), "{held}");
    }

    // subscribe-live: the duration wamock granted (300 s) as Go prints it.
    let (code, got) = TestApp::call(
        app.post("/nf/newsletter/subscribe-live")
            .json(&json!({"newsletterId": jid})),
    )
    .await;
    assert_eq!((code, &got), (200, &json!({"duration": "5m0s"})));
    assert_eq!(
        channel(&wa, &jid).await["liveSubscribers"],
        json!(["5511999990502"])
    );

    // unfollow: the followers are empty again.
    let (code, got) = TestApp::call(
        app.post("/nf/newsletter/unfollow")
            .json(&json!({"newsletterId": jid})),
    )
    .await;
    assert_eq!((code, &got), (200, &json!({})));
    assert_eq!(channel(&wa, &jid).await["followers"], json!([]));

    // Bad input and unknown channels.
    let unknown = "120363999999999998@newsletter";
    let (code, e) = TestApp::call(app.post("/nf/newsletter/follow").json(&json!({}))).await;
    error_of(code, &e, 400, "newsletterId is required");
    let (code, e) = TestApp::call(
        app.post("/nf/newsletter/follow")
            .json(&json!({"newsletterId": "5511988880502"})),
    )
    .await;
    error_of(code, &e, 400, "newsletterId must be a newsletter JID");
    for path in ["follow", "unfollow", "subscribe-live"] {
        let (code, e) = TestApp::call(
            app.post(&format!("/nf/newsletter/{path}"))
                .json(&json!({"newsletterId": unknown})),
        )
        .await;
        error_of(code, &e, 404, "not found");
    }
    let (code, e) =
        TestApp::call(app.get(&format!("/nf/newsletter/messages?newsletterId={unknown}"))).await;
    error_of(code, &e, 404, "not found");
    let (code, e) = TestApp::call(
        app.post("/nf/newsletter/react")
            .json(&json!({"newsletterId": jid, "serverId": 0, "reaction": "👍"})),
    )
    .await;
    error_of(
        code,
        &e,
        400,
        "serverId must be a positive message server id",
    );
    let (code, e) = TestApp::call(
        app.post("/nf/newsletter/react")
            .json(&json!({"newsletterId": unknown, "serverId": 5, "reaction": "👍"})),
    )
    .await;
    error_of(code, &e, 404, "not found");
    let (code, e) = TestApp::call(
        app.post("/nf/newsletter/viewed")
            .json(&json!({"newsletterId": jid, "serverIds": []})),
    )
    .await;
    error_of(code, &e, 400, "serverIds is required");
    let (code, e) = TestApp::call(
        app.post("/nf/newsletter/mute")
            .json(&json!({"newsletterId": unknown, "mute": true})),
    )
    .await;
    error_of(code, &e, 404, "not found");

    // A session that is not connected: 409.
    let (code, _) = TestApp::call(app.post("/nf/disconnect")).await;
    assert_eq!(code, 200);
    let (code, e) = TestApp::call(app.get("/nf/newsletter/list")).await;
    error_of(code, &e, 409, "not connected");
}
