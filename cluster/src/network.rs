//! Raft network over HTTP (client side): JSON posts to `{api_addr}/cluster/raft/*`.

use std::time::Duration;

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

/// A small HTTP client for cluster endpoints (plain http, bearer secret).
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    secret: std::sync::Arc<str>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct TransportError(String);

enum CallError {
    /// Could not connect at all.
    Unreachable(reqwest::Error),
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
    pub fn new(secret: &str) -> Result<Self, ClusterError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClusterError::Config(format!("http client: {e}")))?;
        Ok(HttpClient {
            client,
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
                    CallError::Unreachable(e)
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
                CallError::Unreachable(e) => RPCError::Unreachable(Unreachable::new(&e)),
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
