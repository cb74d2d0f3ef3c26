use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    helpers::{CutProxy, Db, TestApp, eventually, spawn_with, test_redis_url},
    process::{ServerProcess, redis_available},
};

async fn hammer(
    app: &TestApp,
    path: &str,
    n: usize,
    xff: Option<&str>,
) -> (usize, Vec<reqwest::Response>) {
    let mut ok = 0;
    let mut denied = Vec::new();
    for _ in 0..n {
        let mut req = app.get(path);
        if let Some(x) = xff {
            req = req.header("X-Forwarded-For", x);
        }
        let r = req.send().await.unwrap();
        if r.status() == 429 {
            denied.push(r);
        } else {
            ok += 1;
        }
    }
    (ok, denied)
}

#[tokio::test]
async fn local_limit_answers_429_with_retry_after() {
    let Some(app) = spawn_with(Db::Sqlite, |c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 3;
    })
    .await
    else {
        return;
    };
    let (ok, denied) = hammer(&app, "/health", 6, None).await;
    assert_eq!(ok, 3);
    let r = denied.into_iter().next().unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"error": "rate limit exceeded", "message": "Too many requests. Please try again later."})
    );
    // Metrics stay reachable for the scraper.
    assert_eq!(
        app.client
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn forwarded_for_is_honoured_only_from_trusted_proxies() {
    let Some(app) = spawn_with(Db::Sqlite, |c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 2;
    })
    .await
    else {
        return;
    };
    // Untrusted peer: a spoofed header does not buy a new budget.
    let (ok1, _) = hammer(&app, "/health", 2, Some("1.1.1.1")).await;
    let (ok2, _) = hammer(&app, "/health", 2, Some("2.2.2.2")).await;
    assert_eq!(ok1 + ok2, 2);

    let Some(app) = spawn_with(Db::Sqlite, |c| {
        c.rate_limit_per_second = 1;
        c.rate_limit_burst = 2;
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    })
    .await
    else {
        return;
    };
    let (ok1, _) = hammer(&app, "/health", 3, Some("1.1.1.1")).await;
    let (ok2, _) = hammer(&app, "/health", 3, Some("2.2.2.2")).await;
    assert_eq!(
        (ok1, ok2),
        (2, 2),
        "each forwarded client has its own budget"
    );
}

#[tokio::test]
async fn two_processes_sharing_redis_enforce_one_combined_limit() {
    if !redis_available().await {
        return;
    }
    let prefix = format!("onwapp-test-{}", uuid::Uuid::new_v4().simple());
    let envs = [
        ("REDIS_URL", test_redis_url()),
        ("REDIS_KEY_PREFIX", prefix.clone()),
        ("RATE_LIMIT_PER_SECOND", "1".into()),
        ("RATE_LIMIT_BURST", "10".into()),
    ];
    let a = ServerProcess::start(&envs).await;
    let b = ServerProcess::start(&envs).await;
    let client = reqwest::Client::new();
    let mut ok = 0;
    for i in 0..30 {
        let p = if i % 2 == 0 { &a } else { &b };
        if client.get(p.url("/health")).send().await.unwrap().status() == 200 {
            ok += 1;
        }
    }
    // Burst 10 shared by both (plus at most a refill or two while the loop runs);
    // two independent limiters would have let 20 through.
    assert!((10..=12).contains(&ok), "{ok} requests passed");
    let text = client
        .get(a.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(r#"onwapp_ratelimit_decisions_total{backend="redis",decision="deny"}"#),
        "{text}"
    );
}

#[tokio::test]
async fn redis_outage_falls_back_to_local_limits_and_recovers() {
    if !redis_available().await {
        return;
    }
    let target = url::Url::parse(&test_redis_url())
        .unwrap()
        .socket_addrs(|| Some(6379))
        .unwrap()[0];
    let proxy = CutProxy::start(target).await;
    let prefix = format!("onwapp-test-{}", uuid::Uuid::new_v4().simple());
    let Some(app) = spawn_with(Db::Sqlite, |c| {
        c.redis_url = Some(format!("redis://{}", proxy.addr));
        c.redis_key_prefix = prefix;
    })
    .await
    else {
        return;
    };
    async fn fallback(app: &TestApp) -> Option<bool> {
        app.metrics()
            .await
            .lines()
            .find(|l| l.starts_with("onwapp_ratelimit_redis_fallback "))
            .map(|l| l.ends_with(" 1"))
    }
    assert_eq!(app.get("/health").send().await.unwrap().status(), 200);
    assert_eq!(fallback(&app).await, Some(false));

    proxy.cut();
    // Requests keep being served while Redis is away.
    for _ in 0..5 {
        assert_eq!(app.get("/health").send().await.unwrap().status(), 200);
    }
    assert!(
        eventually(Duration::from_secs(5), || async {
            fallback(&app).await == Some(true)
        })
        .await
    );

    proxy.restore();
    assert!(
        eventually(Duration::from_secs(15), || async {
            let _ = app.get("/health").send().await;
            fallback(&app).await == Some(false)
        })
        .await,
        "never returned to redis"
    );
    let text = app.metrics().await;
    assert!(
        text.contains("onwapp_ratelimit_redis_fallback_transitions_total 1"),
        "{text}"
    );
}
