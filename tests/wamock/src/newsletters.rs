//! Newsletters (channels): their metadata over `w:mex` GraphQL (create, fetch, the
//! subscribed list, join, leave, mute), their messages over `<iq xmlns="newsletter">`
//! (history, live updates), posts and reactions as plaintext `<message>` stanzas, and
//! views as `<receipt type="view">`. Answers are the JSON / nodes whatsapp-rust's
//! `features/newsletter.rs` parses.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use rand::RngExt;
use serde_json::{Value, json};
use wacore::iq::mex_operations as ops;
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, Server};

use crate::iq::{Answer, IqContext, Refusal};
use crate::nodes::{attr, bytes, child, jid_attr, unix_now};
use crate::relay::ack;
use crate::state::{DeviceAddr, State};

/// How long a live-updates subscription lasts (seconds), as the server answers it.
pub const LIVE_SECONDS: u64 = 300;

/// One message posted to a channel.
#[derive(Debug, Clone)]
struct Post {
    server_id: u64,
    id: String,
    t: u64,
    kind: String,
    author: String,
    plaintext: Vec<u8>,
    /// Reaction code per reacting account (phone).
    reactions: BTreeMap<String, String>,
    /// Accounts (phones) that sent a view receipt.
    views: BTreeSet<String>,
}

#[derive(Debug, Clone)]
struct Channel {
    jid: String,
    name: String,
    description: String,
    owner: String,
    created: u64,
    followers: BTreeSet<String>,
    /// Mute flag per account (phone) that set one.
    mutes: BTreeMap<String, bool>,
    posts: Vec<Post>,
    /// Accounts that subscribed to live updates, with the subscription's expiry.
    live: BTreeMap<String, u64>,
}

impl Channel {
    fn role(&self, phone: &str) -> &'static str {
        if self.owner == phone {
            "owner"
        } else if self.followers.contains(phone) {
            "subscriber"
        } else {
            "guest"
        }
    }

    /// The `NewsletterMetadata` JSON whatsapp-rust's `parse_newsletter_metadata` reads.
    fn metadata(&self, viewer: &str) -> Value {
        json!({
            "id": self.jid,
            "state": {"type": "active"},
            "thread_metadata": {
                "creation_time": self.created.to_string(),
                "description": {"id": self.created.to_string(), "text": self.description, "update_time": self.created.to_string()},
                "handle": null,
                "invite": self.jid.trim_end_matches("@newsletter"),
                "name": {"id": self.created.to_string(), "text": self.name, "update_time": self.created.to_string()},
                "picture": null,
                "preview": null,
                "subscribers_count": self.followers.len().to_string(),
                "verification": "UNVERIFIED",
            },
            "viewer_metadata": {
                "mute": if self.mutes.get(viewer).copied().unwrap_or(false) { "ON" } else { "OFF" },
                "role": self.role(viewer),
            },
        })
    }

    /// What the admin API shows.
    fn view(&self) -> Value {
        json!({
            "jid": self.jid,
            "name": self.name,
            "description": self.description,
            "owner": self.owner,
            "followers": self.followers,
            "mutes": self.mutes,
            "liveSubscribers": self.live.keys().collect::<Vec<_>>(),
            "messages": self.posts.iter().map(|p| {
                let text = waproto::codec::message_decode(&p.plaintext)
                    .ok()
                    .and_then(|m| m.conversation.clone());
                json!({
                    "serverId": p.server_id,
                    "id": p.id,
                    "type": p.kind,
                    "author": p.author,
                    "timestamp": p.t,
                    "text": text,
                    "reactions": p.reactions,
                    "views": p.views,
                })
            }).collect::<Vec<_>>(),
        })
    }

    fn post_node(&self, post: &Post, viewer: &str) -> Node {
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        for code in post.reactions.values() {
            *counts.entry(code.as_str()).or_default() += 1;
        }
        let mut b = NodeBuilder::new("message")
            .attr("id", post.id.clone())
            .attr("server_id", post.server_id.to_string())
            .attr("t", post.t.to_string())
            .attr("type", post.kind.clone());
        if post.author == viewer {
            b = b.attr("is_sender", "true");
        }
        let mut children = vec![
            NodeBuilder::new("plaintext")
                .bytes(post.plaintext.clone())
                .build(),
        ];
        if !counts.is_empty() {
            children.push(
                NodeBuilder::new("reactions")
                    .children(counts.into_iter().map(|(code, count)| {
                        NodeBuilder::new("reaction")
                            .attr("code", code)
                            .attr("count", count.to_string())
                            .build()
                    }))
                    .build(),
            );
        }
        b.children(children).build()
    }
}

/// Every channel wamock knows, by JID.
#[derive(Debug, Default)]
pub struct Channels(Mutex<BTreeMap<String, Channel>>);

impl Channels {
    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<String, Channel>) -> T) -> T {
        let mut guard = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }

    /// The admin view of one channel.
    pub fn view(&self, jid: &str) -> Option<Value> {
        self.with(|m| m.get(jid).map(Channel::view))
    }

    /// The server id of the post whose message id is `id`.
    pub fn server_id_of(&self, jid: &str, id: &str) -> Option<u64> {
        self.with(|m| {
            m.get(jid)?
                .posts
                .iter()
                .find(|p| p.id == id)
                .map(|p| p.server_id)
        })
    }
}

fn logged_in<'a>(ctx: &IqContext<'a>) -> Result<&'a DeviceAddr, Refusal> {
    ctx.device
        .ok_or_else(|| Refusal::new(401, "not-authorized"))
}

/// `<iq xmlns="w:mex">` for the newsletter operations; `None` for other queries.
pub fn mex(ctx: &IqContext<'_>, iq: &Node) -> Option<Answer> {
    let query = child(iq, "query")?;
    let doc = attr(query, "query_id")?;
    let payload: Value = bytes(query)
        .and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or(Value::Null);
    let vars = &payload["variables"];
    let data = match doc.as_str() {
        ops::create_newsletter::DOC_ID => create(ctx, vars),
        ops::fetch_newsletter::DOC_ID => fetch(ctx, vars),
        ops::fetch_all_newsletters_metadata::DOC_ID => subscribed(ctx),
        ops::join_newsletter::DOC_ID => join_leave(ctx, vars, true),
        ops::leave_newsletter::DOC_ID => join_leave(ctx, vars, false),
        ops::update_newsletter_user_setting::DOC_ID => user_setting(ctx, vars),
        _ => return None,
    };
    Some(data.map(|data| {
        let body = json!({ "data": data }).to_string().into_bytes();
        vec![NodeBuilder::new("result").bytes(body).build()]
    }))
}

fn create(ctx: &IqContext<'_>, vars: &Value) -> Result<Value, Refusal> {
    let device = logged_in(ctx)?;
    let name = vars["input"]["name"].as_str().unwrap_or_default().trim();
    if name.is_empty() {
        return Err(Refusal::new(400, "bad-request: name"));
    }
    let user: u64 = rand::rng().random_range(120_363_000_000_000_000..120_363_999_999_999_999);
    let channel = Channel {
        jid: format!("{user}@newsletter"),
        name: name.to_string(),
        description: vars["input"]["description"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        owner: device.phone.clone(),
        created: unix_now(),
        followers: BTreeSet::new(),
        mutes: BTreeMap::new(),
        posts: Vec::new(),
        live: BTreeMap::new(),
    };
    let meta = channel.metadata(&device.phone);
    tracing::info!(jid = %channel.jid, owner = %device.phone, "newsletter created");
    ctx.state.newsletters.with(|m| {
        m.insert(channel.jid.clone(), channel);
    });
    Ok(json!({ "xwa2_newsletter_create": meta }))
}

fn fetch(ctx: &IqContext<'_>, vars: &Value) -> Result<Value, Refusal> {
    let device = logged_in(ctx)?;
    let key = vars["input"]["key"].as_str().unwrap_or_default();
    let by_invite = vars["input"]["type"].as_str() == Some("INVITE");
    let meta = ctx.state.newsletters.with(|m| {
        let found = if by_invite {
            m.get(&format!("{key}@newsletter"))
        } else {
            m.get(key)
        };
        found.map(|c| c.metadata(&device.phone))
    });
    Ok(json!({ "xwa2_newsletter": meta }))
}

fn subscribed(ctx: &IqContext<'_>) -> Result<Value, Refusal> {
    let device = logged_in(ctx)?;
    let list: Vec<Value> = ctx.state.newsletters.with(|m| {
        m.values()
            .filter(|c| c.owner == device.phone || c.followers.contains(&device.phone))
            .map(|c| c.metadata(&device.phone))
            .collect()
    });
    Ok(json!({ "xwa2_newsletter_subscribed": list }))
}

fn join_leave(ctx: &IqContext<'_>, vars: &Value, join: bool) -> Result<Value, Refusal> {
    let device = logged_in(ctx)?;
    let jid = vars["newsletter_id"].as_str().unwrap_or_default();
    let meta = ctx.state.newsletters.with(|m| {
        let c = m.get_mut(jid)?;
        if join {
            if c.owner != device.phone {
                c.followers.insert(device.phone.clone());
            }
        } else {
            c.followers.remove(&device.phone);
        }
        Some(c.metadata(&device.phone))
    });
    Ok(if join {
        json!({ "xwa2_newsletter_join_v2": meta })
    } else {
        json!({ "xwa2_newsletter_leave_v2": meta.map(|_| json!({"id": jid})) })
    })
}

fn user_setting(ctx: &IqContext<'_>, vars: &Value) -> Result<Value, Refusal> {
    let device = logged_in(ctx)?;
    let input = &vars["input"];
    let jid = input["newsletter_id"].as_str().unwrap_or_default();
    let muted = match input["value"].as_str() {
        Some("ON") => true,
        Some("OFF") => false,
        _ => return Err(Refusal::new(400, "bad-request: value")),
    };
    let done = ctx.state.newsletters.with(|m| {
        let c = m.get_mut(jid)?;
        c.mutes.insert(device.phone.clone(), muted);
        Some(json!({"id": jid}))
    });
    Ok(json!({ "xwa2_newsletter_update_user_setting": done }))
}

/// `<iq xmlns="newsletter" to="...@newsletter">`: `<messages count before?/>` (get) and
/// `<live_updates/>` (set).
pub fn iq(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let device = logged_in(ctx)?;
    let jid = jid_attr(iq, "to")
        .filter(|j| j.server == Server::Newsletter)
        .ok_or_else(|| Refusal::new(400, "bad-request: to"))?
        .to_string();
    let not_found = || Refusal::new(404, "item-not-found");
    if let Some(messages) = child(iq, "messages") {
        let count: usize = attr(messages, "count")
            .and_then(|c| c.parse().ok())
            .unwrap_or(50);
        let before: Option<u64> = attr(messages, "before").and_then(|b| b.parse().ok());
        return ctx.state.newsletters.with(|m| {
            let c = m.get(&jid).ok_or_else(not_found)?;
            let mut posts: Vec<&Post> = c
                .posts
                .iter()
                .filter(|p| before.is_none_or(|b| p.server_id < b))
                .collect();
            let skip = posts.len().saturating_sub(count);
            posts.drain(..skip);
            let nodes: Vec<Node> = posts
                .into_iter()
                .map(|p| c.post_node(p, &device.phone))
                .collect();
            Ok(vec![
                NodeBuilder::new("messages")
                    .attr("jid", jid.clone())
                    .attr("t", unix_now().to_string())
                    .children(nodes)
                    .build(),
            ])
        });
    }
    if child(iq, "live_updates").is_some() {
        return ctx.state.newsletters.with(|m| {
            let c = m.get_mut(&jid).ok_or_else(not_found)?;
            c.live
                .insert(device.phone.clone(), unix_now() + LIVE_SECONDS);
            Ok(vec![
                NodeBuilder::new("live_updates")
                    .attr("duration", LIVE_SECONDS.to_string())
                    .build(),
            ])
        });
    }
    Err(Refusal::new(501, "newsletter iq not modelled by wamock"))
}

/// A `<message to="...@newsletter">`: a post (plaintext, owner only) or a reaction
/// (`type="reaction" server_id`, `<reaction code/>`; an empty code removes it).
pub fn message(state: &State, sender: &DeviceAddr, node: &Node, to: &Jid) -> Option<Node> {
    let jid = to.to_string();
    let kind = attr(node, "type").unwrap_or_else(|| "text".into());
    let id = attr(node, "id").unwrap_or_default();
    let result = state.newsletters.with(|m| {
        let c = m.get_mut(&jid).ok_or(404u16)?;
        if kind == "reaction" {
            let server_id: u64 = attr(node, "server_id")
                .and_then(|s| s.parse().ok())
                .ok_or(400u16)?;
            let code = child(node, "reaction")
                .and_then(|r| attr(r, "code"))
                .unwrap_or_default();
            let post = c
                .posts
                .iter_mut()
                .find(|p| p.server_id == server_id)
                .ok_or(404u16)?;
            if code.is_empty() {
                post.reactions.remove(&sender.phone);
            } else {
                post.reactions.insert(sender.phone.clone(), code);
            }
            return Ok(server_id);
        }
        if c.owner != sender.phone {
            return Err(403);
        }
        let plaintext = child(node, "plaintext")
            .and_then(bytes)
            .ok_or(400u16)?
            .to_vec();
        let server_id = c.posts.last().map_or(100, |p| p.server_id + 1);
        c.posts.push(Post {
            server_id,
            id: id.clone(),
            t: unix_now(),
            kind: kind.clone(),
            author: sender.phone.clone(),
            plaintext,
            reactions: BTreeMap::new(),
            views: BTreeSet::new(),
        });
        Ok(server_id)
    });
    match result {
        Ok(server_id) => {
            tracing::debug!(jid = %jid, kind = %kind, server_id, from = %sender.phone, "newsletter message");
            ack(node, None).map(|a| with_server_id(a, server_id))
        }
        Err(code) => {
            tracing::info!(jid = %jid, kind = %kind, code, "newsletter message refused");
            ack(node, Some(code))
        }
    }
}

fn with_server_id(mut ack: Node, server_id: u64) -> Node {
    ack.attrs.insert("server_id", server_id.to_string());
    ack
}

/// A `<receipt to="...@newsletter" type="view">` with `<list><item server_id/></list>`:
/// counts the views. Returns whether it was one.
pub fn receipt(state: &State, sender: &DeviceAddr, node: &Node, to: &Jid) -> bool {
    if to.server != Server::Newsletter {
        return false;
    }
    let mut ids: Vec<u64> = attr(node, "server_id")
        .and_then(|s| s.parse().ok())
        .into_iter()
        .collect();
    if let Some(list) = child(node, "list") {
        ids.extend(
            list.children()
                .unwrap_or_default()
                .iter()
                .filter_map(|i| attr(i, "server_id").and_then(|s| s.parse::<u64>().ok())),
        );
    }
    let kind = attr(node, "type").unwrap_or_default();
    let jid = to.to_string();
    state.newsletters.with(|m| {
        if let Some(c) = m.get_mut(&jid)
            && kind == "view"
        {
            for p in c.posts.iter_mut().filter(|p| ids.contains(&p.server_id)) {
                p.views.insert(sender.phone.clone());
            }
        }
    });
    tracing::debug!(jid = %jid, kind = %kind, ?ids, from = %sender.phone, "newsletter receipt");
    true
}
