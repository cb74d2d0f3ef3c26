//! Raft network over HTTP (client side): JSON posts to `{api_addr}/cluster/raft/*`.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ClusterError;
use crate::rpc::RpcKind;
use crate::types::{ClusterNode, NodeId, TypeConfig};

/// Why a [`Transport`] call has no answer.
#[derive(Debug)]
pub enum TransportFailure {
    /// Could not connect at all (nothing was sent).
    Unreachable(String),
    /// Anything else on the way (timeout, a broken connection).
    Failed(String),
}

/// What a [`Transport`] call yields: the answer's status and body.
pub type TransportFuture<'a> =
    Pin<Box<dyn Future<Output = Result<(u16, Vec<u8>), TransportFailure>> + Send + 'a>>;

/// A client the application brings for the `/cluster/*` calls, e.g. one that speaks TLS to
/// `https://` members with the cluster's CA. The Raft pieces stay free of TLS configuration.
pub trait Transport: Send + Sync + 'static {
    /// POSTs `body` (JSON) to `path` of the member at `base` (`https://host:port`) with
    /// `Authorization: Bearer <secret>` within `timeout`; the answer's status and body.
    fn post<'a>(
        &'a self,
        base: &'a str,
        path: &'a str,
        secret: &'a str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> TransportFuture<'a>;
}

/// A [`Transport`] in a [`crate::ClusterConfig`].
#[derive(Clone)]
pub struct SharedTransport(pub Arc<dyn Transport>);

impl std::fmt::Debug for SharedTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Transport")
    }
}

/// A small HTTP client for cluster endpoints (bearer secret): plain http through reqwest, or
/// the application's [`Transport`].
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    transport: Option<SharedTransport>,
    secret: std::sync::Arc<str>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

enum CallError {
    /// Could not connect at all.
    Unreachable(String),
    /// Anything else on the way (timeout, bad status, bad body).
    Network(TransportError),
}

impl From<CallError> for ClusterError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::Unreachable(e) => ClusterError::Transport(e.to_string()),
            CallError::Network(e) => ClusterError::Transport(e.to_string()),
        }
    }
}

impl HttpClient {
    pub fn new(secret: &str, transport: Option<SharedTransport>) -> Result<Self, ClusterError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClusterError::Config(format!("http client: {e}")))?;
        Ok(HttpClient {
            client,
            transport,
            secret: secret.into(),
        })
    }

    async fn call_raw<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        kind: RpcKind,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError> {
        if let Some(SharedTransport(t)) = &self.transport {
            let body = serde_json::to_vec(req)
                .map_err(|e| CallError::Network(TransportError(e.to_string())))?;
            let (status, body) = t
                .post(
                    addr.trim_end_matches('/'),
                    kind.path(),
                    &self.secret,
                    body,
                    timeout,
                )
                .await
                .map_err(|e| match e {
                    TransportFailure::Unreachable(e) => CallError::Unreachable(e),
                    TransportFailure::Failed(e) => CallError::Network(TransportError(e)),
                })?;
            if status != 200 {
                let body = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
                return Err(CallError::Network(TransportError(format!(
                    "HTTP {status}: {body}"
                ))));
            }
            return serde_json::from_slice(&body)
                .map_err(|e| CallError::Network(TransportError(e.to_string())));
        }
        let url = format!("{}{}", addr.trim_end_matches('/'), kind.path());
        let res = self
            .client
            .post(url)
            .bearer_auth(&*self.secret)
            .timeout(timeout)
            .json(req)
            .send()
            .await
            .map_err(|e| {
                if e.is_connect() {
                    CallError::Unreachable(e.to_string())
                } else {
                    CallError::Network(TransportError(e.to_string()))
                }
            })?;
        let status = res.status().as_u16();
        if status != 200 {
            let body = res.text().await.unwrap_or_default();
            return Err(CallError::Network(TransportError(format!(
                "HTTP {status}: {body}"
            ))));
        }
        res.json::<Resp>()
            .await
            .map_err(|e| CallError::Network(TransportError(e.to_string())))
    }

    /// Posts `req` to `addr` + the path of `kind` and decodes the JSON answer.
    pub async fn call<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        addr: &str,
        kind: RpcKind,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, ClusterError> {
        Ok(self.call_raw(addr, kind, req, timeout).await?)
    }
}

/// Creates one [`HttpConnection`] per raft peer.
#[derive(Clone)]
pub struct HttpNetwork {
    client: HttpClient,
}

impl HttpNetwork {
    pub fn new(client: HttpClient) -> Self {
        HttpNetwork { client }
    }
}

impl RaftNetworkFactory<TypeConfig> for HttpNetwork {
    type Network = HttpConnection;

    async fn new_client(&mut self, target: NodeId, node: &ClusterNode) -> Self::Network {
        HttpConnection {
            client: self.client.clone(),
            target,
            addr: node.api_addr.clone(),
        }
    }
}

/// The raft client towards one peer.
pub struct HttpConnection {
    client: HttpClient,
    target: NodeId,
    addr: String,
}

impl HttpConnection {
    async fn raft_call<Req, Resp, E>(
        &self,
        kind: RpcKind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, ClusterNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<Resp, RaftError<NodeId, E>> = self
            .client
            .call_raw(&self.addr, kind, req, option.hard_ttl())
            .await
            .map_err(|e| match e {
                CallError::Unreachable(e) => {
                    RPCError::Unreachable(Unreachable::new(&TransportError(e)))
                }
                CallError::Network(e) => RPCError::Network(NetworkError::new(&e)),
            })?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for HttpConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, ClusterNode, RaftError<NodeId>>>
    {
        self.raft_call(RpcKind::Append, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, ClusterNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.raft_call(RpcKind::Snapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, ClusterNode, RaftError<NodeId>>> {
        self.raft_call(RpcKind::Vote, &rpc, &option).await
    }
}
