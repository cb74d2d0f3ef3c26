use serde_json::{Value, json};

use crate::helpers::TestApp;

async fn session_lifecycle(app: TestApp) {
    let created = app.create_session("my-session").await;
    assert_eq!(created["session"], "my-session");
    assert_eq!(created["status"], "disconnected");
    let id = created["id"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(id).is_ok());
    let key = created["apiKey"].as_str().unwrap();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    for f in ["createdAt", "updatedAt"] {
        assert!(chrono::DateTime::parse_from_rfc3339(created[f].as_str().unwrap()).is_ok());
    }
    assert!(created.get("deviceJid").is_none() && created.get("phone").is_none());

    let list = app.get_list("/sessions").await;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], created["id"]);

    let r = app.get("/my-session/status").send().await.unwrap();
    assert_eq!(r.status(), 200);
    let st: Value = r.json().await.unwrap();
    assert_eq!(st["id"], created["id"]);
    assert_eq!(st["session"], "my-session");
    assert_eq!(st["status"], "disconnected");

    let r = app.delete("/my-session").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "session deleted"})
    );

    let r = app.get("/my-session/status").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "session my-session not found"})
    );
    assert_eq!(
        app.delete("/my-session").send().await.unwrap().status(),
        404
    );
    let list = app.get_list("/sessions").await;
    assert!(list.is_empty());
}

async fn duplicate_session_is_409(app: TestApp) {
    app.create_session("dup").await;
    let r = app
        .post("/sessions")
        .json(&json!({"session": "dup"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "session dup already exists"})
    );
}

async fn bad_create_bodies_are_400_naming_the_field(app: TestApp) {
    let cases: Vec<(&str, &str)> = vec![
        ("", "empty"),
        ("{", "invalid JSON"),
        ("{}", "session is required"),
        (r#"{"session": 5}"#, "'session'"),
        (r#"{"session": ""}"#, "session is required"),
        (r#"{"session": "has space"}"#, "invalid session name"),
        (r#"{"session": "a/b"}"#, "invalid session name"),
        (r#"{"session": "sessions"}"#, "reserved"),
        (r#"{"session": "health"}"#, "reserved"),
        (r#"{"session": "Metrics"}"#, "reserved"),
        (r#"{"session": "admin"}"#, "reserved"),
        (r#"{"session": "ok", "apiKey": "has space"}"#, "apiKey"),
        (
            r#"{"session": "ok", "apiKey": "short-key-15chr"}"#,
            "apiKey",
        ),
        (r#"{"session": "ok", "apiKey": 7}"#, "'apiKey'"),
        (r#"["session"]"#, "invalid request body"),
    ];
    let long = format!(r#"{{"session": "{}"}}"#, "x".repeat(65));
    for (body, needle) in cases
        .into_iter()
        .chain([(long.as_str(), "invalid session name")])
    {
        let req = app
            .post("/sessions")
            .header("content-type", "application/json")
            .body(body.to_string());
        let (code, e) = TestApp::call(req).await;
        assert_eq!(code, 400, "body {body}");
        let msg = e["error"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "body {body}: {msg:?} lacks {needle:?}"
        );
    }
    // Nothing was created by any of them.
    let list = app.get_list("/sessions").await;
    assert!(list.is_empty());
}

async fn client_chosen_api_key_works_and_is_unique(app: TestApp) {
    let key = "my-own-session-key-0001";
    let r = app
        .post("/sessions")
        .json(&json!({"session": "own", "apiKey": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.json::<Value>().await.unwrap()["apiKey"], key);
    let r = app
        .client
        .get(app.url("/own/status"))
        .header("Authorization", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app
        .post("/sessions")
        .json(&json!({"session": "other", "apiKey": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = app
        .post("/sessions")
        .json(&json!({"session": "third", "apiKey": crate::helpers::GLOBAL_KEY}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

async fn content_type_is_not_required(app: TestApp) {
    let r = app
        .post("/sessions")
        .body(r#"{"session":"no-ct"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

/// The shard epoch that served a request is the cluster's business: a session's own key does
/// not see it, the global key (an operator) does.
async fn the_served_epoch_is_not_for_clients(app: TestApp) {
    let created = app.create_session("epoch").await;
    let key = created["apiKey"].as_str().unwrap();
    let r = reqwest::Client::new()
        .get(app.url("/epoch/status"))
        .header("Authorization", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("x-onwapp-served-epoch").is_none(),
        "{:?}",
        r.headers()
    );
    let r = app.get("/epoch/status").send().await.unwrap();
    assert!(
        r.headers().get("x-onwapp-served-epoch").is_some(),
        "operators see it"
    );
}

crate::on_both_databases!(
    the_served_epoch_is_not_for_clients,
    session_lifecycle,
    duplicate_session_is_409,
    bad_create_bodies_are_400_naming_the_field,
    client_chosen_api_key_works_and_is_unique,
    content_type_is_not_required,
);
