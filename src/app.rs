//! Builds the application state and the router: the one place that wires parts together.

use anyhow::Context;
use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::Router;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::{
    auth::{Authenticator, ensure_global_key},
    config::Config,
    engine::{BackendSource, Engine, EngineConfig},
    http::{self, health::HealthMonitor},
    observability::Metrics,
    ratelimit::{Limiter, Quota},
    shards::Shards,
    store::{self, Store},
};

/// Shared by every handler: one `Arc`, so the per-request clones of middleware are one atomic
/// increment.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub auth: Authenticator,
    pub limiter: Arc<Limiter>,
    pub metrics: Arc<Metrics>,
    pub health: HealthMonitor,
    pub engine: Arc<Engine>,
    /// This node's place in the cluster: who serves which session.
    pub shards: Arc<Shards>,
    /// Wrong cluster secrets by address (`/cluster/*` refuses a guesser with 429).
    pub cluster_auth_failures: crate::auth::FailedAttempts,
    /// Wrong member proofs on API routes by address: a table of its own, so a client that
    /// shares an address with a member cannot lock the member out of `/cluster/*`.
    pub member_proof_failures: crate::auth::FailedAttempts,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The whole HTTP application, without a socket (tests call it directly).
pub fn app(state: AppState) -> Router {
    http::router(state)
}

/// A built application, ready to serve.
pub struct App {
    pub state: AppState,
    pub global_key_generated: bool,
    cancel: CancellationToken,
}

impl App {
    /// Connects storage and Redis, applies migrations, resolves the global key.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        // sqlx and whatsapp-rust use ring; with more than one rustls provider linked in, the
        // first TLS handshake panics unless one is chosen.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let (global_key, generated) =
            ensure_global_key(config.global_api_key.as_deref(), &config.data_dir).map_err(|e| {
                anyhow::anyhow!(
                    "GLOBAL_API_KEY: cannot keep a generated key in {}: {e}",
                    config.data_dir.display()
                )
            })?;
        // Installs from before files were created private (umask 077 in `main`): the data
        // directory, which holds the SQLite file, the Raft log and the generated key, is closed
        // to other users.
        #[cfg(unix)]
        if config.data_dir.is_dir() {
            use std::os::unix::fs::PermissionsExt;
            if let Err(e) =
                std::fs::set_permissions(&config.data_dir, std::fs::Permissions::from_mode(0o700))
            {
                tracing::warn!(dir = %config.data_dir.display(), error = %e, "cannot make the data directory private");
            }
        }
        let store = store::connect(&store::ConnectOptions {
            url: config.effective_database_url(),
            max_connections: config.db_max_connections,
        })
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "DATABASE_URL: cannot open the {} database: {e:#}",
                config.database_kind()
            )
        })?;
        let metrics = Arc::new(Metrics::new());
        let quota = Quota {
            per_second: config.rate_limit_per_second,
            burst: config.rate_limit_burst,
        };
        let limiter = Arc::new(match &config.redis_url {
            Some(url) => Limiter::with_redis(quota, url, &config.redis_key_prefix, metrics.clone())
                .await
                .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?,
            None => Limiter::local_only(quota, metrics.clone()),
        });
        let cancel = CancellationToken::new();
        limiter.spawn_recovery(cancel.child_token());
        spawn_sweeper(limiter.clone(), cancel.child_token());
        let backends: BackendSource = {
            let store = store.clone();
            Arc::new(move |rec| store.device_backend(rec.id))
        };
        let engine = Arc::new(Engine::new(
            store.clone(),
            backends,
            EngineConfig {
                server_url: config.whatsapp_server_url.clone(),
                media: Some(crate::engine::MediaBlobs(media_blobs(&config).await?)),
                media_max_bytes: config.media_max_bytes,
                ack_before_store: config.bench_ack_before_store,
                qr_in_log: config.log_format == crate::config::LogFormat::Console,
            },
        ));
        // The node joins its cluster (a cluster of one by default); sessions follow their
        // shards: those this node acquires reconnect by themselves, without a QR.
        // Every durable write of a session checks its shard's epoch from now on.
        store.fences().enforce();
        // Delivery starts once fencing is enforced: until this node holds a shard, its
        // workers claim no session (a worker started before would claim every session, and
        // its outcome records would be refused).
        if let Some(n) = &config.nats {
            tracing::info!(url = %crate::config::redact_url(&n.url), stream = %n.stream_prefix, "events also go to NATS JetStream");
        }
        crate::webhooks::Dispatcher::with_nats(
            store.clone(),
            webhook_settings(&config),
            Some(metrics.clone()),
            config.nats.clone(),
        )
        .spawn(cancel.child_token());
        let epoch_floor = store.max_fence_epoch().await?;
        let shards =
            Arc::new(Shards::start(&config, store.fences(), epoch_floor, metrics.clone()).await?);
        crate::shards::driver::spawn(
            shards.clone(),
            engine.clone(),
            store.clone(),
            cancel.child_token(),
        );
        if !config.cluster.clustered() {
            // A cluster of one serves nothing before its shards are fenced and held.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while !store.fences().holds_all() {
                if tokio::time::Instant::now() > deadline {
                    anyhow::bail!("the shards were not fenced within 30 s");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let state = AppState(Arc::new(Shared {
            engine,
            shards,
            auth: Authenticator::new(global_key, store.clone()),
            health: HealthMonitor::new(metrics.clone()),
            config,
            store,
            limiter,
            metrics,
            cluster_auth_failures: Default::default(),
            member_proof_failures: Default::default(),
        }));
        Ok(App {
            state,
            global_key_generated: generated,
            cancel,
        })
    }

    /// Serves on `listener` until `shutdown` resolves, then lets in-flight requests finish
    /// within the configured deadline.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let deadline = self.state.config.shutdown_timeout;
        if let Some(addr) = self.state.config.metrics_addr {
            let l = TcpListener::bind(addr)
                .await
                .with_context(|| format!("METRICS_ADDR={addr}: cannot listen"))?;
            let metrics = crate::http::metrics_router(self.state.clone());
            let stop = self.cancel.clone();
            tokio::spawn(async move {
                let served = axum::serve(l, metrics)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "metrics listener failed");
                }
            });
            tracing::info!(%addr, "metrics on their own listener");
        }
        let router = app(self.state.clone());
        // Both listeners (plain and, with TLS between nodes, TLS) stop taking requests once
        // `shutdown` resolves.
        let serving = CancellationToken::new();
        {
            let (stop, serving) = (self.cancel.clone(), serving.clone());
            tokio::spawn(async move {
                shutdown.await;
                tracing::info!("shutting down: finishing in-flight requests");
                stop.cancel();
                serving.cancel();
            });
        }
        // Small answers go out at once (no Nagle delay behind an unacknowledged segment).
        let nodelay = |tcp: &mut TcpStream| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "TCP_NODELAY");
            }
        };
        let tls = self.state.shards.tls().cloned();
        let server = async move {
            match tls {
                None => {
                    let listener = axum::serve::ListenerExt::tap_io(listener, nodelay);
                    axum::serve(
                        listener,
                        router.into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(serving.cancelled_owned())
                    .await
                }
                Some(tls) => {
                    let (plain, secure) = crate::shards::tls_listen::split(listener, tls.acceptor)?;
                    let plain = axum::serve(
                        axum::serve::ListenerExt::tap_io(plain, |_: &mut TcpStream| {}),
                        router
                            .clone()
                            .into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(serving.clone().cancelled_owned());
                    // What comes over TLS is marked so, for the member checks.
                    let secure = axum::serve(
                        axum::serve::ListenerExt::tap_io(secure, |_: &mut _| {}),
                        router
                            .layer(axum::Extension(crate::shards::tls::ViaTls))
                            .into_make_service_with_connect_info::<SocketAddr>(),
                    )
                    .with_graceful_shutdown(serving.cancelled_owned());
                    let (a, b) = tokio::join!(plain, secure);
                    a.and(b)
                }
            }
        };
        let drained = self.cancel.clone();
        tokio::select! {
            r = server => r?,
            _ = async move {
                drained.cancelled().await;
                tokio::time::sleep(deadline).await;
            } => tracing::warn!(?deadline, "shutdown deadline passed; dropping remaining requests"),
        }
        self.cancel.cancel();
        self.state.engine.shutdown().await;
        self.state.shards.shutdown().await;
        Ok(())
    }
}

fn spawn_sweeper(limiter: Arc<Limiter>, cancel: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tick.tick() => limiter.sweep(),
            }
        }
    });
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Where media files go: the S3 bucket of `MINIO_ENDPOINT` (ensured now, with retries); else,
/// on Postgres (a cluster, or a node whose disk may not outlive it), the shared database: a
/// file must outlive the node that received it; else (the embedded SQLite default)
/// `DATA_DIR/media`.
async fn media_blobs(config: &Config) -> anyhow::Result<Arc<dyn crate::media::BlobStore>> {
    let blobs: Arc<dyn crate::media::BlobStore> = if let Some(s3) = &config.s3 {
        let blobs = crate::media::S3Blobs::new(s3)
            .map_err(|e| anyhow::anyhow!("MINIO_*: {e}"))?
            .max_object(config.media_max_bytes);
        blobs
            .ensure_bucket()
            .await
            .map_err(|e| anyhow::anyhow!("MINIO_ENDPOINT: the object store is not usable: {e}"))?;
        Arc::new(blobs)
    } else if config.database_kind() == "postgres" {
        Arc::new(
            crate::store::blobs::PgBlobs::connect_lazy(&config.effective_database_url())
                .map_err(|e| anyhow::anyhow!("DATABASE_URL: {e}"))?,
        )
    } else {
        Arc::new(crate::media::FsBlobs::new(config.data_dir.join("media")))
    };
    tracing::info!(store = %blobs.describe(), "media files");
    Ok(blobs)
}

/// The delivery settings to run with. On Postgres a worker holds one pooled connection for
/// the session it claimed and takes a second to record each outcome, so the workers are
/// capped at a quarter of `DATABASE_MAX_CONNECTIONS`: the rest stays free for requests and
/// sessions, and a busy outbox cannot starve the pool.
fn webhook_settings(config: &Config) -> crate::webhooks::WebhookSettings {
    let mut settings = config.webhooks.clone();
    if config.database_kind() == "postgres" {
        let cap = (config.db_max_connections as usize / 4).max(1);
        if settings.workers > cap {
            tracing::warn!(
                requested = settings.workers,
                running = cap,
                "WEBHOOK_WORKERS capped at DATABASE_MAX_CONNECTIONS / 4; raise DATABASE_MAX_CONNECTIONS for more"
            );
            settings.workers = cap;
        }
    }
    settings
}
