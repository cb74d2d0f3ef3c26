//! Media in an S3-protocol object store (issue 18), against a real `s3s-fs` server process that
//! checks every request's SigV4 signature (installed by `.ci/run`): a simulated user sends an
//! image, its bytes are in the bucket under OnWapp's key layout, `storageUrl` serves them
//! without our API key, deleting the session deletes its objects; and in a 3-node cluster, after
//! the owner is killed, the new owner serves the same file, from the bucket or, without one,
//! from the shared database.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use onwapp::media::{BlobStore, S3Blobs, S3Settings};
use sha2::{Digest, Sha256};

use crate::cluster::{Member, get, paired_session, services, three_nodes_with, wait_for};
use crate::helpers::{Db, GLOBAL_KEY, TestApp, spawn_with};
use crate::process::free_port;
use crate::wa::{pair, poll, user};

const ACCESS_KEY: &str = "onwapp-test";
const SECRET_KEY: &str = "onwapp-test-secret-0123456789";
const BUCKET: &str = "onwapp-media";

/// An `s3s-fs` process on a free loopback port, over a directory of its own.
pub struct S3Server {
    child: Child,
    pub port: u16,
    _root: tempfile::TempDir,
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `s3s-fs` on the PATH or in cargo's bin directory.
fn s3s_binary() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    if let Some(home) = std::env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter()
        .map(|d| d.join("s3s-fs"))
        .find(|p| p.is_file())
}

impl S3Server {
    /// `None` (the test skips) without `s3s-fs`, unless `ONWAPP_TEST_REQUIRE_SERVICES` is set.
    pub async fn start() -> Option<S3Server> {
        let Some(bin) = s3s_binary() else {
            return crate::helpers::unavailable(
                "s3s-fs (cargo install s3s-fs --features binary)",
                "not installed",
            );
        };
        let root = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
            .arg(root.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn s3s-fs");
        let server = S3Server {
            child,
            port,
            _root: root,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "s3s-fs did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(server)
    }

    pub fn settings(&self) -> S3Settings {
        let mut s = S3Settings::with_endpoint(format!("127.0.0.1:{}", self.port));
        s.access_key = ACCESS_KEY.into();
        s.secret_key = SECRET_KEY.into();
        s.bucket = BUCKET.into();
        s
    }

    /// The `MINIO_*` variables of a server process.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MINIO_ENDPOINT", format!("127.0.0.1:{}", self.port)),
            ("MINIO_ACCESS_KEY", ACCESS_KEY.into()),
            ("MINIO_SECRET_KEY", SECRET_KEY.into()),
            ("MINIO_BUCKET", BUCKET.into()),
        ]
    }

    /// A client of the bucket with the right keys: what is really stored.
    pub fn client(&self) -> S3Blobs {
        S3Blobs::new(&self.settings()).unwrap()
    }
}

fn jpeg(len: usize, seed: u8) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.extend((0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    b
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A simulated user `from` sends `to` an image through wamock; its message id.
async fn send_image(wa: &wamock::Server, from: &str, to: &str, photo: &[u8]) -> String {
    crate::wa::user_sends_image(wa, from, to, photo, "to the bucket").await
}

/// `GET url` without any API key: status, content type, bytes.
async fn fetch_without_key(url: &str) -> (u16, String, Vec<u8>) {
    let r = reqwest::get(url).await.expect("storageUrl answers");
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, ct, r.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn received_media_goes_to_the_bucket_and_its_url_needs_no_key() {
    let Some(s3) = S3Server::start().await else {
        return;
    };
    let wa = wamock::Server::start("127.0.0.1:0").await.expect("wamock");
    let (url, settings) = (wa.ws_url(), s3.settings());
    let Some(app) = spawn_with(Db::Sqlite, move |c| {
        c.whatsapp_server_url = Some(url);
        c.s3 = Some(settings);
    })
    .await
    else {
        return;
    };
    app.create_session("s3").await;
    pair(&app, &wa, "s3", "5511999990404").await;
    let from = "5511988880404";
    user(&wa, from).await;
    let photo = jpeg(40_000, 3);
    let id = send_image(&wa, from, "5511999990404", &photo).await;

    let list = poll(&app, "/s3/media/list", Duration::from_secs(30), |b| {
        b["media"][0]["downloaded"] == true
    })
    .await;
    let m = &list["media"][0];
    // OnWapp's key layout: <session id>/received/<YYYY>/<MM>/<DD>/<message id>_image.jpg.
    let key = m["storageKey"].as_str().expect("storageKey").to_string();
    let parts: Vec<&str> = key.split('/').collect();
    assert_eq!(parts.len(), 6, "{key}");
    assert_eq!(parts[0], m["sessionId"].as_str().unwrap(), "{key}");
    assert_eq!(parts[1], "received");
    assert!(
        parts[2].len() == 4 && parts[3].len() == 2 && parts[4].len() == 2,
        "{key}"
    );
    assert_eq!(parts[5], format!("{id}_image.jpg"));

    // The bytes are in the bucket, read back with the right keys.
    let stored = s3
        .client()
        .get(&key)
        .await
        .expect("GetObject")
        .expect("the object");
    assert_eq!(sha(&stored), sha(&photo));
    // The server checks signatures: the wrong secret reads nothing.
    let mut wrong = s3.settings();
    wrong.secret_key = "not-the-secret-key-0000000".into();
    assert!(
        S3Blobs::new(&wrong).unwrap().get(&key).await.is_err(),
        "a wrong signature is refused"
    );

    // storageUrl opens without our API key (presigned), with the file's type.
    let storage_url = m["storageUrl"].as_str().expect("storageUrl").to_string();
    assert!(
        storage_url.starts_with(&format!("http://127.0.0.1:{}/{BUCKET}/{key}?", s3.port)),
        "{storage_url}"
    );
    let (status, ct, bytes) = fetch_without_key(&storage_url).await;
    assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
    assert_eq!(sha(&bytes), sha(&photo));
    // A URL whose signature was altered is refused: the bucket is not public.
    let forged = match storage_url.rfind("X-Amz-Signature=") {
        Some(i) => format!("{}X-Amz-Signature={}", &storage_url[..i], "0".repeat(64)),
        None => panic!("not presigned: {storage_url}"),
    };
    assert_eq!(fetch_without_key(&forged).await.0, 403);
    let unsigned = format!("http://127.0.0.1:{}/{BUCKET}/{key}", s3.port);
    assert_eq!(fetch_without_key(&unsigned).await.0, 403);
    // The API still serves the file itself, from the bucket.
    let r = app
        .get(&format!("/s3/media/download?messageId={id}&format=file"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(sha(&r.bytes().await.unwrap()), sha(&photo));

    // Deleting the session deletes its objects.
    let (code, b) = TestApp::call(app.delete("/s3")).await;
    assert_eq!(code, 200, "{b}");
    assert!(
        s3.client().get(&key).await.expect("GetObject").is_none(),
        "the object is gone"
    );
    assert_eq!(fetch_without_key(&storage_url).await.0, 404);
    app.stop().await;
}

/// A process refuses to start when the object store it is given cannot be used: the bucket
/// check is retried, then the start fails naming `MINIO_ENDPOINT`.
#[tokio::test]
async fn an_unusable_object_store_stops_the_start_with_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::helpers::base_config(dir.path());
    let mut s = S3Settings::with_endpoint(format!("127.0.0.1:{}", free_port()));
    s.bucket = "nowhere".into();
    config.s3 = Some(s);
    let started = tokio::time::Instant::now();
    let err = match onwapp::app::App::build(config).await {
        Ok(_) => panic!("started without its object store"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("MINIO_ENDPOINT"), "{err}");
    // 5 tries, 2 + 4 + 6 + 8 s apart.
    assert!(
        started.elapsed() >= Duration::from_secs(19),
        "{:?}",
        started.elapsed()
    );
}

/// The owner of a session receives an image, then is killed: the node that takes the session
/// over serves the same bytes, at `format=file` and at `storageUrl`.
async fn media_outlives_its_owner(s3: Option<&S3Server>) {
    let Some(pg) = services().await else {
        return;
    };
    let wa = wamock::Server::start("127.0.0.1:0").await.expect("wamock");
    let extra = s3.map(S3Server::env).unwrap_or_default();
    let mut nodes = three_nodes_with(&pg.url, Some(&wa.ws_url()), &extra);
    crate::cluster::formed(&nodes[0], Duration::from_secs(60)).await;
    let me = "5511999990505";
    let owner = paired_session(&nodes, &wa, "pix", me).await;
    let from = "5511988880505";
    user(&wa, from).await;
    let photo = jpeg(60_000, 7);
    let id = send_image(&wa, from, me, &photo).await;
    let list = wait_for(
        &format!("{}/pix/media/list", nodes[0].base),
        Duration::from_secs(30),
        |b| b["media"][0]["downloaded"] == true,
    )
    .await;
    let key = list["media"][0]["storageKey"].as_str().unwrap().to_string();
    if let Some(s3) = s3 {
        let stored = s3.client().get(&key).await.unwrap().expect("in the bucket");
        assert_eq!(sha(&stored), sha(&photo));
    }

    // Kill the owner; a survivor takes the session over and serves the file.
    let i = nodes.iter().position(|n| n.id == owner).unwrap();
    let killed: Member = nodes.remove(i);
    drop(killed);
    let file = format!(
        "{}/pix/media/download?messageId={id}&format=file",
        nodes[0].base
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (by, bytes) = loop {
        let r = reqwest::Client::new()
            .get(&file)
            .header("Authorization", GLOBAL_KEY)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(r) = r
            && r.status() == 200
        {
            let by = crate::cluster::served_by(&r);
            break (by, r.bytes().await.unwrap().to_vec());
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no node served the file after the kill"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_ne!(by, Some(owner), "served by the killed node?");
    assert_eq!(
        sha(&bytes),
        sha(&photo),
        "the same bytes from the new owner"
    );
    let (code, _, record) = get(format!(
        "{}/pix/media/download?messageId={id}",
        nodes[1].base
    ))
    .await
    .unwrap();
    assert_eq!(code, 200, "{record}");
    let storage_url = record["storageUrl"].as_str().unwrap().to_string();
    if s3.is_some() {
        let (status, _, bytes) = fetch_without_key(&storage_url).await;
        assert_eq!(status, 200, "{storage_url}");
        assert_eq!(sha(&bytes), sha(&photo));
    } else {
        // In the database: served through the API, by whichever node is asked.
        assert!(
            storage_url.starts_with("/pix/media/download?"),
            "{storage_url}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_in_the_bucket_outlives_its_owner_in_a_cluster() {
    let Some(s3) = S3Server::start().await else {
        return;
    };
    media_outlives_its_owner(Some(&s3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_in_the_shared_database_outlives_its_owner_without_a_bucket() {
    media_outlives_its_owner(None).await;
}
