//! The real binary, started as a process.

use std::{
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::helpers::{GLOBAL_KEY, eventually, test_redis_url};

/// POSTs `body` as JSON with the global key; the status and the JSON answer (`null` if none).
pub async fn post_json(url: String, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("Authorization", GLOBAL_KEY)
        .timeout(Duration::from_secs(20))
        .json(&body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().await.unwrap_or(Value::Null))
}

pub struct ServerProcess {
    pub port: u16,
    pub child: Child,
    _dir: tempfile::TempDir,
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl ServerProcess {
    pub fn command(envs: &[(&str, String)], dir: &std::path::Path, port: u16) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_onwapp"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("PORT", port.to_string())
            .env("DATA_DIR", dir)
            .env("GLOBAL_API_KEY", GLOBAL_KEY)
            .env("LOG_LEVEL", "warn")
            // Test receivers listen on loopback.
            .env("WEBHOOK_ALLOW_PRIVATE_URLS", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd
    }

    pub async fn start(envs: &[(&str, String)]) -> ServerProcess {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let child = Self::command(envs, dir.path(), port)
            .spawn()
            .expect("spawn onwapp");
        let p = ServerProcess {
            port,
            child,
            _dir: dir,
        };
        let client = reqwest::Client::new();
        // /metrics is not rate-limited, so waiting for start-up spends no client budget.
        let url = p.url("/metrics");
        let up = eventually(Duration::from_secs(20), || {
            let req = client.get(&url);
            async move { req.send().await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        assert!(up, "onwapp did not come up on port {port}");
        p
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binary on `dir` (kept by the caller, so a restart finds its data), stderr discarded,
/// up and answering `/health`: the child and its base URL.
pub async fn spawn_on(
    dir: &std::path::Path,
    envs: &[(&str, String)],
) -> (std::process::Child, String) {
    let port = free_port();
    let mut cmd = ServerProcess::command(envs, dir, port);
    // PROCESS_TEST_LOGS=<level> shows the binary's logs at that level (RUST_LOG refines it).
    match std::env::var("PROCESS_TEST_LOGS")
        .ok()
        .filter(|l| !l.is_empty())
    {
        Some(level) => {
            cmd.env("LOG_LEVEL", level)
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit());
            if let Ok(filter) = std::env::var("RUST_LOG") {
                cmd.env("RUST_LOG", filter);
            }
        }
        None => {
            cmd.stderr(Stdio::null());
        }
    }
    let child = cmd.spawn().expect("spawn onwapp");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let up = eventually(Duration::from_secs(30), || {
        let req = client.get(format!("{base}/health"));
        async move { req.send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    assert!(up, "onwapp did not come up on port {port}");
    (child, base)
}

pub async fn redis_available() -> bool {
    let url = test_redis_url();
    let ok = async {
        let c = redis::Client::open(url.as_str()).ok()?;
        let mut conn = c.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .ok()
    };
    match tokio::time::timeout(Duration::from_secs(3), ok).await {
        Ok(Some(_)) => true,
        _ => {
            if std::env::var("ONWAPP_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1") {
                panic!(
                    "Redis at {url} is required (ONWAPP_TEST_REQUIRE_SERVICES=1) but unreachable"
                );
            }
            eprintln!("skipping: Redis at {url} unreachable");
            false
        }
    }
}

#[test]
fn a_bad_variable_stops_start_up_with_one_line_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    for (var, value) in [
        ("PORT", "not-a-port"),
        ("RATE_LIMIT_BURST", "0"),
        ("LOG_FORMAT", "xml"),
        ("DATABASE_URL", "mysql://db"),
        ("TRUSTED_PROXIES", "nonsense"),
    ] {
        let out = ServerProcess::command(&[(var, value.to_string())], dir.path(), free_port())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{var}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(var), "{err}");
    }
}

#[tokio::test]
async fn without_global_key_one_is_generated_kept_and_required() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = ServerProcess::command(&[], dir.path(), port);
    cmd.env_remove("GLOBAL_API_KEY")
        .env("LOG_LEVEL", "info")
        .stdout(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}");
    assert!(
        eventually(Duration::from_secs(20), || {
            let req = client.get(format!("{url}/health"));
            async move { req.send().await.is_ok() }
        })
        .await
    );
    let key = std::fs::read_to_string(dir.path().join("global_api_key")).unwrap();
    let key = key.trim();
    assert_eq!(key.len(), 64);
    assert_eq!(
        client
            .get(format!("{url}/sessions"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let r = client
        .get(format!("{url}/sessions"))
        .header("Authorization", key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // SIGTERM: a clean exit.
    send_signal(child.id(), "TERM");
    let status = wait_timeout(&mut child, Duration::from_secs(15)).expect("exited after SIGTERM");
    assert!(status.success(), "{status:?}");
    let mut log = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    let mentions: Vec<_> = log
        .lines()
        .filter(|l| l.contains("global_api_key"))
        .collect();
    assert_eq!(
        mentions.len(),
        1,
        "the key's location is logged once:\n{log}"
    );
    assert!(!log.contains(key), "the key itself is never logged");
}

#[tokio::test]
async fn the_default_database_is_an_sqlite_file_under_the_data_dir() {
    let p = ServerProcess::start(&[]).await;
    let client = reqwest::Client::new();
    let r = client
        .post(p.url("/sessions"))
        .header("Authorization", GLOBAL_KEY)
        .json(&serde_json::json!({"session": "persist"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert!(p._dir.path().join("onwapp.db").exists());
}

/// What the server writes holds session keys and device keys: its user's alone (issue 17).
#[tokio::test]
async fn the_data_directory_and_everything_in_it_are_private() {
    use std::os::unix::fs::PermissionsExt;
    // A data directory the server creates (under a temporary one it does not).
    let outer = tempfile::tempdir().unwrap();
    let data = outer.path().join("data");
    let port = free_port();
    let mut cmd = ServerProcess::command(&[], &data, port);
    cmd.env_remove("GLOBAL_API_KEY").stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn onwapp");
    let up = eventually(Duration::from_secs(30), || async {
        reqwest::get(format!("http://127.0.0.1:{port}/health"))
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
    let seen: Vec<(String, std::io::Result<u32>)> = [
        data.clone(),
        data.join("onwapp.db"),
        data.join("global_api_key"),
        data.join("raft"),
        data.join("raft/raft.redb"),
    ]
    .iter()
    .map(|p| (p.display().to_string(), mode(p)))
    .collect();
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "onwapp did not come up");
    for (path, m) in seen {
        let m = m.unwrap_or_else(|e| panic!("{path}: {e}"));
        let wanted = if path.ends_with("data") || path.ends_with("raft") {
            0o700
        } else {
            0o600
        };
        assert_eq!(m, wanted, "{path} is {m:o}");
    }
}

/// A `.env` file in the working directory configures the server, as OnWapp's godotenv did;
/// a variable set in the environment wins over the file (issue 18).
#[tokio::test]
async fn a_dotenv_file_in_the_working_directory_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let file_key = "dotenv-global-key-0123456789";
    std::fs::write(
        dir.path().join(".env"),
        format!(
            "# OnWapp's settings\nexport PORT={port}\nGLOBAL_API_KEY=\"{file_key}\"\n\
             DATA_DIR=./data # beside the file\nRATE_LIMIT_BURST=7\nGIN_MODE=release\n"
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_onwapp"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // The environment wins over the file.
        .env("RATE_LIMIT_BURST", "1000")
        .env("LOG_LEVEL", "warn")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn onwapp");
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    let up = eventually(Duration::from_secs(30), || async {
        client
            .get(format!("{base}/sessions"))
            .header("Authorization", file_key)
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    // More requests than the file's burst of 7: the environment's 1000 applies.
    let mut limited = false;
    for _ in 0..20 {
        let r = client.get(format!("{base}/health")).send().await.unwrap();
        limited |= r.status() == 429;
    }
    let wrong = client
        .get(format!("{base}/sessions"))
        .header("Authorization", GLOBAL_KEY)
        .send()
        .await
        .map(|r| r.status().as_u16());
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "the port and the key of .env were not used");
    assert!(
        !limited,
        "the file's RATE_LIMIT_BURST won over the environment's"
    );
    assert_eq!(wrong.ok(), Some(401), "another key is refused");
    assert!(
        dir.path().join("data").is_dir(),
        "DATA_DIR from .env, relative to it"
    );
}

/// `onwapp -version` and `-v` print the version and exit, as OnWapp's flags do, whatever the
/// environment holds (issue 18).
#[test]
fn version_flags_print_the_version_and_exit() {
    let dir = tempfile::tempdir().unwrap();
    for flag in ["-version", "-v"] {
        let mut cmd = ServerProcess::command(&[("PORT", "not-a-port".into())], dir.path(), 1);
        cmd.env("PORT", "not-a-port")
            .arg(flag)
            .stdout(Stdio::piped());
        let out = cmd.output().expect("run onwapp");
        assert!(out.status.success(), "{flag}: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            text.trim(),
            format!("onwapp-rs {}", env!("CARGO_PKG_VERSION")),
            "{flag}"
        );
    }
}

/// `kill -SIG pid` (TERM, STOP, CONT, ...); panics when `kill` fails.
pub fn send_signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid}: {status:?}");
}

fn wait_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}
