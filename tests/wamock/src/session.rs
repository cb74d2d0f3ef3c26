//! One chat connection: the Noise handshake, then login (or pairing), then encrypted
//! stanzas both ways until either side closes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use bytes::BytesMut;
use tokio::sync::{mpsc, oneshot};
use wacore::xml::DisplayableNode;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node};
use waproto::buffa::Message as _;
use waproto::whatsapp as wa;

use crate::cipher::StanzaCipher;
use crate::error::{Error, Result};
use crate::framing::{FrameReader, frame};
use crate::handshake::{HelloOutcome, respond_to_hello};
use crate::iq::{self, IqContext};
use crate::nodes::{attr, unix_now};
use crate::pairing;
use crate::prekeys::KeyBundle;
use crate::relay;
use crate::state::{
    ConnId, DeviceAddr, LoginRefusal, Outbound, PairingCandidate, State, offline_marker,
};

/// The client's own handshake timeout is 20 s; we wait as long for each message.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the client gets to close the socket itself after a stream error.
const STREAM_ERROR_GRACE: Duration = Duration::from_secs(2);

/// Serves one upgraded websocket until it closes.
pub async fn serve(state: Arc<State>, socket: WebSocket) {
    let mut session = Session {
        state: state.clone(),
        ws: socket,
        reader: FrameReader::new(),
        frames: VecDeque::new(),
        id: None,
        device: None,
        next_iq: 0,
    };
    match session.run().await {
        Ok(()) => tracing::debug!(device = ?session.device, "chat connection closed"),
        Err(e) => tracing::info!(device = ?session.device, error = %e, "chat connection ended"),
    }
    if let Some(id) = session.id {
        state.remove_conn(id);
    }
}

struct Session {
    state: Arc<State>,
    ws: WebSocket,
    reader: FrameReader,
    frames: VecDeque<BytesMut>,
    id: Option<ConnId>,
    device: Option<DeviceAddr>,
    next_iq: u64,
}

impl Session {
    async fn next_frame(&mut self) -> Result<BytesMut> {
        loop {
            if let Some(f) = self.frames.pop_front() {
                return Ok(f);
            }
            match self.ws.recv().await {
                None | Some(Ok(Message::Close(_))) => return Err(Error::Closed),
                Some(Err(e)) => return Err(Error::WebSocket(e.to_string())),
                Some(Ok(Message::Binary(data))) => self.frames.extend(self.reader.feed(&data)?),
                Some(Ok(_)) => {}
            }
        }
    }

    async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<()> {
        self.ws
            .send(Message::Binary(bytes.into()))
            .await
            .map_err(|e| Error::WebSocket(e.to_string()))
    }

    async fn send(&mut self, cipher: &mut StanzaCipher, node: &Node) -> Result<()> {
        tracing::debug!(device = ?self.device, "--> {}", DisplayableNode(node));
        let sealed = cipher.seal(node)?;
        self.send_raw(sealed).await
    }

    async fn close(&mut self) {
        let _ = self.ws.send(Message::Close(None)).await;
    }

    /// After a stream error, lets the client read it and close the socket itself
    /// (ignoring anything else it sends), for up to [`STREAM_ERROR_GRACE`].
    /// whatsapp-rust 0.7 handles a stream error on a separate task: when the socket
    /// closes first, its reconnect can race the handler, which then tears down the
    /// new connection instead of the old one.
    async fn await_client_close(&mut self) {
        let drain = async {
            loop {
                match self.ws.recv().await {
                    None | Some(Ok(Message::Close(_))) | Some(Err(_)) => return,
                    Some(Ok(_)) => {}
                }
            }
        };
        if tokio::time::timeout(STREAM_ERROR_GRACE, drain)
            .await
            .is_err()
        {
            tracing::debug!(device = ?self.device, "client kept the socket open after a stream error");
        }
    }

    fn iq_id(&mut self) -> String {
        self.next_iq += 1;
        format!("wamock-{}", self.next_iq)
    }

    async fn run(&mut self) -> Result<()> {
        let hello = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.next_frame())
            .await
            .map_err(|_| Error::Timeout("client hello"))??;
        let established = match respond_to_hello(&self.state.identity, &hello)? {
            HelloOutcome::Established {
                server_hello,
                session,
            } => {
                self.send_raw(frame(&server_hello)?).await?;
                session
            }
            HelloOutcome::AwaitFinish {
                server_hello,
                pending,
            } => {
                self.send_raw(frame(&server_hello)?).await?;
                let fin = tokio::time::timeout(HANDSHAKE_TIMEOUT, self.next_frame())
                    .await
                    .map_err(|_| Error::Timeout("client finish"))??;
                pending.finish(&fin)?
            }
        };
        tracing::debug!(pattern = ?established.pattern, "noise handshake done");
        self.state.count_handshake(established.pattern);
        let payload = wa::ClientPayload::decode_from_slice(&established.payload)?;
        let client_static = established.client_static;
        let mut cipher = StanzaCipher::new(established);
        let (tx, mut rx) = mpsc::unbounded_channel();
        let id = self.state.add_conn(tx);
        self.id = Some(id);

        if !self.start(&mut cipher, id, &payload, client_static).await? {
            self.close().await;
            return Ok(());
        }

        let mut pending: HashMap<String, oneshot::Sender<Node>> = HashMap::new();
        let shutdown = self.state.shutdown.clone();
        loop {
            // Stanzas already framed (the handshake read may have buffered some).
            while let Some(f) = self.frames.pop_front() {
                let node = cipher.open(f)?;
                self.on_stanza(&mut cipher, &mut pending, node).await?;
            }
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.close().await;
                    return Ok(());
                }
                out = rx.recv() => match out {
                    Some(Outbound::Node(node)) => self.send(&mut cipher, &node).await?,
                    Some(Outbound::Iq(node, reply)) => {
                        if let Some(id) = attr(&node, "id") {
                            pending.insert(id, reply);
                        }
                        self.send(&mut cipher, &node).await?;
                    }
                    Some(Outbound::Close(node)) => {
                        if let Some(node) = node {
                            self.send(&mut cipher, &node).await?;
                            self.await_client_close().await;
                        }
                        self.close().await;
                        return Ok(());
                    }
                    None => return Ok(()),
                },
                msg = self.ws.recv() => match msg {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(Error::WebSocket(e.to_string())),
                    Some(Ok(Message::Binary(data))) => {
                        let frames = self.reader.feed(&data)?;
                        self.frames.extend(frames);
                    }
                    Some(Ok(_)) => {}
                },
            }
        }
    }

    /// Logs in or offers pairing. Returns false when the connection must close.
    async fn start(
        &mut self,
        cipher: &mut StanzaCipher,
        id: ConnId,
        payload: &wa::ClientPayload,
        client_static: [u8; 32],
    ) -> Result<bool> {
        if let Some(username) = payload.username {
            let device = u16::try_from(payload.device.unwrap_or(0))
                .map_err(|_| Error::protocol("device id out of range"))?;
            let addr = DeviceAddr {
                phone: username.to_string(),
                device,
            };
            return match self.state.login(id, &addr, &client_static) {
                Ok(info) => {
                    tracing::info!(jid = %addr.jid(), "login");
                    let lid: Jid = format!("{}:{}@lid", info.lid, addr.device)
                        .parse()
                        .map_err(|e| Error::protocol(format!("lid jid: {e}")))?;
                    self.device = Some(addr);
                    let success = NodeBuilder::new("success")
                        .attr("t", unix_now().to_string())
                        .attr("creation", info.created.to_string())
                        .attr("location", "wamock")
                        .attr("lid", lid)
                        .build();
                    self.send(cipher, &success).await?;
                    let count = info.offline.len();
                    for node in &info.offline {
                        self.send(cipher, node).await?;
                    }
                    self.send(cipher, &offline_marker(count)).await?;
                    Ok(true)
                }
                Err(refusal) => {
                    tracing::info!(jid = %addr.jid(), ?refusal, "login refused");
                    let reason = match refusal {
                        LoginRefusal::UnknownDevice | LoginRefusal::WrongNoiseKey => "401",
                    };
                    let failure = NodeBuilder::new("failure")
                        .attr("reason", reason)
                        .attr("location", "wamock")
                        .build();
                    self.send(cipher, &failure).await?;
                    Ok(false)
                }
            };
        }
        let Some(registration) = payload.device_pairing_data.as_option() else {
            return Err(Error::protocol(
                "client payload has neither a username nor registration data",
            ));
        };
        let keys = KeyBundle::from_registration(registration)?;
        let refs = pairing::new_refs();
        self.state.offer_pairing(
            id,
            PairingCandidate {
                noise_pub: client_static,
                keys,
                refs: refs.clone(),
                code: None,
            },
        );
        let iq_id = self.iq_id();
        self.send(cipher, &pairing::pair_device_iq(&iq_id, &refs))
            .await?;
        Ok(true)
    }

    async fn on_stanza(
        &mut self,
        cipher: &mut StanzaCipher,
        pending: &mut HashMap<String, oneshot::Sender<Node>>,
        node: Node,
    ) -> Result<()> {
        tracing::debug!(device = ?self.device, "<-- {}", DisplayableNode(&node));
        match node.tag.as_ref() {
            "iq" => match attr(&node, "type").as_deref() {
                Some("result") | Some("error") => {
                    let waiter = attr(&node, "id").and_then(|id| pending.remove(&id));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(node);
                    }
                }
                _ => {
                    let ctx = IqContext {
                        state: &self.state,
                        device: self.device.as_ref(),
                        conn: self.id,
                    };
                    let answer = iq::answer(&ctx, &node);
                    self.send(cipher, &answer).await?;
                }
            },
            "message" | "receipt" | "notification" | "presence" | "chatstate" | "call" => {
                let Some(device) = self.device.clone() else {
                    tracing::debug!(tag = %node.tag, "stanza before login ignored");
                    return Ok(());
                };
                let ack = match node.tag.as_ref() {
                    "message" => relay::message(&self.state, &device, &node),
                    "receipt" => {
                        // A receipt is how a client acknowledges a message it got.
                        self.state
                            .acknowledged(&device, "message", &relay::receipt_ids(&node));
                        crate::calls::receipt(&self.state, &device, &node);
                        relay::receipt(&self.state, &device, &node)
                    }
                    "call" => {
                        crate::calls::from_device(&self.state, &device, &node);
                        relay::ack(&node, None)
                    }
                    "presence" => crate::presence::presence(&self.state, &device, &node),
                    "chatstate" => crate::presence::chatstate(&self.state, &device, &node),
                    _ => relay::ack(&node, None),
                };
                if let Some(ack) = ack {
                    self.send(cipher, &ack).await?;
                }
            }
            // The client's own acks of what we delivered.
            "ack" => {
                if let (Some(device), Some(class), Some(id)) =
                    (&self.device, attr(&node, "class"), attr(&node, "id"))
                {
                    self.state.acknowledged(device, &class, &[id]);
                }
            }
            other => tracing::debug!(tag = other, "stanza not handled by wamock yet"),
        }
        Ok(())
    }
}
