//! The running node: raft, lease renewal, the leader's placement loop, the ownership tracker,
//! and the server side of the `/cluster/*` endpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ChangeMembers, ServerState};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::ClusterConfig;
use crate::error::{ClusterError, WireError};
use crate::lease::{LeaseClock, LeaseState, local_validity};
use crate::log_store::{LogStore, open_db};
use crate::network::{HttpClient, HttpNetwork};
use crate::ownership::{Ownership, OwnershipEvent};
use crate::placement::{PlanInput, plan};
use crate::rpc::{RpcKind, WriteReply, WriteRequest};
use crate::shard_map::{Command, CommandResponse, Reject, ShardMap, ShardState};
use crate::state_machine::{MapView, StateMachineStore};
use crate::status::{ClusterStatus, DrainReport, NodeStatus, Owner, Readiness};
use crate::types::{ClusterNode, NodeId, Raft, TypeConfig, now_ms};

/// A running cluster node. Cheap to clone; all clones drive the same node.
#[derive(Clone)]
pub struct Node {
    inner: Arc<Inner>,
}

struct Inner {
    id: NodeId,
    config: ClusterConfig,
    raft: Raft,
    client: HttpClient,
    map_rx: watch::Receiver<MapView>,
    lease: LeaseClock,
    ownership: Mutex<Ownership>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    renewals_paused: AtomicBool,
    /// Set by `leave()`: no more renewals or re-joins (they would add the node back).
    leaving: AtomicBool,
    /// Set by `drain()` in this process, cleared by `undrain()`.
    drain_requested: AtomicBool,
    next_peer: AtomicUsize,
    shut: AtomicBool,
    /// The raft database, to know when raft has let go of it.
    db: std::sync::Weak<redb::Database>,
}

fn wire(e: RaftError<NodeId, ClientWriteError<NodeId, ClusterNode>>) -> WireError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => WireError::NotLeader {
            leader: f.leader_id.zip(f.leader_node.map(|n| n.api_addr)),
        },
        other => WireError::Failed(other.to_string()),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ClusterError> {
    serde_json::from_slice(body).map_err(|e| ClusterError::BadRequest(e.to_string()))
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, ClusterError> {
    serde_json::to_vec(v).map_err(|e| ClusterError::Raft(e.to_string()))
}

impl Node {
    /// Opens the raft store under `config.data_dir`, starts raft, and spawns the node's loops.
    /// Returns at once; the node joins, renews its lease and acquires shards in the background
    /// (a node without peers owns all shards within milliseconds).
    pub async fn start(config: ClusterConfig) -> Result<Node, ClusterError> {
        config.validate()?;
        let id = config.node_id;
        let db = open_db(&config.data_dir.join("raft"))?;
        let (map_tx, map_rx) = watch::channel(MapView {
            applied_index: 0,
            map: Arc::new(ShardMap::new()),
        });
        let sm = StateMachineStore::open(db.clone(), map_tx)
            .map_err(|e| ClusterError::Storage(e.to_string()))?;
        let db_weak = Arc::downgrade(&db);
        let log = LogStore::new(db);
        let client = HttpClient::new(&config.secret, config.transport.clone())?;
        let raft_config = Arc::new(config.raft_config()?);
        let raft = Raft::new(id, raft_config, HttpNetwork::new(client.clone()), log, sm)
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;

        let voters = config.initial_voters();
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| ClusterError::Raft(e.to_string()))?;
        if !voters.is_empty() && !initialized {
            match raft.initialize(voters).await {
                Ok(()) => tracing::info!(node = id, "raft cluster initialized"),
                Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                    tracing::debug!(node = id, "raft already initialized")
                }
                Err(e) => return Err(ClusterError::Raft(e.to_string())),
            }
        }

        let validity = local_validity(config.lease_renew, config.lease_ttl);
        let node = Node {
            inner: Arc::new(Inner {
                id,
                config,
                raft,
                client,
                map_rx,
                lease: LeaseClock::new(validity),
                ownership: Mutex::new(Ownership::default()),
                cancel: CancellationToken::new(),
                tasks: Mutex::new(Vec::new()),
                renewals_paused: AtomicBool::new(false),
                leaving: AtomicBool::new(false),
                drain_requested: AtomicBool::new(false),
                next_peer: AtomicUsize::new(0),
                shut: AtomicBool::new(false),
                db: db_weak,
            }),
        };
        let tasks = vec![
            tokio::spawn(node.clone().renew_loop()),
            tokio::spawn(node.clone().ownership_loop()),
            tokio::spawn(node.clone().placement_loop()),
        ];
        node.tasks().extend(tasks);
        tracing::info!(node = id, addr = %node.inner.config.api_addr, "cluster node started");
        Ok(node)
    }

    fn tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn ownership(&self) -> std::sync::MutexGuard<'_, Ownership> {
        self.inner
            .ownership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    pub fn config(&self) -> &ClusterConfig {
        &self.inner.config
    }

    /// The raft handle (metrics, tests); the server does not need it.
    pub fn raft(&self) -> &Raft {
        &self.inner.raft
    }

    // ----- reads -----

    /// The locally applied map (cheap: an `Arc` clone).
    pub fn map(&self) -> Arc<ShardMap> {
        self.inner.map_rx.borrow().map.clone()
    }

    /// Watch the applied map (with its log index).
    pub fn map_watch(&self) -> watch::Receiver<MapView> {
        self.inner.map_rx.clone()
    }

    /// The owner of `shard` in the local map (`None`: unassigned or out of range).
    pub fn owner_of(&self, shard: u32) -> Option<Owner> {
        let map = self.map();
        let s = map.shard(shard)?;
        let node = s.owner?;
        let addr = map
            .nodes
            .get(&node)
            .map(|n| n.api_addr.clone())
            .unwrap_or_default();
        Some(Owner {
            node,
            addr,
            epoch: s.epoch,
            draining: matches!(s.state, ShardState::Draining { .. }),
        })
    }

    /// The epoch at which this node effectively owns `shard` (map and lease), if it does.
    pub fn owned_epoch(&self, shard: u32) -> Option<u64> {
        if !self.inner.lease.is_valid_now() {
            return None;
        }
        self.ownership().epoch_of(shard)
    }

    /// Shards this node effectively owns, with their epochs.
    pub fn owned_shards(&self) -> Vec<(u32, u64)> {
        if !self.inner.lease.is_valid_now() {
            return Vec::new();
        }
        self.ownership().owned()
    }

    /// Ownership events of this node. The receiver first gets the current ownership as
    /// `Acquired` (and `Releasing`) events, then every change, in order.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<OwnershipEvent> {
        self.ownership().subscribe()
    }

    /// This node's lease (`Valid` / `Lost`).
    pub fn lease_watch(&self) -> watch::Receiver<LeaseState> {
        self.inner.lease.subscribe()
    }

    /// Is the lease valid right now (reads the clock; use before acting as owner).
    pub fn lease_valid(&self) -> bool {
        self.inner.lease.is_valid_now()
    }

    /// The leader as this node knows it: `(id, api_addr)`.
    pub fn leader(&self) -> Option<(NodeId, String)> {
        let m = self.inner.raft.metrics().borrow().clone();
        let id = m.current_leader?;
        let addr = m
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.api_addr.clone())?;
        Some((id, addr))
    }

    pub fn is_leader(&self) -> bool {
        let m = self.inner.raft.metrics();
        let m = m.borrow();
        m.current_leader == Some(self.inner.id) && m.state == ServerState::Leader
    }

    /// The cluster as this node sees it.
    pub fn status(&self) -> ClusterStatus {
        let m = self.inner.raft.metrics().borrow().clone();
        let view = self.inner.map_rx.borrow().clone();
        let map = &view.map;
        let now = now_ms() as i64;
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut counts: BTreeMap<NodeId, usize> = BTreeMap::new();
        for s in &map.shards {
            if let Some(o) = s.owner {
                *counts.entry(o).or_default() += 1;
            }
        }
        let nodes = map
            .nodes
            .values()
            .map(|n| NodeStatus {
                id: n.id,
                api_addr: n.api_addr.clone(),
                voter: voters.contains(&n.id),
                lease_until_ms: n.lease_until_ms,
                lease_remaining_ms: n.lease_until_ms as i64 - now,
                draining: n.draining,
                joined_at_ms: n.joined_at_ms,
                shards: counts.get(&n.id).copied().unwrap_or(0),
            })
            .collect();
        let role = match m.state {
            ServerState::Leader => "leader",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            _ if !voters.contains(&self.inner.id) => "learner",
            _ => "follower",
        };
        ClusterStatus {
            node_id: self.inner.id,
            leader: m.current_leader,
            term: m.current_term,
            role: role.to_string(),
            last_applied: view.applied_index,
            last_log_index: m.last_log_index.unwrap_or(0),
            lease: self.inner.lease.check(),
            lease_left_ms: self.inner.lease.remaining().as_millis() as u64,
            lease_losses: self.inner.lease.losses(),
            shard_count: map.shard_count,
            owned_shards: self.owned_shards().len(),
            unassigned: map.unassigned_count(),
            moves_in_flight: map.draining_count(),
            nodes,
        }
    }

    /// Whether this node should take client traffic now (see [`Readiness`]).
    pub fn readiness(&self) -> Readiness {
        // Entries received but not applied yet that still count as caught up: a follower is
        // always a few appends behind while writes flow.
        const SLACK: u64 = 16;
        let me = self.inner.id;
        let m = self.inner.raft.metrics().borrow().clone();
        let view = self.inner.map_rx.borrow().clone();
        let membership = m.membership_config.membership();
        let member = membership
            .voter_ids()
            .chain(membership.learner_ids())
            .any(|id| id == me);
        let in_map = view.map.nodes.get(&me);
        let received = m.last_log_index.unwrap_or(0);
        Readiness {
            joined: member && in_map.is_some(),
            leader: m.current_leader,
            caught_up: view.applied_index + SLACK >= received,
            lease_valid: self.lease_valid(),
            draining: self.inner.drain_requested.load(Ordering::SeqCst)
                || in_map.is_some_and(|n| n.draining),
        }
    }

    // ----- writes -----

    /// Proposes `req` to the leader (locally when this node leads, else over HTTP), retrying
    /// through elections until `timeout`.
    pub async fn submit(
        &self,
        req: WriteRequest,
        timeout: Duration,
    ) -> Result<WriteReply, ClusterError> {
        let deadline = Instant::now() + timeout;
        let mut backoff = Duration::from_millis(10);
        loop {
            if self.inner.cancel.is_cancelled() {
                return Err(ClusterError::Shutdown);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let res = match self.leader() {
                Some((id, _)) if id == self.inner.id => self
                    .handle_write(req.clone())
                    .await
                    .map_err(ClusterError::from),
                Some((_, addr)) => self.call_remote(&addr, RpcKind::Write, &req, left).await,
                None => match (&req, self.pick_peer()) {
                    (WriteRequest::Join { .. }, Some(addr)) => {
                        self.call_remote(&addr, RpcKind::Join, &req, left).await
                    }
                    _ => Err(ClusterError::NoLeader),
                },
            };
            match res {
                Ok(r) => return Ok(r),
                Err(e) if Instant::now() + backoff < deadline => {
                    tracing::debug!(node = self.inner.id, error = %e, "write retry");
                    tokio::select! {
                        _ = self.inner.cancel.cancelled() => return Err(ClusterError::Shutdown),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    async fn call_remote(
        &self,
        addr: &str,
        kind: RpcKind,
        req: &WriteRequest,
        timeout: Duration,
    ) -> Result<WriteReply, ClusterError> {
        let timeout = timeout.clamp(Duration::from_millis(50), Duration::from_secs(10));
        let r: Result<WriteReply, WireError> =
            self.inner.client.call(addr, kind, req, timeout).await?;
        Ok(r?)
    }

    fn pick_peer(&self) -> Option<String> {
        let peers: Vec<&String> = self
            .inner
            .config
            .peers
            .iter()
            .filter(|(id, _)| *id != self.inner.id)
            .map(|(_, a)| a)
            .collect();
        if peers.is_empty() {
            return None;
        }
        let i = self.inner.next_peer.fetch_add(1, Ordering::Relaxed);
        Some(peers[i % peers.len()].clone())
    }

    /// Proposes a command and fails on a rejection.
    async fn command(
        &self,
        command: Command,
        timeout: Duration,
    ) -> Result<WriteReply, ClusterError> {
        let reply = self
            .submit(WriteRequest::Command { command }, timeout)
            .await?;
        match &reply.response {
            CommandResponse::Rejected(r) => Err(ClusterError::Rejected(r.to_string())),
            _ => Ok(reply),
        }
    }

    /// The old owner has disconnected the sessions of `shard` after `Releasing{shard, epoch}`:
    /// the shard goes to the handoff target with a higher epoch.
    pub async fn confirm_released(&self, shard: u32, epoch: u64) -> Result<(), ClusterError> {
        self.command(Command::Released { shard, epoch }, Duration::from_secs(5))
            .await
            .map(|_| ())
    }

    /// Hands every shard of this node to others (planned handoffs; the server answers the
    /// `Releasing` events) and resolves when none is left or `timeout` passes.
    pub async fn drain(&self, timeout: Duration) -> Result<DrainReport, ClusterError> {
        let start = Instant::now();
        let me = self.inner.id;
        let shards_before = self.map().count_of(me);
        self.inner.drain_requested.store(true, Ordering::SeqCst);
        self.command(
            Command::SetDraining {
                node: me,
                draining: true,
            },
            timeout,
        )
        .await?;
        let mut rx = self.inner.map_rx.clone();
        let left = timeout.saturating_sub(start.elapsed());
        let done = tokio::time::timeout(left, rx.wait_for(|v| v.map.count_of(me) == 0)).await;
        let shards_remaining = self.map().count_of(me);
        let report = DrainReport {
            shards_before,
            shards_remaining,
            timed_out: done.is_err(),
            elapsed: start.elapsed(),
        };
        tracing::info!(node = me, ?report, "drain finished");
        Ok(report)
    }

    /// Ends a drain: this node may receive shards again.
    pub async fn undrain(&self) -> Result<(), ClusterError> {
        let node = self.inner.id;
        self.inner.drain_requested.store(false, Ordering::SeqCst);
        self.command(
            Command::SetDraining {
                node,
                draining: false,
            },
            Duration::from_secs(5),
        )
        .await
        .map(|_| ())
    }

    /// Leaves the cluster for good: drain, then remove this node from the map and the raft
    /// membership, then shut down.
    pub async fn leave(&self, timeout: Duration) -> Result<DrainReport, ClusterError> {
        let report = self.drain(timeout).await?;
        // Stop renewing first: a renewal rejected after RemoveNode would join the node again.
        self.inner.leaving.store(true, Ordering::SeqCst);
        let leave = WriteRequest::Leave {
            node: self.inner.id,
        };
        if let Err(e) = self.submit(leave, Duration::from_secs(10)).await {
            self.inner.leaving.store(false, Ordering::SeqCst);
            return Err(e);
        }
        self.shutdown().await;
        Ok(report)
    }

    /// Removes another node for good (e.g. a dead one): its shards are reassigned at once and it
    /// leaves the raft membership (a learner is promoted when voters would fall short).
    pub async fn remove_node(&self, node: NodeId) -> Result<(), ClusterError> {
        self.submit(WriteRequest::Leave { node }, Duration::from_secs(10))
            .await
            .map(|_| ())
    }

    /// Stops the loops and raft. Does not drain (a restarted node comes back with its state).
    pub async fn shutdown(&self) {
        if self.inner.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        self.inner.cancel.cancel();
        self.inner.lease.give_up();
        // Raft stops first: a loop of ours can be waiting on a write that will never commit
        // (a leader that lost its quorum does not step down), and only a stopped raft answers
        // it (`Fatal::Stopped`); awaiting the loops first waited for ever. The loops then see
        // the cancellation and end (the ownership loop still reports owning nothing).
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(node = self.inner.id, error = %e, "raft shutdown");
        }
        let tasks: Vec<JoinHandle<()>> = self.tasks().drain(..).collect();
        for t in tasks {
            let _ = t.await;
        }
        // openraft's workers drop their handles on the store shortly after; wait (bounded) so a
        // node can be started again on the same data directory in this process.
        for _ in 0..250 {
            if self.inner.db.strong_count() == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if self.inner.db.strong_count() > 0 {
            tracing::warn!(
                node = self.inner.id,
                refs = self.inner.db.strong_count(),
                "raft store still open after shutdown"
            );
        }
        tracing::info!(node = self.inner.id, "cluster node stopped");
    }

    /// Fault injection for tests and drills: stop (or resume) sending lease renewals.
    pub fn pause_renewals(&self, paused: bool) {
        self.inner.renewals_paused.store(paused, Ordering::SeqCst);
    }

    // ----- server side -----

    /// Checks an `Authorization` header value against `Bearer <secret>` in constant time.
    pub fn verify_secret(&self, authorization: Option<&str>) -> bool {
        let Some(token) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else {
            return false;
        };
        token
            .as_bytes()
            .ct_eq(self.inner.config.secret.as_bytes())
            .into()
    }

    /// Serves one `/cluster/*` request (after [`Node::verify_secret`]). The answer is the JSON
    /// body of a 200; errors map to `ClusterError::http_status()`.
    pub async fn handle_rpc(&self, kind: RpcKind, body: &[u8]) -> Result<Vec<u8>, ClusterError> {
        if self.inner.cancel.is_cancelled() {
            return Err(ClusterError::Shutdown);
        }
        let raft = &self.inner.raft;
        match kind {
            RpcKind::Append => to_json(&raft.append_entries(parse(body)?).await),
            RpcKind::Vote => to_json(&raft.vote(parse(body)?).await),
            RpcKind::Snapshot => to_json(&raft.install_snapshot(parse(body)?).await),
            RpcKind::Write => to_json(&self.handle_write(parse(body)?).await),
            RpcKind::Join => {
                let req: WriteRequest = parse(body)?;
                if !matches!(req, WriteRequest::Join { .. }) {
                    return Err(ClusterError::BadRequest("expected a join request".into()));
                }
                let res = match self.leader() {
                    Some((id, _)) if id == self.inner.id => self.handle_write(req).await,
                    Some((_, addr)) => {
                        match self
                            .inner
                            .client
                            .call(&addr, RpcKind::Write, &req, Duration::from_secs(5))
                            .await
                        {
                            Ok(r) => r,
                            Err(e) => Err(WireError::Failed(e.to_string())),
                        }
                    }
                    None => Err(WireError::NotLeader { leader: None }),
                };
                to_json(&res)
            }
        }
    }

    /// Leader side of a write; never forwards (a non-leader answers `NotLeader`).
    async fn handle_write(&self, req: WriteRequest) -> Result<WriteReply, WireError> {
        match req {
            WriteRequest::Command { command } => self.propose(self.stamp(command)).await,
            WriteRequest::Join { node, api_addr } => {
                let known_addr = {
                    let m = self.inner.raft.metrics().borrow().clone();
                    m.membership_config
                        .membership()
                        .get_node(&node)
                        .map(|n| n.api_addr.clone())
                };
                let raft = &self.inner.raft;
                let member = ClusterNode {
                    api_addr: api_addr.clone(),
                };
                match known_addr {
                    None => {
                        tracing::info!(node, %api_addr, "adding learner");
                        raft.add_learner(node, member, false).await.map_err(wire)?;
                    }
                    Some(old) if old != api_addr => {
                        // Same id at a new address (e.g. a rescheduled pod): update raft's record.
                        tracing::info!(node, %old, %api_addr, "member address changed");
                        let change = ChangeMembers::SetNodes(BTreeMap::from([(node, member)]));
                        raft.change_membership(change, true).await.map_err(wire)?;
                    }
                    Some(_) => {}
                }
                self.propose(self.stamp(Command::AddNode {
                    node,
                    api_addr,
                    at_ms: 0,
                    ttl_ms: 0,
                }))
                .await
            }
            WriteRequest::Leave { node } => self.remove_member(node).await,
        }
    }

    /// Stamps the leader's clock and TTL into lease commands.
    fn stamp(&self, command: Command) -> Command {
        let ttl_ms = self.inner.config.lease_ttl.as_millis() as u64;
        match command {
            Command::RenewLease { node, .. } => Command::RenewLease {
                node,
                at_ms: now_ms(),
                ttl_ms,
            },
            Command::AddNode { node, api_addr, .. } => Command::AddNode {
                node,
                api_addr,
                at_ms: now_ms(),
                ttl_ms,
            },
            other => other,
        }
    }

    async fn propose(&self, command: Command) -> Result<WriteReply, WireError> {
        let r = self.inner.raft.client_write(command).await.map_err(wire)?;
        Ok(WriteReply {
            log_index: r.log_id.index,
            response: r.data,
        })
    }

    async fn remove_member(&self, node: NodeId) -> Result<WriteReply, WireError> {
        let reply = self.propose(Command::RemoveNode { node }).await?;
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&node) {
            let mut new: BTreeSet<NodeId> = voters.iter().copied().filter(|v| *v != node).collect();
            let map = self.map();
            let now = now_ms();
            for l in membership.learner_ids() {
                if new.len() >= self.inner.config.voters {
                    break;
                }
                if map
                    .nodes
                    .get(&l)
                    .is_some_and(|n| n.lease_until_ms > now && !n.draining)
                {
                    new.insert(l);
                }
            }
            if new.is_empty() {
                return Err(WireError::Failed("cannot remove the last voter".into()));
            }
            tracing::info!(node, voters = ?new, "removing voter");
            self.inner
                .raft
                .change_membership(new, false)
                .await
                .map_err(wire)?;
        } else if membership.get_node(&node).is_some() {
            tracing::info!(node, "removing learner");
            self.inner
                .raft
                .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([node])), false)
                .await
                .map_err(wire)?;
        }
        Ok(reply)
    }

    // ----- loops -----

    /// Joins (until it works), then renews the lease every `lease_renew`.
    async fn renew_loop(self) {
        let cfg = &self.inner.config;
        let me = self.inner.id;
        let mut joined = false;
        let mut drain_checked = false;
        // A slow renewal still counts (validity runs from when it was sent): on a busy machine
        // one that takes longer than the renewal period is waited for, not thrown away.
        let patience = (local_validity(cfg.lease_renew, cfg.lease_ttl) / 2).max(cfg.lease_renew);
        loop {
            let mut renewed_last = false;
            let paused = self.inner.renewals_paused.load(Ordering::SeqCst);
            if !paused && !self.inner.leaving.load(Ordering::SeqCst) {
                let sent = Instant::now();
                let req = if joined {
                    WriteRequest::Command {
                        command: Command::RenewLease {
                            node: me,
                            at_ms: 0,
                            ttl_ms: 0,
                        },
                    }
                } else {
                    WriteRequest::Join {
                        node: me,
                        api_addr: cfg.api_addr.clone(),
                    }
                };
                match self.submit(req, patience).await {
                    Ok(WriteReply {
                        response: CommandResponse::Rejected(Reject::UnknownNode { .. }),
                        ..
                    }) => {
                        tracing::warn!(node = me, "the map does not know this node: joining again");
                        joined = false;
                        self.inner.lease.lose();
                        continue;
                    }
                    Ok(reply) => {
                        if !joined {
                            tracing::info!(node = me, "joined the cluster");
                        }
                        joined = true;
                        // Valid only once the local map has caught up with the renewal, so a
                        // stale map never hands back shards that moved meanwhile.
                        let mut rx = self.inner.map_rx.clone();
                        let caught_up = tokio::time::timeout(
                            patience,
                            rx.wait_for(|v| v.applied_index >= reply.log_index),
                        )
                        .await
                        .is_ok_and(|r| r.is_ok());
                        if caught_up {
                            self.inner.lease.renewed(sent);
                            renewed_last = true;
                        }
                        // A node that restarts after a drain (rolling update) takes shards again.
                        let mine = self.map().nodes.get(&me).map(|n| n.draining);
                        let stale_drain = !drain_checked && mine == Some(true);
                        drain_checked |= mine.is_some();
                        if stale_drain && !self.inner.drain_requested.load(Ordering::SeqCst) {
                            tracing::info!(node = me, "ending the drain of a previous run");
                            let cmd = Command::SetDraining {
                                node: me,
                                draining: false,
                            };
                            if let Err(e) = self.command(cmd, cfg.lease_renew).await {
                                tracing::warn!(node = me, error = %e, "could not end the previous drain");
                            }
                        }
                    }
                    Err(ClusterError::Shutdown) => break,
                    Err(e) => {
                        tracing::debug!(node = me, error = %e, joined, "lease renewal failed")
                    }
                }
            }
            // After a failure (no leader yet, say) try again soon: the lease keeps running.
            let idle = paused || self.inner.leaving.load(Ordering::SeqCst);
            let wait = if renewed_last || idle {
                cfg.lease_renew
            } else {
                cfg.lease_renew / 4
            };
            let next = tokio::time::sleep(wait);
            tokio::select! {
                _ = self.inner.cancel.cancelled() => break,
                _ = next => {}
            }
        }
    }

    /// Keeps effective ownership in step with the map and the lease, and checks the lease clock.
    async fn ownership_loop(self) {
        let me = self.inner.id;
        let mut map_rx = self.inner.map_rx.clone();
        let mut lease_rx = self.inner.lease.subscribe();
        let check = (self.inner.config.lease_renew / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(250));
        let mut tick = tokio::time::interval(check);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_valid = false;
        loop {
            tokio::select! {
                _ = self.inner.cancel.cancelled() => break,
                r = map_rx.changed() => if r.is_err() { break },
                r = lease_rx.changed() => if r.is_err() { break },
                _ = tick.tick() => {}
            }
            let valid = self.inner.lease.check() == LeaseState::Valid;
            if valid != was_valid {
                if valid {
                    tracing::info!(node = me, "lease valid");
                } else {
                    tracing::warn!(
                        node = me,
                        "lease lost: this node owns nothing until it renews"
                    );
                }
                was_valid = valid;
            }
            let map = map_rx.borrow_and_update().map.clone();
            lease_rx.borrow_and_update();
            self.ownership().update(me, &map, valid);
        }
        // Stopping: this node owns nothing any more.
        self.ownership().update(me, &ShardMap::new(), false);
    }

    /// On the leader: moves the map towards the placement (see `placement.rs`).
    ///
    /// A member whose lease ran out is dead to placement, and its shards go to others. Safe
    /// because a member stops acting on its shards `renew + renew / 2` before the leader's view
    /// of its lease ends (`lease.rs`). A new leader first makes sure its map holds every
    /// committed renewal (a read barrier: leadership confirmed by a quorum, everything committed
    /// applied), so it never judges a lease by an older copy than the member's own. Then it
    /// gives the members two renewal periods to renew with it (they could not while there was no
    /// leader) before it trusts expiry: a takeover costs the dead owner's shards no more than
    /// their TTL, not a TTL on top of the election. The loop wakes at the earliest lease expiry,
    /// not only on its tick, so a dead member's shards move as soon as its lease ends.
    ///
    /// The assumption this makes: a new leader judges leases its predecessor stamped with its
    /// own wall clock, so the members' clocks must agree to well within `1.5 × renew` (NTP
    /// keeps them within milliseconds). Were they further apart, a shard could move while its
    /// old owner still acts; the database's fence (a higher epoch) would still refuse that
    /// owner's writes, and WhatsApp keeps one socket per device. Waiting out the local validity
    /// after a takeover instead would not need the clocks, at about a second more per leader
    /// failover.
    async fn placement_loop(self) {
        let cfg = &self.inner.config;
        let mut map_rx = self.inner.map_rx.clone();
        let mut metrics = self.inner.raft.metrics();
        let mut tick = tokio::time::interval(cfg.placement_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leader_since: Option<Instant> = None;
        let mut leader_term: Option<u64> = None;
        let mut handoffs: HashMap<u32, (u64, Instant)> = HashMap::new();
        let mut next_expiry: Option<Instant> = None;
        let takeover_grace = cfg.lease_renew * 2;
        loop {
            let expiry = async {
                match next_expiry {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.inner.cancel.cancelled() => break,
                r = map_rx.changed() => if r.is_err() { break },
                r = metrics.changed() => if r.is_err() { break },
                _ = tick.tick() => {}
                _ = expiry => {}
            }
            next_expiry = None;
            // A term this loop did not see go by (its wake-ups merged while it awaited a write)
            // is a new leadership all the same: barrier and grace again.
            let term = metrics.borrow_and_update().current_term;
            if !cfg.placement_enabled || !self.is_leader() || leader_term != Some(term) {
                leader_since = None;
                handoffs.clear();
            }
            if !cfg.placement_enabled || !self.is_leader() {
                leader_term = None;
                continue;
            }
            leader_term = Some(term);
            if leader_since.is_none() {
                let barrier =
                    tokio::time::timeout(cfg.lease_ttl, self.inner.raft.ensure_linearizable());
                match barrier.await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(node = self.inner.id, error = %e, "placement: read barrier");
                        continue;
                    }
                    Err(_) => {
                        tracing::debug!(node = self.inner.id, "placement: read barrier timed out");
                        continue;
                    }
                }
                tracing::info!(node = self.inner.id, "placement: leading, map caught up");
            }
            let since = *leader_since.get_or_insert_with(Instant::now);
            let map = map_rx.borrow_and_update().map.clone();
            let now = now_ms();
            // Bootstrap: give the configured peers one TTL to join before placing anything, so a
            // cluster that starts together does not first pile every shard on the first leader.
            let waiting_for_peers = cfg.peers.iter().any(|(id, _)| !map.nodes.contains_key(id));
            if since.elapsed() < cfg.lease_ttl
                && waiting_for_peers
                && map.unassigned_count() == map.shards.len()
            {
                continue;
            }
            // A new leader's first moments: members renew with it before expiry counts.
            let grace = since.elapsed() < takeover_grace;
            if grace {
                next_expiry = Some(since + takeover_grace);
            } else if let Some(ms) = map
                .nodes
                .values()
                .map(|n| n.lease_until_ms)
                .filter(|until| *until > now)
                .min()
            {
                next_expiry = Some(Instant::now() + Duration::from_millis(ms - now + 1));
            }
            let alive: BTreeSet<NodeId> = map
                .nodes
                .values()
                .filter(|n| grace || n.lease_until_ms > now)
                .map(|n| n.id)
                .collect();
            let live: BTreeSet<NodeId> = alive
                .iter()
                .copied()
                .filter(|id| map.nodes.get(id).is_some_and(|n| !n.draining))
                .collect();
            let mut draining_now = HashMap::new();
            for (i, s) in map.shards.iter().enumerate() {
                if matches!(s.state, ShardState::Draining { .. }) {
                    let started = match handoffs.get(&(i as u32)) {
                        Some((epoch, t)) if *epoch == s.epoch => *t,
                        _ => Instant::now(),
                    };
                    draining_now.insert(i as u32, (s.epoch, started));
                }
            }
            handoffs = draining_now;
            let overdue = handoffs
                .iter()
                .filter(|(_, (_, t))| t.elapsed() >= cfg.handoff_deadline)
                .map(|(s, _)| *s)
                .collect();
            let p = plan(&PlanInput {
                map: &map,
                live,
                alive,
                now_ms: now,
                overdue,
                max_in_flight: cfg.max_handoffs,
                load_factor: cfg.load_factor,
            });
            if p.is_empty() {
                continue;
            }
            let mut commands = p.commands;
            if map.next_epoch <= cfg.epoch_floor {
                // Fences outside the map stand higher than its epochs (it was rebuilt): number
                // this placement's assignments above them.
                tracing::warn!(
                    node = self.inner.id,
                    next_epoch = map.next_epoch,
                    floor = cfg.epoch_floor,
                    "the shard map's epochs are below the database's fences; raising them"
                );
                commands.insert(
                    0,
                    Command::RaiseEpochs {
                        at_least: cfg.epoch_floor + 1,
                    },
                );
            }
            tracing::info!(
                node = self.inner.id,
                assigns = p.assigns,
                handoffs = p.handoffs,
                forced = p.forced,
                "placement"
            );
            if let Err(e) = self
                .inner
                .raft
                .client_write(Command::Batch { commands })
                .await
            {
                tracing::warn!(node = self.inner.id, error = %e, "placement write failed");
            }
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("id", &self.inner.id).finish()
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<Node>();
    is::<TypeConfig>();
}
