//! TLS between nodes (issue 17): three binaries with `https://` member URLs, a CA and node
//! certificates made by the `openssl` CLI, client certificates required. The cluster forms
//! (Raft over TLS) and forwards (the client's key and the member proof over TLS); a `/cluster/*`
//! call over plain HTTP is refused even with the right secret, and a TLS client without a
//! certificate of the CA gets no answer.

use std::{path::Path, process::Command, sync::Arc, time::Duration};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    cluster::{Member, formed, get, services, start},
    helpers::GLOBAL_KEY,
    process::free_port,
};

const SECRET: &str = "cluster-test-secret-0123456789";

fn openssl(args: &[&str], dir: &Path) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `ca.pem`, and `node.pem`/`node.key` signed by it for 127.0.0.1 (server and client usage);
/// `false` without openssl.
fn make_certs(dir: &Path) -> bool {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    std::fs::write(
        dir.join("node.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n\
         basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    let ca: Vec<&str> = ["req", "-x509"]
        .into_iter()
        .chain(ec)
        .chain(["-days", "1", "-subj", "/CN=onwapp test CA"])
        .chain(["-addext", "basicConstraints=critical,CA:TRUE"])
        .chain(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        .chain(["-keyout", "ca.key", "-out", "ca.pem"])
        .collect();
    let csr: Vec<&str> = ["req"]
        .into_iter()
        .chain(ec)
        .chain([
            "-subj",
            "/CN=onwapp node",
            "-keyout",
            "node.key",
            "-out",
            "node.csr",
        ])
        .collect();
    openssl(&ca, dir)
        && openssl(&csr, dir)
        && openssl(
            &[
                "x509",
                "-req",
                "-in",
                "node.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                "node.pem",
                "-extfile",
                "node.ext",
            ],
            dir,
        )
}

/// A TLS client trusting `ca.pem`, presenting the node certificate or none.
fn client(dir: &Path, with_cert: bool) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let ring = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap())
        .unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(ring)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_cert {
        let chain = vec![CertificateDer::from_pem_file(dir.join("node.pem")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(dir.join("node.key")).unwrap();
        builder.with_client_auth_cert(chain, key).unwrap()
    } else {
        builder.with_no_client_auth()
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// One HTTP/1.1 request over TLS to `port`: the answer's first line, or why there is none.
async fn over_tls(
    connector: &tokio_rustls::TlsConnector,
    port: u16,
    request: &str,
) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut out)).await;
    match read {
        Err(_) => Err("no answer in 10 s".into()),
        Ok(Err(e)) if out.is_empty() => Err(format!("read: {e}")),
        _ => Ok(String::from_utf8_lossy(&out)
            .lines()
            .next()
            .unwrap_or_default()
            .to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_talk_over_tls_with_client_certificates() {
    let Some(pg) = services().await else {
        return;
    };
    let certs = tempfile::tempdir().unwrap();
    if !make_certs(certs.path()) {
        assert!(
            std::env::var("ONWAPP_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
            "openssl is required (ONWAPP_TEST_REQUIRE_SERVICES=1) to make the certificates"
        );
        eprintln!("cluster_tls: no openssl; nothing tested");
        return;
    }
    let file = |f: &str| certs.path().join(f).display().to_string();
    let ports = [free_port(), free_port(), free_port()];
    let peers = ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("{}=https://127.0.0.1:{p}", i + 1))
        .collect::<Vec<_>>()
        .join(",");
    let nodes: Vec<Member> = (0..3)
        .map(|i| {
            let extra = [
                (
                    "NODE_ADVERTISE_URL",
                    format!("https://127.0.0.1:{}", ports[i]),
                ),
                ("CLUSTER_TLS_CERT", file("node.pem")),
                ("CLUSTER_TLS_KEY", file("node.key")),
                ("CLUSTER_TLS_CA", file("ca.pem")),
                ("CLUSTER_TLS_CLIENT_AUTH", "true".to_string()),
            ];
            start(i as u64 + 1, ports[i], &peers, &pg.url, None, &extra)
        })
        .collect();

    // Raft only travels over TLS now: the cluster forming is the proof.
    let st = formed(&nodes[0], Duration::from_secs(90)).await;
    assert_eq!(
        st["nodes"][0]["apiAddr"]
            .as_str()
            .map(|u| u.starts_with("https://")),
        Some(true),
        "{st}"
    );

    // Forwarding over TLS: every node answers for the session, one owner serves it.
    let r = reqwest::Client::new()
        .post(format!("{}/sessions", nodes[0].base))
        .header("Authorization", GLOBAL_KEY)
        .json(&json!({"session": "tls"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let mut owners = Vec::new();
    for n in &nodes {
        let (code, by, body) = get(format!("{}/tls/status", n.base)).await.unwrap();
        assert_eq!(code, 200, "{body}");
        owners.push(by.expect("x-onwapp-served-by"));
    }
    owners.dedup();
    assert_eq!(owners.len(), 1, "one owner: {owners:?}");

    // A right member proof over plain HTTP is not a member's: a node that does not own the
    // session forwards it as a client's request (a member's would get 421 there).
    let owner = owners[0];
    let other = nodes.iter().find(|n| n.id != owner).unwrap();
    let r = reqwest::Client::new()
        .get(format!("{}/tls/status", other.base))
        .header("Authorization", GLOBAL_KEY)
        .header("x-onwapp-forwarded-by", owner.to_string())
        .header("x-onwapp-cluster-auth", format!("Bearer {SECRET}"))
        .header("x-shard-epoch", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "served as a client's request");
    assert_eq!(crate::cluster::served_by(&r), Some(owner));

    // The right secret over plain HTTP is not a member's call.
    let r = reqwest::Client::new()
        .post(format!("{}/cluster/raft/vote", nodes[1].base))
        .header("Authorization", format!("Bearer {SECRET}"))
        .body("{}")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("TLS"), "{text}");

    // Over TLS with the CA's certificate the node answers (a wrong secret: 401); without a
    // certificate the handshake does not complete into an answer.
    let req = "POST /cluster/raft/vote HTTP/1.1\r\nHost: 127.0.0.1\r\n\
               Authorization: Bearer wrong-secret-0123456789\r\n\
               Content-Length: 2\r\nConnection: close\r\n\r\n{}";
    let with = over_tls(&client(certs.path(), true), ports[2], req).await;
    assert_eq!(with.as_deref(), Ok("HTTP/1.1 401 Unauthorized"), "{with:?}");
    let without = over_tls(&client(certs.path(), false), ports[2], req).await;
    assert!(without.is_err(), "no client certificate, yet: {without:?}");
}

#[test]
fn https_member_urls_need_the_ca_and_the_same_scheme_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let run = |envs: &[(&str, String)]| {
        let mut cmd = crate::process::ServerProcess::command(envs, dir.path(), free_port());
        cmd.env("DATABASE_URL", "postgres://u@127.0.0.1:1/x");
        let out = cmd.output().expect("run onwapp");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let base = |peers: &str, me: &str| {
        vec![
            ("NODE_ID", "1".to_string()),
            ("CLUSTER_SECRET", SECRET.to_string()),
            ("CLUSTER_PEERS", peers.to_string()),
            ("NODE_ADVERTISE_URL", me.to_string()),
        ]
    };
    let (ok, err) = run(&base(
        "1=https://10.0.0.1:3000,2=https://10.0.0.2:3000",
        "https://10.0.0.1:3000",
    ));
    assert!(!ok && err.contains("CLUSTER_TLS_CA"), "{err}");
    let (ok, err) = run(&base(
        "1=https://10.0.0.1:3000,2=http://10.0.0.2:3000",
        "https://10.0.0.1:3000",
    ));
    assert!(!ok && err.contains("all https://"), "{err}");
}
