use serde_json::{Value, json};

use crate::helpers::{GLOBAL_KEY, TestApp};

async fn missing_and_wrong_keys_are_401(app: TestApp) {
    app.create_session("s1").await;
    for path in [
        "/sessions",
        "/events",
        "/s1/status",
        "/s1/settings",
        "/s1/webhook",
        "/s1/profile",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "missing Authorization header"})
        );
        let r = app
            .client
            .get(app.url(path))
            .header("Authorization", "wrong-key")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "invalid authorization token"})
        );
    }
    // A global key with a prefix or suffix is not the global key.
    let r = app
        .client
        .get(app.url("/sessions"))
        .header("Authorization", format!("{GLOBAL_KEY}x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn session_keys_reach_only_their_session(app: TestApp) {
    let a = app.create_session("alpha").await;
    app.create_session("beta").await;
    let key = a["apiKey"].as_str().unwrap();
    let with_key = |m: reqwest::Method, p: &str| {
        app.client
            .request(m, app.url(p))
            .header("Authorization", key)
    };
    assert_eq!(
        with_key(reqwest::Method::GET, "/alpha/status")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        with_key(reqwest::Method::GET, "/alpha/settings")
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    for (m, p) in [
        (reqwest::Method::GET, "/beta/status"),
        (reqwest::Method::GET, "/beta/settings"),
        (reqwest::Method::GET, "/beta/webhook"),
        (reqwest::Method::DELETE, "/beta"),
        (reqwest::Method::POST, "/beta/connect"),
        // An unknown session is also out of reach: 403, not 404, so keys cannot probe names.
        (reqwest::Method::GET, "/gamma/status"),
    ] {
        let r = with_key(m.clone(), p).send().await.unwrap();
        assert_eq!(r.status(), 403, "{m} {p}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "access denied to this session"})
        );
    }
    // Listing shows only its own session; creating sessions needs the global key.
    let list: Vec<Value> = with_key(reqwest::Method::GET, "/sessions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["session"], "alpha");
    let r = with_key(reqwest::Method::POST, "/sessions")
        .json(&json!({"session": "delta"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The beta session is intact.
    assert_eq!(app.get("/beta/status").send().await.unwrap().status(), 200);
    // Bearer is tolerated.
    let r = app
        .client
        .get(app.url("/alpha/status"))
        .header("Authorization", format!("Bearer {key}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The operator's routes are the global key's.
    for (m, p) in [
        (reqwest::Method::GET, "/admin/cluster"),
        (reqwest::Method::POST, "/admin/drain"),
        (reqwest::Method::POST, "/admin/undrain"),
    ] {
        let r = with_key(m.clone(), p).send().await.unwrap();
        assert_eq!(r.status(), 403, "{m} {p}");
    }
    // After deletion the key no longer works.
    assert_eq!(app.delete("/alpha").send().await.unwrap().status(), 200);
    let r = with_key(reqwest::Method::GET, "/alpha/status")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

async fn open_routes_need_no_key(app: TestApp) {
    for path in [
        "/",
        "/health",
        "/swagger/index.html",
        "/swagger/doc.json",
        "/metrics",
    ] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

/// A refused key is answered from memory for a moment (no database lookup per retry), and a
/// session created with it makes it valid at once.
async fn a_refused_key_works_as_soon_as_its_session_exists(app: TestApp) {
    let key = "a-key-tried-before-its-session-0001";
    let call = || async {
        app.client
            .get(app.url("/later/status"))
            .header("Authorization", key)
            .send()
            .await
            .unwrap()
            .status()
    };
    for _ in 0..3 {
        assert_eq!(call().await, 401);
    }
    let r = app
        .post("/sessions")
        .json(&json!({"session": "later", "apiKey": key}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(call().await, 200);
}

crate::on_both_databases!(
    missing_and_wrong_keys_are_401,
    a_refused_key_works_as_soon_as_its_session_exists,
    session_keys_reach_only_their_session,
    open_routes_need_no_key,
);
