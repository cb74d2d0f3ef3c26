//! Test harness: real nodes behind tiny hyper servers on 127.0.0.1, with a fake "app" that
//! records ownership events and confirms releases like the server would.
#![allow(dead_code)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use onwapp_cluster::{ClusterConfig, Node, NodeId, OwnershipEvent, RpcKind};
use tokio::net::TcpListener;
use tokio::sync::RwLock;
use tokio::task::JoinHandle;

pub const SECRET: &str = "test-secret";

pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "warn,onwapp_cluster=info".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

type Slot = Arc<RwLock<Option<Node>>>;

async fn serve_one(
    slot: Slot,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let reply = |status: u16, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
        Ok(r)
    };
    let Some(node) = slot.read().await.clone() else {
        return reply(503, b"starting".to_vec());
    };
    let auth = req
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if !node.verify_secret(auth.as_deref()) {
        return reply(401, b"unauthorized".to_vec());
    }
    let Some(kind) = RpcKind::from_path(req.uri().path()) else {
        return reply(404, b"no such path".to_vec());
    };
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return reply(400, b"body".to_vec()),
    };
    match node.handle_rpc(kind, &body).await {
        Ok(b) => reply(200, b),
        Err(e) => reply(e.http_status(), e.to_string().into_bytes()),
    }
}

/// Serves `/cluster/*` of whatever node is in `slot` (503 until there is one).
fn spawn_server(listener: TcpListener, slot: Slot) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let slot = slot.clone();
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |req| serve_one(slot.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    })
}

/// A node, its HTTP server and its fake app.
pub struct TestNode {
    pub id: NodeId,
    pub addr: String,
    pub node: Node,
    pub events: Arc<Mutex<Vec<OwnershipEvent>>>,
    server: Mutex<Option<JoinHandle<()>>>,
    app: JoinHandle<()>,
}

impl TestNode {
    /// Stops the node and its server (connections to it are refused from now on).
    pub async fn kill(&self) {
        let server = self.server.lock().unwrap().take();
        if let Some(server) = server {
            server.abort();
            let _ = server.await;
        }
        self.app.abort();
        self.node.shutdown().await;
    }

    pub fn events(&self) -> Vec<OwnershipEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn owned(&self) -> usize {
        self.node.owned_shards().len()
    }
}

/// Reserves a loopback port: the listener is handed to the node's server later.
pub async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", l.local_addr().unwrap());
    (l, addr)
}

/// Binds `addr` again (after a node on it was killed), retrying while the port is released.
pub async fn rebind(addr: &str) -> TcpListener {
    let hostport = addr.trim_start_matches("http://");
    for _ in 0..100 {
        if let Ok(l) = TcpListener::bind(hostport).await {
            return l;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("cannot bind {hostport} again");
}

/// Starts a node on `listener` with `config` and its fake app (which confirms every release).
pub async fn start_node(listener: TcpListener, config: ClusterConfig) -> TestNode {
    let slot: Slot = Arc::new(RwLock::new(None));
    let server = spawn_server(listener, slot.clone());
    let id = config.node_id;
    let addr = config.api_addr.clone();
    let node = Node::start(config).await.unwrap();
    *slot.write().await = Some(node.clone());
    let events = Arc::new(Mutex::new(Vec::new()));
    let mut rx = node.subscribe();
    let app = {
        let node = node.clone();
        let events = events.clone();
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                events.lock().unwrap().push(ev);
                if let OwnershipEvent::Releasing { shard, epoch, .. } = ev {
                    let node = node.clone();
                    tokio::spawn(async move {
                        let _ = node.confirm_released(shard, epoch).await;
                    });
                }
            }
        })
    };
    TestNode {
        id,
        addr,
        node,
        events,
        server: Mutex::new(Some(server)),
        app,
    }
}

pub fn fast_config(
    id: NodeId,
    addr: &str,
    dir: &std::path::Path,
    peers: &[(NodeId, String)],
) -> ClusterConfig {
    let mut c = ClusterConfig::new(id, addr, dir.join(format!("node{id}")), SECRET).fast();
    c.peers = peers.to_vec();
    c
}

/// Starts `n` nodes (ids 1..=n) that all list each other as peers.
pub async fn start_cluster(n: u64, dir: &std::path::Path) -> Vec<TestNode> {
    let mut ls = Vec::new();
    for id in 1..=n {
        let (l, addr) = listener().await;
        ls.push((id, l, addr));
    }
    let peers: Vec<(NodeId, String)> = ls.iter().map(|(id, _, a)| (*id, a.clone())).collect();
    let mut nodes = Vec::new();
    for (id, l, addr) in ls {
        nodes.push(start_node(l, fast_config(id, &addr, dir, &peers)).await);
    }
    nodes
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Placement has converged: every shard is active at its desired owner among the map's
/// non-draining nodes, and all `nodes` have applied the same map.
pub fn settled(nodes: &[&TestNode]) -> bool {
    let maps: Vec<_> = nodes.iter().map(|n| n.node.map()).collect();
    let first = &maps[0];
    let live: std::collections::BTreeSet<NodeId> = first
        .nodes
        .values()
        .filter(|n| !n.draining)
        .map(|n| n.id)
        .collect();
    let desired = onwapp_cluster::placement::desired_owners(first.shard_count, &live, 1.05);
    nodes.iter().all(|n| first.nodes.contains_key(&n.id))
        && first.draining_count() == 0
        && first
            .shards
            .iter()
            .zip(desired.iter())
            .all(|(s, d)| s.owner.is_some() && s.owner == *d)
        && maps.iter().all(|m| m.shards == first.shards)
        && nodes.iter().all(|n| n.owned() == first.count_of(n.id))
}

/// Every shard has an owner, no handoff in flight, and all `nodes` have applied the same map
/// (placement may still differ from the ideal one, e.g. while a dead node is still a member).
pub fn agreed(nodes: &[&TestNode]) -> bool {
    let maps: Vec<_> = nodes.iter().map(|n| n.node.map()).collect();
    let first = &maps[0];
    first.unassigned_count() == 0
        && first.draining_count() == 0
        && maps.iter().all(|m| m.shards == first.shards)
}
