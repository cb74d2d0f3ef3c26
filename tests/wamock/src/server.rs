//! One TCP port for the chat websocket (`/ws/chat`) and the admin API (`/admin/*`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State as AxumState;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post, put};
use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::task::JoinHandle;

use crate::admin;
use crate::error::Result;
use crate::media;
use crate::session;
use crate::state::{DeviceStatus, HandshakeCounts, State};

/// A running wamock.
pub struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    task: JoinHandle<()>,
}

async fn chat(AxumState(state): AxumState<Arc<State>>, ws: WebSocketUpgrade) -> Response {
    ws.on_upgrade(move |socket| session::serve(state, socket))
}

async fn not_found() -> Response {
    admin::error(StatusCode::NOT_FOUND, "not found")
}

fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/ws/chat", get(chat))
        .route("/admin/scan-qr", post(admin::scan_qr))
        .route("/admin/pair-code", post(admin::pair_code))
        .route("/admin/devices", get(admin::devices))
        .route("/admin/devices/{jid}/kick", post(admin::faults::kick))
        .route("/admin/devices/{jid}/history", post(admin::history::send))
        .route("/admin/users", post(admin::users::create))
        .route("/admin/users/{phone}/send", post(admin::users::send))
        .route("/admin/users/{phone}/inbox", get(admin::users::inbox))
        .route("/admin/users/{phone}/receipts", get(admin::users::receipts))
        .route("/admin/users/{phone}/react", post(admin::actions::react))
        .route("/admin/users/{phone}/edit", post(admin::actions::edit))
        .route("/admin/users/{phone}/revoke", post(admin::actions::revoke))
        .route("/admin/users/{phone}/read", post(admin::actions::read))
        .route("/admin/users/{phone}/vote", post(admin::actions::vote))
        .route(
            "/admin/users/{phone}/undecryptable",
            post(admin::actions::undecryptable),
        )
        .route(
            "/admin/users/{phone}/presence",
            get(admin::presence::seen).post(admin::presence::set),
        )
        .route(
            "/admin/users/{phone}/presence/subscribe",
            post(admin::presence::subscribe),
        )
        .route(
            "/admin/users/{phone}/chatstates",
            get(admin::presence::chatstates),
        )
        .route(
            "/admin/users/{phone}/chatstate",
            post(admin::presence::send_chatstate),
        )
        .route(
            "/admin/accounts/{phone}/app-state",
            get(admin::presence::app_state),
        )
        .route(
            "/admin/accounts/{phone}/profile",
            get(admin::presence::profile),
        )
        .route(
            "/admin/users/{phone}/picture",
            get(admin::presence::picture_of),
        )
        .route(
            "/mms/{kind}/{token}",
            post(media::upload).layer(DefaultBodyLimit::max(media::MAX_UPLOAD_BYTES)),
        )
        .route(
            "/admin/users/{phone}/newsletters",
            post(admin::newsletters::create),
        )
        .route(
            "/admin/users/{phone}/newsletters/{jid}/post",
            post(admin::newsletters::post),
        )
        .route("/admin/newsletters/{jid}", get(admin::newsletters::view))
        .route("/admin/accounts/{phone}", get(admin::blocklist::account))
        .route(
            "/admin/accounts/{phone}/business",
            put(admin::business::set).delete(admin::business::remove),
        )
        .route(
            "/admin/accounts/{phone}/blocklist",
            get(admin::blocklist::blocklist),
        )
        .route("/admin/users/{phone}/call", post(admin::calls::place))
        .route("/admin/users/{phone}/hangup", post(admin::calls::hang_up))
        .route("/admin/accounts/{phone}/calls", get(admin::calls::received))
        .route(
            "/admin/accounts/{phone}/privacy",
            get(admin::calls::privacy).post(admin::calls::change_privacy),
        )
        .route("/admin/groups/{jid}", get(admin::groups::get))
        .route("/admin/users/{phone}/groups", post(admin::groups::create))
        .route("/admin/users/{phone}/join", post(admin::groups::join))
        .route("/admin/users/{phone}/group", post(admin::groups::action))
        .route("/v/{*path}", get(media::download))
        .fallback(not_found)
        .with_state(state)
}

impl Server {
    /// Binds `listen` (port 0 picks a free port) and serves in the background.
    pub async fn start(listen: impl ToSocketAddrs) -> Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::new(addr));
        let app = router(state.clone());
        let shutdown = state.shutdown.clone();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app)
                .with_graceful_shutdown(async move { shutdown.cancelled().await });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "wamock server stopped with an error");
            }
        });
        tracing::info!(%addr, "wamock listening");
        Ok(Self { addr, state, task })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/ws/chat`, for `TokioWebSocketTransportFactory::with_url`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws/chat", self.addr)
    }

    /// `http://ADDR`, the base of the admin API.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What `GET /admin/devices` answers.
    pub fn devices(&self) -> Vec<DeviceStatus> {
        self.state.devices()
    }

    /// The shared state (accounts, connections, simulated users).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// Noise handshakes completed so far, by pattern.
    pub fn handshakes(&self) -> HandshakeCounts {
        self.state.handshakes()
    }

    /// Closes every connection and stops listening.
    pub async fn stop(self) {
        self.state.users.shutdown_all().await;
        self.state.shutdown.cancel();
        self.state.close_all();
        if tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .is_err()
        {
            tracing::warn!("wamock server did not stop within 5 s");
        }
    }
}
