use serde_json::{Value, json};

use crate::helpers::{Db, GLOBAL_KEY, TestApp, spawn_with};

async fn unknown_routes_are_404_and_wrong_methods_405(app: TestApp) {
    app.create_session("e1").await;
    for path in [
        "/nope/really/not/here",
        "/e1/profile/unknown",
        "/sessions/x/y/z",
    ] {
        let r = app.get(path).send().await.unwrap();
        assert_eq!(r.status(), 404, "{path}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "route not found"})
        );
    }
    for (m, path) in [
        (reqwest::Method::PUT, "/sessions"),
        (reqwest::Method::DELETE, "/health"),
        (reqwest::Method::POST, "/e1/status"),
        (reqwest::Method::GET, "/e1/logout"),
    ] {
        let r = app
            .client
            .request(m.clone(), app.url(path))
            .header("Authorization", GLOBAL_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 405, "{m} {path}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "method not allowed"})
        );
    }
}

async fn unbuilt_routes_answer_501_after_auth_and_session_lookup(app: TestApp) {
    app.create_session("e2").await;
    let probes = [
        (reqwest::Method::GET, "/sessions/{s}/chatwoot/find"),
        (reqwest::Method::POST, "/sessions/{s}/chatwoot/set"),
        (reqwest::Method::DELETE, "/sessions/{s}/chatwoot"),
    ];
    for (m, p) in probes {
        let known = p.replace("{s}", "e2");
        let unknown = p.replace("{s}", "ghost");
        let r = app
            .client
            .request(m.clone(), app.url(&known))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{m} {known} without key");
        let r = app
            .client
            .request(m.clone(), app.url(&unknown))
            .header("Authorization", GLOBAL_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{m} {unknown}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "session ghost not found"})
        );
        let r = app
            .client
            .request(m.clone(), app.url(&known))
            .header("Authorization", GLOBAL_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 501, "{m} {known}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "not implemented"})
        );
    }
    // The Chatwoot inbound webhook is open: a stranger cannot tell an existing session from
    // one that does not exist (the same answer for both).
    let mut seen = Vec::new();
    for name in ["ghost", "e2"] {
        let r = app
            .client
            .post(app.url(&format!("/chatwoot/webhook/{name}")))
            .send()
            .await
            .unwrap();
        seen.push((r.status().as_u16(), r.json::<Value>().await.unwrap()));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], (501, json!({"error": "not implemented"})));
}

async fn every_response_has_a_request_id_and_security_headers(app: TestApp) {
    for path in ["/health", "/sessions", "/nope/x/y/z"] {
        let r = app.get(path).send().await.unwrap();
        let h = r.headers();
        assert!(
            h.get("x-request-id").is_some_and(|v| !v.is_empty()),
            "{path}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
    }
    let r = app
        .get("/health")
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");

    // W3C trace context: a caller's trace is continued (a new span of it), a bad one replaced.
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = app
        .get("/health")
        .header("traceparent", parent)
        .send()
        .await
        .unwrap();
    let tr = r.headers()["traceresponse"].to_str().unwrap().to_string();
    let f: Vec<&str> = tr.split('-').collect();
    assert_eq!(f.len(), 4, "{tr}");
    assert_eq!(
        (f[0], f[1], f[3]),
        ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "01"),
        "{tr}"
    );
    assert!(f[2].len() == 16 && f[2] != "00f067aa0ba902b7", "{tr}");
    let r = app
        .get("/health")
        .header(
            "traceparent",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        )
        .send()
        .await
        .unwrap();
    let tr = r.headers()["traceresponse"].to_str().unwrap().to_string();
    assert_eq!(tr.len(), 55, "{tr}");
    assert!(!tr.contains("-00000000000000000000000000000000-"), "{tr}");
}

async fn cors_preflight_is_answered(app: TestApp) {
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, app.url("/sessions"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header(
            "Access-Control-Request-Headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

crate::on_both_databases!(
    unknown_routes_are_404_and_wrong_methods_405,
    unbuilt_routes_answer_501_after_auth_and_session_lookup,
    every_response_has_a_request_id_and_security_headers,
    cors_preflight_is_answered,
);

#[tokio::test]
async fn bodies_over_the_limit_are_413() {
    let Some(app) = spawn_with(Db::Sqlite, |c| c.max_body_bytes = 1024).await else {
        return;
    };
    app.create_session("big").await;
    let big = json!({"url": format!("https://example.com/{}", "a".repeat(4096))});
    let r = app.post("/big/webhook").json(&big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let e: Value = r.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("too large"));
    // Chunked (no Content-Length) is cut while reading.
    let stream =
        futures_util::stream::iter((0..8).map(|_| Ok::<_, std::io::Error>(vec![b' '; 512])));
    let r = app
        .post("/big/webhook")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Nothing was stored.
    let got: Value = app.get_json("/big/webhook").await;
    assert_eq!(got["enabled"], false);
}

#[tokio::test]
async fn allowed_origins_are_enforced() {
    let Some(app) = spawn_with(Db::Sqlite, |c| {
        c.allowed_origins =
            onwapp::config::AllowedOrigins::List(vec!["https://good.example".into()])
    })
    .await
    else {
        return;
    };
    let r = app
        .get("/health")
        .header("Origin", "https://good.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://good.example"
    );
    let r = app
        .get("/health")
        .header("Origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn graceful_shutdown_stops_the_server() {
    let Some(app) = crate::helpers::spawn(Db::Sqlite).await else {
        return;
    };
    let url = app.url("/health");
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 200);
    let client = app.client.clone();
    tokio::time::timeout(std::time::Duration::from_secs(15), app.stop())
        .await
        .expect("stopped in time");
    assert!(
        client.get(&url).send().await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let Some(mut app) = crate::helpers::spawn(Db::Sqlite).await else {
        return;
    };
    app.create_session("inflight").await;
    // A request whose body is still arriving when the shutdown begins.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_from(rx));
    let req = app.post("/inflight/webhook").body(body).send();
    let pending = tokio::spawn(req);
    tx.send(Ok(br#"{"url": "https://example.com/"#.to_vec()))
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app.begin_shutdown();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    tx.send(Ok(br#"late", "enabled": true}"#.to_vec()))
        .await
        .unwrap();
    drop(tx);
    let r = pending.await.unwrap().unwrap();
    assert_eq!(r.status(), 200, "the in-flight request completed");
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["url"], "https://example.com/late");
}

fn tokio_stream_from(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
