use serde_json::{Value, json};

use crate::helpers::TestApp;

async fn webhook_crud(app: TestApp) {
    let s = app.create_session("hook").await;
    let r = app.get("/hook/webhook").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"sessionId": s["id"], "enabled": false})
    );

    let r = app
        .put("/hook/webhook")
        .json(&json!({"url": "https://example.com/h"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "webhook not found for this session"})
    );

    let r = app
        .post("/hook/webhook")
        .json(&json!({"url": "https://example.com/h", "events": ["message.received", "session.connected"], "secret": "s3cret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b: Value = r.json().await.unwrap();
    assert_eq!(b["sessionId"], s["id"]);
    assert_eq!(b["url"], "https://example.com/h");
    assert_eq!(
        b["events"],
        json!(["message.received", "session.connected"])
    );
    assert_eq!(b["enabled"], true, "enabled defaults to true");
    assert!(b.get("secret").is_none(), "the secret is never returned");
    let id = b["id"].clone();

    let got: Value = app.get_json("/hook/webhook").await;
    assert_eq!(got, b);

    // POST again upserts the same row.
    let b2: Value = app
        .post("/hook/webhook")
        .json(&json!({"url": "http://example.org/x", "enabled": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b2["id"], id);
    assert_eq!(b2["enabled"], false);
    assert_eq!(b2["events"], json!([]));

    let r = app
        .put("/hook/webhook")
        .json(&json!({"url": "https://example.net/y", "events": ["*"], "enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let b3: Value = r.json().await.unwrap();
    assert_eq!(
        (b3["url"].clone(), b3["events"].clone()),
        (json!("https://example.net/y"), json!(["*"]))
    );

    // `{"url": "", "enabled": false}` turns it off, as in OnWapp 0.2.8 (the empty URL omitted).
    let r = app
        .post("/hook/webhook")
        .json(&json!({"url": "", "enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let off: Value = r.json().await.unwrap();
    assert_eq!(
        (off["id"].clone(), off["enabled"].clone()),
        (id.clone(), json!(false))
    );
    assert!(off.get("url").is_none(), "{off}");
    assert_eq!(app.get_json("/hook/webhook").await, off);

    let r = app.delete("/hook/webhook").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"message": "webhook deleted"})
    );
    let r = app.delete("/hook/webhook").send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(app.get_json("/hook/webhook").await["enabled"], false);
}

async fn webhook_input_is_validated(app: TestApp) {
    app.create_session("wv").await;
    for (body, needle) in [
        (json!({}), "url"),
        (json!({"url": ""}), "url"),
        (json!({"url": "ftp://example.com"}), "http"),
        (json!({"url": "not a url"}), "http"),
        (json!({"url": "javascript:alert(1)"}), "http"),
        (json!({"url": 5}), "'url'"),
        (
            json!({"url": "https://e.com", "events": ["nope.event"]}),
            "events",
        ),
        (
            json!({"url": "https://e.com", "events": "message.received"}),
            "'events'",
        ),
        (
            json!({"url": "https://e.com", "enabled": "yes"}),
            "'enabled'",
        ),
        (
            json!({"url": format!("https://e.com/{}", "a".repeat(2048))}),
            "2048",
        ),
        (
            json!({"url": "https://e.com", "secret": "s".repeat(513)}),
            "'secret'",
        ),
        (
            json!({"url": "https://e.com", "events": vec!["message.received"; 257]}),
            "at most 256 items",
        ),
    ] {
        for m in [reqwest::Method::POST, reqwest::Method::PUT] {
            let req = app
                .client
                .request(m.clone(), app.url("/wv/webhook"))
                .header("Authorization", crate::helpers::GLOBAL_KEY)
                .json(&body);
            let (code, e) = TestApp::call(req).await;
            assert_eq!(code, 400, "{m} {body}");
            assert!(e["error"].as_str().unwrap().contains(needle), "{body}: {e}");
        }
    }
    assert_eq!(app.get_json("/wv/webhook").await["enabled"], false);
    assert_eq!(
        app.get("/unknown/webhook").send().await.unwrap().status(),
        404
    );
}

crate::on_both_databases!(webhook_crud, webhook_input_is_validated);
