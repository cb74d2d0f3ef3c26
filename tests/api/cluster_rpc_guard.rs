//! The node-to-node endpoints against a stranger (issue 17): the cluster secret is checked
//! from the headers before a byte of the body is read, so a large unauthenticated upload is
//! refused at once instead of being held in memory; an address that keeps sending wrong
//! secrets is refused (429) without its guesses being checked; a member's body has a limit of
//! its own.

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::helpers::{Db, TestApp, spawn_with};

const SECRET: &str = "rpc-guard-secret-0123456789";

/// One node on SQLite with [`SECRET`] as its cluster secret.
async fn node() -> Option<TestApp> {
    spawn_with(Db::Sqlite, |c| c.cluster.secret = Some(SECRET.into())).await
}

/// `POST /cluster/raft/vote` with `secret`.
async fn vote(http: &reqwest::Client, base: &str, secret: &str) -> reqwest::Response {
    http.post(format!("{base}/cluster/raft/vote"))
        .header("Authorization", format!("Bearer {secret}"))
        .body("{}")
        .send()
        .await
        .unwrap()
}

/// Sends the head of a POST declaring `length` bytes and only `sent` of them, then reads what
/// the server answers within `wait` (empty if nothing).
async fn head_only(
    base: &str,
    path: &str,
    auth: &str,
    length: usize,
    sent: usize,
    wait: Duration,
) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {auth}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![b' '; sent]).await.unwrap();
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(wait, s.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        _ => String::new(),
    }
}

#[tokio::test]
async fn a_strangers_upload_is_refused_before_its_body_is_read() {
    let Some(app) = node().await else {
        return;
    };
    // 100 MB declared, little sent (a wrong secret, or none): the answer comes without the rest.
    for (path, auth, sent) in [
        (
            "/cluster/raft/append",
            "Bearer wrong-secret-0123456789",
            1024,
        ),
        ("/cluster/write", "", 10),
    ] {
        let answer = head_only(
            &app.base,
            path,
            auth,
            100 * 1024 * 1024,
            sent,
            Duration::from_secs(5),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{path}: {answer:?}");
    }
}

#[tokio::test]
async fn wrong_secrets_from_one_address_are_refused_after_twenty() {
    let Some(app) = node().await else {
        return;
    };
    let http = reqwest::Client::new();
    let mut codes = Vec::new();
    for i in 0..25 {
        let r = vote(&http, &app.base, &format!("guess-{i:020}")).await;
        codes.push(r.status().as_u16());
        if r.status() == 429 {
            let after: u64 = r.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=10).contains(&after), "Retry-After {after}");
        }
    }
    assert!(codes[..20].iter().all(|c| *c == 401), "{codes:?}");
    assert!(codes[20..].iter().all(|c| *c == 429), "{codes:?}");
    // Even the right secret waits out the window from that address: a guesser cannot tell.
    assert_eq!(vote(&http, &app.base, SECRET).await.status(), 429);
}

/// A wrong member proof on an API route counts as a wrong secret too: the secret cannot be
/// guessed through the session routes instead.
#[tokio::test]
async fn wrong_member_proofs_on_api_routes_are_refused_after_twenty() {
    let Some(app) = node().await else {
        return;
    };
    app.create_session("guessed").await;
    let mut codes = Vec::new();
    for i in 0..25 {
        let r = app
            .get("/guessed/status")
            .header("x-onwapp-forwarded-by", "2")
            .header("x-onwapp-cluster-auth", format!("Bearer guess-{i:020}"))
            .send()
            .await
            .unwrap();
        codes.push(r.status().as_u16());
    }
    assert!(codes[..20].iter().all(|c| *c == 200), "{codes:?}");
    assert!(codes[20..].iter().all(|c| *c == 429), "{codes:?}");
    // Without member headers the same client is served as before.
    assert_eq!(
        app.get("/guessed/status").send().await.unwrap().status(),
        200
    );
}

/// With the right secret an unknown node-to-node path is a 404 naming it.
#[tokio::test]
async fn an_unknown_cluster_path_is_404() {
    let Some(app) = node().await else {
        return;
    };
    let r = reqwest::Client::new()
        .post(format!("{}/cluster/raft/nope", app.base))
        .header("Authorization", format!("Bearer {SECRET}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("/cluster/raft/nope"));
}

#[tokio::test]
async fn a_members_body_has_a_limit_of_its_own() {
    let Some(app) = node().await else {
        return;
    };
    let too_big = onwapp::http::cluster::MAX_RPC_BODY + 1;
    let r = reqwest::Client::new()
        .post(format!("{}/cluster/raft/append", app.base))
        .header("Authorization", format!("Bearer {SECRET}"))
        .body(vec![b' '; too_big])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // The right secret and a sane body reach Raft (which answers its own way, not 401/413).
    let r = reqwest::Client::new()
        .post(format!("{}/cluster/raft/vote", app.base))
        .header("Authorization", format!("Bearer {SECRET}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert!(
        ![401, 413, 429].contains(&r.status().as_u16()),
        "{}",
        r.status()
    );
}
