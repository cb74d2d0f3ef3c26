use serde_json::Value;

use crate::helpers::{Db, spawn};

#[tokio::test]
async fn openapi_covers_every_contract_route_and_swagger_ui_is_served() {
    let Some(app) = spawn(Db::Sqlite).await else {
        return;
    };
    let doc: Value = app
        .client
        .get(app.url("/swagger/doc.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for e in onwapp::http::catalog::ENDPOINTS {
        let p = onwapp::http::unimplemented::axum_path(e.path);
        let item = paths
            .get(&p)
            .unwrap_or_else(|| panic!("{p} missing from the document"));
        let op = &item[e.method.to_ascii_lowercase()];
        assert!(op.is_object(), "{} {p} missing", e.method);
        if let Some(body) = e.request_body {
            let r = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
                .as_str()
                .unwrap();
            assert!(r.ends_with(body));
            assert!(
                doc["components"]["schemas"][body].is_object(),
                "schema {body}"
            );
        }
        operations += 1;
    }
    assert!(operations >= 116);
    // What the wire does, the document says: the profile under `profile`, the QR's `code`,
    // file uploads as multipart forms, fields with the rules the handlers check.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(
        schemas["ProfileResponse"]["properties"]["profile"]["$ref"],
        "#/components/schemas/OwnProfile"
    );
    assert!(schemas["QrResponse"]["properties"]["code"].is_object());
    let form = &paths["/{session}/message/send/image"]["post"]["requestBody"]["content"]["multipart/form-data"]
        ["schema"];
    assert_eq!(form["properties"]["file"]["format"], "binary", "{form}");
    assert_eq!(
        form["required"],
        serde_json::json!(["file", "phone"]),
        "{form}"
    );
    let send = &schemas["SendTextRequest"];
    assert!(send["properties"]["phone"]["pattern"].is_string(), "{send}");
    assert_eq!(send["properties"]["text"]["minLength"], 1, "{send}");
    let group = &paths["/{session}/group/info"]["get"]["parameters"];
    assert!(
        group
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "groupId"
                && p["schema"]["pattern"]
                    .as_str()
                    .is_some_and(|r| r.contains("g\\.us"))),
        "{group}"
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for s in [
        "CreateSessionRequest",
        "SessionResponse",
        "SettingsResponse",
        "WebhookRequest",
        "SendTextRequest",
    ] {
        assert!(schemas.contains_key(s), "{s}");
    }
    let r = app
        .client
        .get(app.url("/swagger/index.html"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(r.text().await.unwrap().contains("swagger"));
    // The page's configuration turns swagger.io's online validator off: no outside call.
    let init = app
        .client
        .get(app.url("/swagger/swagger-initializer.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(init.status(), 200);
    let js = init.text().await.unwrap();
    assert!(
        js.contains(r#""validatorUrl": "none""#) || js.contains(r#""validatorUrl":"none""#),
        "{js}"
    );
    assert!(!js.contains("validator.swagger.io"), "{js}");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let Some(app) = spawn(Db::Sqlite).await else {
        return;
    };
    app.create_session("m1").await;
    for _ in 0..3 {
        app.get("/m1/status").send().await.unwrap();
    }
    app.get("/ghost/status").send().await.unwrap();
    let text = app.metrics().await;
    let line = text
        .lines()
        .find(|l| {
            l.starts_with("onwapp_http_requests_total")
                && l.contains(r#"route="/{session}/status""#)
                && l.contains(r#"status="200""#)
        })
        .unwrap_or_else(|| panic!("no status counter in\n{text}"));
    assert!(line.ends_with(" 3"), "{line}");
    assert!(
        text.contains(r#"route="/{session}/status",status="404""#)
            || text.contains(r#"status="404""#)
    );
    assert!(text.contains("onwapp_http_request_duration_seconds_bucket"));
    assert!(text.contains("onwapp_ratelimit_decisions_total"));
    // A single node is a cluster of one: it leads, holds its lease and owns every shard.
    for line in [
        "onwapp_cluster_is_leader 1",
        "onwapp_cluster_lease_valid 1",
        "onwapp_cluster_shards_owned 1024",
        "onwapp_cluster_shards_unassigned 0",
        r#"onwapp_cluster_node_shards{node="1"} 1024"#,
        r#"onwapp_cluster_shard_events_total{event="acquired"} 1024"#,
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
    }
}
