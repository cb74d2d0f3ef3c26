use serde_json::{Value, json};

use crate::helpers::TestApp;

async fn settings_exist_from_creation_with_defaults(app: TestApp) {
    let s = app.create_session("set").await;
    let r = app.get("/set/settings").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["sessionId"], s["id"]);
    assert!(uuid::Uuid::parse_str(b["id"].as_str().unwrap()).is_ok());
    assert_eq!(b["alwaysOnline"], false);
    assert_eq!(b["autoRejectCalls"], false);
    assert_eq!(b["syncHistory"], true);
    for f in [
        "lastSeen",
        "online",
        "profilePhoto",
        "status",
        "readReceipts",
        "groupAdd",
        "callAdd",
    ] {
        assert_eq!(b[f], "all", "{f}");
    }
    assert_eq!(b["defaultDisappearingTimer"], "off");
    assert!(b.get("privacySyncedAt").is_none());
}

async fn settings_update_and_persist(app: TestApp) {
    app.create_session("upd").await;
    let body = json!({
        "alwaysOnline": true,
        "autoRejectCalls": true,
        "syncHistory": false,
        "lastSeen": "contacts",
        "online": "match_last_seen",
        "profilePhoto": "none",
        "status": "contact_blacklist",
        "readReceipts": "none",
        "groupAdd": "contacts",
        "callAdd": "known",
        "defaultDisappearingTimer": "7d"
    });
    let r = app.post("/upd/settings").json(&body).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    for (k, v) in body.as_object().unwrap() {
        assert_eq!(&b[k], v, "{k}");
    }
    // A partial update leaves the rest alone; `{}` changes nothing.
    let r = app
        .post("/upd/settings")
        .json(&json!({"alwaysOnline": false}))
        .send()
        .await
        .unwrap();
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["alwaysOnline"], false);
    assert_eq!(b["lastSeen"], "contacts");
    let again: Value = app
        .post("/upd/settings")
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let stored: Value = app.get_json("/upd/settings").await;
    assert_eq!(again, stored);
    assert_eq!(stored["defaultDisappearingTimer"], "7d");
}

async fn settings_values_are_validated(app: TestApp) {
    app.create_session("val").await;
    let before: Value = app.get_json("/val/settings").await;
    for (field, bad) in [
        ("lastSeen", json!("everyone")),
        ("online", json!("contacts")),
        ("profilePhoto", json!("")),
        ("status", json!("ALL")),
        ("readReceipts", json!("contacts")),
        ("groupAdd", json!("known")),
        ("callAdd", json!("none")),
        ("defaultDisappearingTimer", json!("1h")),
        ("alwaysOnline", json!("yes")),
        ("syncHistory", json!(1)),
        ("lastSeen", json!(3)),
    ] {
        // A valid field beside the bad one must not be applied either.
        let companion = if field == "alwaysOnline" {
            "autoRejectCalls"
        } else {
            "alwaysOnline"
        };
        let (code, e) = TestApp::call(
            app.post("/val/settings")
                .json(&json!({ companion: true, field: bad })),
        )
        .await;
        assert_eq!(code, 400, "{field}={bad}");
        assert!(e["error"].as_str().unwrap().contains(field), "{field}: {e}");
    }
    let after: Value = app.get_json("/val/settings").await;
    assert_eq!(before, after, "a refused update changed nothing");
    assert_eq!(
        app.get("/nope/settings").send().await.unwrap().status(),
        404
    );
    assert_eq!(
        app.post("/nope/settings")
            .json(&json!({}))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

crate::on_both_databases!(
    settings_exist_from_creation_with_defaults,
    settings_update_and_persist,
    settings_values_are_validated,
);
