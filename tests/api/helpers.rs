//! Spawns the real application on port 0 with a fresh database per test, and the real services
//! it talks to (Postgres, Redis), reachable through a cuttable TCP proxy when a test needs one.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use onwapp::{app::App, config::Config};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Notify, oneshot},
};

pub const GLOBAL_KEY: &str = "test-global-key-0123456789";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

fn services_required() -> bool {
    std::env::var("ONWAPP_TEST_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Skips (returns `None`) or fails, as `ONWAPP_TEST_REQUIRE_SERVICES` says, when a service is down.
pub fn unavailable<T>(what: &str, err: impl std::fmt::Display) -> Option<T> {
    if services_required() {
        panic!("{what} is required (ONWAPP_TEST_REQUIRE_SERVICES=1) but unreachable: {err}");
    }
    eprintln!("skipping: {what} unreachable: {err}");
    None
}

pub fn test_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn test_redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A Postgres database of its own, dropped when this value is dropped.
pub struct PgDatabase {
    pub url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> Option<PgDatabase> {
        use sqlx::{Connection, Executor};
        let base = test_database_url();
        let mut conn = match sqlx::PgConnection::connect(&base).await {
            Ok(c) => c,
            Err(e) => return unavailable("Postgres at TEST_DATABASE_URL", e),
        };
        let name = format!("onwapp_t_{}", uuid::Uuid::new_v4().simple());
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .expect("create test database");
        let url = match base.rfind('/') {
            Some(i) if base[..i].contains("://") && i > base.find("://").unwrap_or(0) + 2 => {
                let (head, tail) = base.split_at(i);
                let query = tail.find('?').map(|q| &tail[q..]).unwrap_or("");
                format!("{head}/{name}{query}")
            }
            _ => format!("{base}/{name}"),
        };
        Some(PgDatabase { url, name })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let base = test_database_url();
        // Dropping needs async I/O; do it on a thread of its own so any runtime state is fine.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    use sqlx::{Connection, Executor};
                    if let Ok(mut c) = sqlx::PgConnection::connect(&base).await {
                        let _ = c
                            .execute(sqlx::AssertSqlSafe(format!(
                                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                            )))
                            .await;
                    }
                });
            }
        })
        .join();
    }
}

/// A running application and what it needs to stay alive.
pub struct TestApp {
    pub base: String,
    config: Config,
    state: onwapp::app::AppState,
    pub client: reqwest::Client,
    _data_dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _pg: Option<PgDatabase>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .get(self.url(path))
            .header("Authorization", GLOBAL_KEY)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .post(self.url(path))
            .header("Authorization", GLOBAL_KEY)
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .put(self.url(path))
            .header("Authorization", GLOBAL_KEY)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.client
            .delete(self.url(path))
            .header("Authorization", GLOBAL_KEY)
    }

    /// `GET path` with the global key, the body as JSON.
    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get(path)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json body")
    }

    /// `GET path` with the global key, the body as a JSON array.
    pub async fn get_list(&self, path: &str) -> Vec<serde_json::Value> {
        self.get(path)
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("json array")
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let r = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("request");
        r.text().await.expect("metrics text")
    }

    /// Sends `req`; returns the status and the body as JSON.
    pub async fn call(req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// Creates a session through the API and returns its JSON.
    pub async fn create_session(&self, name: &str) -> serde_json::Value {
        let r = self
            .post("/sessions")
            .json(&serde_json::json!({ "session": name }))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 201, "creating session {name}");
        r.json().await.expect("json")
    }

    /// The running app's store, for checks the API does not expose (the outbox).
    pub fn store(&self) -> std::sync::Arc<dyn onwapp::store::Store> {
        self.state.store.clone()
    }

    /// The database the app runs on, for tests that reach around it (a trigger that makes
    /// a write fail).
    pub fn database_url(&self) -> String {
        self.config.effective_database_url()
    }

    /// The running app's engine, to watch a session's WhatsApp client in tests.
    pub fn engine(&self) -> std::sync::Arc<onwapp::engine::Engine> {
        self.state.engine.clone()
    }

    /// Asks the server to shut down gracefully without waiting for it.
    pub fn begin_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Stops the server gracefully, then starts it again on the same data (database, data
    /// directory), on a new port: what a restart of the process does.
    pub async fn restart(mut self) -> TestApp {
        self.begin_shutdown();
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
        let config = self.config.clone();
        let data_dir =
            std::mem::replace(&mut self._data_dir, tempfile::tempdir().expect("tempdir"));
        let pg = self._pg.take();
        start(config, data_dir, pg).await
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(15), t).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// The configuration every test starts from.
pub fn base_config(data_dir: &std::path::Path) -> Config {
    Config {
        data_dir: data_dir.to_path_buf(),
        global_api_key: Some(GLOBAL_KEY.into()),
        rate_limit_per_second: 100_000,
        rate_limit_burst: 100_000,
        // Tests read the outbox as the engine left it; webhook delivery tests start workers
        // themselves (`webhook_delivery.rs`) or drive `Dispatcher::run_once`.
        webhooks: onwapp::webhooks::WebhookSettings {
            workers: 0,
            // Test receivers listen on loopback.
            allow_private_urls: true,
            ..Default::default()
        },
        ..Config::default()
    }
}

pub async fn spawn(db: Db) -> Option<TestApp> {
    spawn_with(db, |_| {}).await
}

/// Starts the app on 127.0.0.1:0 with a fresh database; `tune` adjusts the configuration.
pub async fn spawn_with(db: Db, tune: impl FnOnce(&mut Config)) -> Option<TestApp> {
    let data_dir = tempfile::tempdir().expect("tempdir");
    let mut config = base_config(data_dir.path());
    let pg = match db {
        Db::Sqlite => None,
        Db::Postgres => {
            let pg = PgDatabase::create().await?;
            config.database_url = Some(pg.url.clone());
            Some(pg)
        }
    };
    tune(&mut config);
    Some(start(config, data_dir, pg).await)
}

pub async fn start(config: Config, data_dir: tempfile::TempDir, pg: Option<PgDatabase>) -> TestApp {
    let app = App::build(config.clone()).await.expect("app builds");
    let state = app.state.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(app.serve(listener, async {
        let _ = rx.await;
    }));
    TestApp {
        config,
        state,
        base: format!("http://{addr}"),
        client: reqwest::Client::new(),
        _data_dir: data_dir,
        stop: Some(tx),
        task: Some(task),
        _pg: pg,
    }
}

/// Fencing enforced and every shard held, as the server runs a single node.
pub async fn hold_every_shard(store: &dyn onwapp::store::Store) {
    assert!(
        store
            .acquire_all_fences(1)
            .await
            .expect("fence every shard"),
        "every shard fenced at epoch 1"
    );
    store.fences().enforce();
}

/// Generates one `#[tokio::test]` per database for an `async fn(TestApp)`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(app) = $crate::helpers::spawn($crate::helpers::Db::Sqlite).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    if let Some(app) = $crate::helpers::spawn($crate::helpers::Db::Postgres).await {
                        super::$name(app).await;
                    }
                }
            )*
        }
    };
}

/// A TCP proxy to a real service that a test can cut (every connection dropped, new ones
/// refused) and restore, to play "the database went away".
pub struct CutProxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl CutProxy {
    pub async fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("addr");
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let cut = cut2.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.notified() => {}
                    }
                });
            }
        });
        CutProxy { addr, up, cut }
    }

    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// Polls `f` until it returns true or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
