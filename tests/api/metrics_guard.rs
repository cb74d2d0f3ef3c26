//! `/metrics` can be kept from strangers (issue 17): behind a token (`METRICS_TOKEN`), or on a
//! listener of its own (`METRICS_ADDR`) that a NetworkPolicy or a private interface can close.

use crate::process::{free_port, spawn_on};

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn a_metrics_token_is_required_when_set() {
    let dir = tempfile::tempdir().unwrap();
    let token = "scrape-token-0123456789";
    let (mut child, base) = spawn_on(dir.path(), &[("METRICS_TOKEN", token.to_string())]).await;
    let url = format!("{base}/metrics");
    let none = get(&url, None).await;
    let wrong = get(&url, Some("scrape-token-0123456780")).await;
    let right = get(&url, Some(token)).await;
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(none.0, 401, "{}", none.1);
    assert!(none.1.contains("metrics token"), "{}", none.1);
    assert_eq!(wrong.0, 401);
    assert_eq!(right.0, 200);
    assert!(right.1.contains("onwapp_"), "{}", right.1);
}

#[tokio::test]
async fn metrics_on_their_own_address_leave_the_api_port() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let token = "scrape-token-0123456789";
    let (mut child, base) = spawn_on(
        dir.path(),
        &[
            ("METRICS_ADDR", format!("127.0.0.1:{port}")),
            ("METRICS_TOKEN", token.to_string()),
        ],
    )
    .await;
    let on_api = get(&format!("{base}/metrics"), Some(token)).await;
    let stranger = get(&format!("http://127.0.0.1:{port}/metrics"), None).await;
    let own = get(&format!("http://127.0.0.1:{port}/metrics"), Some(token)).await;
    let other = get(&format!("http://127.0.0.1:{port}/sessions"), None).await;
    let _ = child.kill();
    let _ = child.wait();
    // `/{session}` answers (405: only DELETE there), not the metrics.
    assert!(
        on_api.0 >= 400 && !on_api.1.contains("onwapp_"),
        "the API port no longer serves /metrics: {on_api:?}"
    );
    assert_eq!(stranger.0, 401, "the token holds on its own listener too");
    assert_eq!(own.0, 200);
    assert!(own.1.contains("onwapp_"), "{}", own.1);
    assert_eq!(other.0, 404, "the metrics port serves nothing else");
}
