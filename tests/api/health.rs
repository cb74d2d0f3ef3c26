use std::time::Duration;

use crate::helpers::{CutProxy, PgDatabase, TestApp, base_config, eventually, start};

async fn health_is_open_and_reports_the_database(app: TestApp) {
    for path in ["/", "/health"] {
        let r = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let b: serde_json::Value = r.json().await.unwrap();
        assert_eq!(b["status"], "healthy");
        assert_eq!(b["database"], "connected");
        assert_eq!(b["version"], env!("CARGO_PKG_VERSION"));
        let t = b["time"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
    }
}

crate::on_both_databases!(health_is_open_and_reports_the_database);

#[tokio::test]
async fn health_is_503_while_postgres_is_unreachable_and_recovers() {
    let Some(pg) = PgDatabase::create().await else {
        return;
    };
    let target = tokio::net::lookup_host(
        url::Url::parse(&pg.url)
            .unwrap()
            .socket_addrs(|| Some(5432))
            .unwrap()[0],
    )
    .await
    .unwrap()
    .next()
    .unwrap();
    let proxy = CutProxy::start(target).await;
    let mut through_proxy = url::Url::parse(&pg.url).unwrap();
    through_proxy.set_host(Some("127.0.0.1")).unwrap();
    through_proxy.set_port(Some(proxy.addr.port())).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = base_config(dir.path());
    cfg.database_url = Some(through_proxy.to_string());
    let app = start(cfg, dir, Some(pg)).await;

    let status = |app: &TestApp| {
        let req = app.client.get(app.url("/health"));
        async move {
            let r = req.send().await.unwrap();
            let code = r.status().as_u16();
            let b: serde_json::Value = r.json().await.unwrap();
            (code, b["database"].as_str().unwrap_or_default().to_string())
        }
    };
    assert_eq!(status(&app).await, (200, "connected".into()));

    proxy.cut();
    let down = eventually(Duration::from_secs(10), || async {
        status(&app).await == (503, "disconnected".to_string())
    })
    .await;
    assert!(down, "health never reported the database as disconnected");
    // Other requests fail cleanly too, with the JSON error shape.
    let r = app.get("/sessions").send().await.unwrap();
    assert_eq!(r.status(), 503);
    let b: serde_json::Value = r.json().await.unwrap();
    assert!(b["error"].as_str().unwrap().contains("database"));

    proxy.restore();
    let up = eventually(Duration::from_secs(15), || async {
        status(&app).await == (200, "connected".to_string())
    })
    .await;
    assert!(up, "health did not recover after the database came back");
    assert_eq!(app.get("/sessions").send().await.unwrap().status(), 200);
}
