//! `<iq xmlns="w:g2">`: what whatsapp-rust's `client.groups()` and `client.community()`
//! send (wacore's `iq::groups` specs), answered with the nodes those specs parse.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, NodeContent, Server};

use super::{Description, Group, Role, notify};
use crate::iq::{Answer, IqContext, Refusal};
use crate::nodes::{attr, child, jid_attr, unix_now};
use crate::state::{DeviceAddr, State};

fn logged_in<'a>(ctx: &IqContext<'a>) -> Result<&'a DeviceAddr, Refusal> {
    ctx.device
        .ok_or_else(|| Refusal::new(401, "not-authorized"))
}

fn text(node: &Node) -> String {
    match &node.content {
        Some(NodeContent::String(s)) => s.to_string(),
        Some(NodeContent::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    }
}

fn not_found() -> Refusal {
    Refusal::new(404, "item-not-found")
}

fn forbidden() -> Refusal {
    Refusal::new(403, "forbidden")
}

/// The children with this tag.
fn children<'a>(node: &'a Node, tag: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
    node.children()
        .unwrap_or_default()
        .iter()
        .filter(move |c| c.tag == tag)
}

/// The account (phone number) a participant JID names, PN or LID.
fn phone_of(state: &State, jid: &Jid) -> Option<String> {
    if !matches!(jid.server, Server::Pn | Server::Lid) {
        return None;
    }
    state.resolve(jid).map(|d| d.phone)
}

/// The `<group>` node wacore's `GroupInfoResponse` parses (PN addressing).
pub fn info_node(group: &Group) -> Node {
    let mut children: Vec<Node> = group
        .participants
        .iter()
        .map(|(phone, role)| {
            let mut b = NodeBuilder::new("participant").attr("jid", Jid::pn(phone.clone()));
            if let Some(t) = role.wire() {
                b = b.attr("type", t);
            }
            b.build()
        })
        .collect();
    if let Some(d) = &group.description {
        children.push(
            NodeBuilder::new("description")
                .attr("id", d.id.clone())
                .attr("participant", Jid::pn(d.owner.clone()))
                .attr("t", d.time.to_string())
                .children([NodeBuilder::new("body")
                    .string_content(d.body.clone())
                    .build()])
                .build(),
        );
    }
    if group.locked {
        children.push(NodeBuilder::new("locked").build());
    }
    if group.announce {
        children.push(NodeBuilder::new("announcement").build());
    }
    if group.ephemeral > 0 {
        children.push(
            NodeBuilder::new("ephemeral")
                .attr("expiration", group.ephemeral.to_string())
                .build(),
        );
    }
    if group.approval {
        children.push(
            NodeBuilder::new("membership_approval_mode")
                .children([NodeBuilder::new("group_join").attr("state", "on").build()])
                .build(),
        );
    }
    children.push(
        NodeBuilder::new("member_add_mode")
            .string_content(group.member_add_mode.clone())
            .build(),
    );
    if group.is_parent {
        children.push(NodeBuilder::new("parent").build());
    }
    if let Some(parent) = &group.parent {
        children.push(
            NodeBuilder::new("linked_parent")
                .attr("jid", Jid::group(parent.clone()))
                .build(),
        );
    }
    NodeBuilder::new("group")
        .attr("id", group.id.clone())
        .attr("subject", group.subject.clone())
        .attr("addressing_mode", "pn")
        .attr("creator", Jid::pn(group.creator.clone()))
        .attr("creation", group.creation.to_string())
        .attr("s_t", group.subject_time.to_string())
        .attr("s_o", Jid::pn(group.subject_owner.clone()))
        .attr("size", group.participants.len().to_string())
        .children(children)
        .build()
}

/// One `<participant jid error?/>` of a participant-change answer.
fn change(jid: &Jid, error: Option<u16>) -> Node {
    let mut b = NodeBuilder::new("participant").attr("jid", jid.clone());
    if let Some(code) = error {
        b = b.attr("error", code.to_string());
    }
    b.build()
}

/// Answers a `w:g2` IQ.
pub fn answer(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let me = logged_in(ctx)?.phone.clone();
    let kind = attr(iq, "type").unwrap_or_default();
    let to = jid_attr(iq, "to").ok_or_else(|| Refusal::new(400, "bad-request"))?;
    let first = iq
        .children()
        .and_then(|c| c.first())
        .ok_or_else(|| Refusal::new(400, "bad-request"))?;
    let tag = first.tag.to_string();
    if to.user.is_empty() {
        return match (kind.as_str(), tag.as_str()) {
            ("set", "create") => create(ctx.state, &me, first),
            ("get", "participating") => participating(ctx.state, &me),
            ("set", "leave") => leave(ctx.state, &me, first),
            ("set", "invite") => join(ctx.state, &me, first),
            ("get", "invite") => invite_info(ctx.state, first),
            _ => Err(Refusal::new(
                501,
                format!("wamock does not model w:g2 {kind} {tag}"),
            )),
        };
    }
    if to.server != Server::Group {
        return Err(Refusal::new(400, "bad-request"));
    }
    let state = ctx.state;
    let id = to.user.to_string();
    let group = state.groups.get(&id).ok_or_else(not_found)?;
    let role = group.role(&me);
    match (kind.as_str(), tag.as_str()) {
        ("get", "query") => {
            role.ok_or_else(forbidden)?;
            Ok(vec![info_node(&group)])
        }
        ("get", "invite") | ("set", "invite") => {
            if !group.is_admin(&me) {
                return Err(forbidden());
            }
            let code = if kind == "set" {
                let code = super::fresh_code();
                state.groups.with(&id, |g| g.invite_code = code.clone());
                code
            } else {
                group.invite_code.clone()
            };
            Ok(vec![NodeBuilder::new("invite").attr("code", code).build()])
        }
        ("get", "membership_approval_requests") => {
            if !group.is_admin(&me) {
                return Err(forbidden());
            }
            let rows = group.requests.iter().map(|(phone, t)| {
                NodeBuilder::new("membership_approval_request")
                    .attr("jid", Jid::pn(phone.clone()))
                    .attr("request_time", t.to_string())
                    .build()
            });
            Ok(vec![
                NodeBuilder::new("membership_approval_requests")
                    .children(rows)
                    .build(),
            ])
        }
        ("set", "add" | "remove" | "promote" | "demote") => {
            participants(state, &me, &group, &tag, first)
        }
        ("set", "membership_requests_action") => requests_action(state, &me, &group, first),
        ("set", "links") => link(state, &me, &group, first),
        ("set", "unlink") => unlink(state, &me, &group, first),
        ("set", _) => settings(state, &me, &group, first),
        _ => Err(Refusal::new(
            501,
            format!("wamock does not model w:g2 {kind} {tag}"),
        )),
    }
}

/// `<create subject><participant jid/>...<member_add_mode>..</member_add_mode>...</create>`.
fn create(state: &State, me: &str, node: &Node) -> Answer {
    let subject = attr(node, "subject").unwrap_or_default();
    if subject.trim().is_empty() {
        return Err(Refusal::new(400, "bad-request"));
    }
    let members: Vec<String> = children(node, "participant")
        .filter_map(|p| jid_attr(p, "jid"))
        .filter_map(|jid| phone_of(state, &jid))
        .collect();
    let mut group = state.groups.create(me, &subject, &members);
    let add_mode = child(node, "member_add_mode").map(text);
    let approval = child(node, "membership_approval_mode")
        .and_then(|m| child(m, "group_join"))
        .and_then(|j| attr(j, "state"))
        .is_some_and(|s| s == "on");
    let is_parent = child(node, "parent").is_some();
    let parent = child(node, "linked_parent")
        .and_then(|l| jid_attr(l, "jid"))
        .map(|j| j.user.to_string());
    let description = child(node, "description").map(|d| Description {
        id: attr(d, "id").unwrap_or_else(super::fresh_code),
        body: child(d, "body").map(text).unwrap_or_default(),
        owner: me.to_string(),
        time: unix_now(),
    });
    let id = group.id.clone();
    state.groups.with(&id, |g| {
        if let Some(mode) = add_mode.filter(|m| m == "admin_add" || m == "all_member_add") {
            g.member_add_mode = mode;
        }
        g.approval = approval;
        g.is_parent = is_parent;
        g.parent = parent;
        g.description = description;
        group = g.clone();
    });
    tracing::debug!(id = %group.id, creator = me, members = group.participants.len(), "group created");
    let added: Vec<Jid> = group
        .participants
        .iter()
        .filter(|(p, _)| p != me)
        .map(|(p, _)| Jid::pn(p.clone()))
        .collect();
    notify::send(
        state,
        &group,
        me,
        NodeBuilder::new("create")
            .children([info_node(&group)])
            .build(),
        Some(&added),
    );
    Ok(vec![info_node(&group)])
}

/// `<participating><participants/><description/></participating>`.
fn participating(state: &State, me: &str) -> Answer {
    let groups = state.groups.of_member(me);
    Ok(vec![
        NodeBuilder::new("groups")
            .children(groups.iter().map(info_node))
            .build(),
    ])
}

/// `<leave><group id/></leave>`.
fn leave(state: &State, me: &str, node: &Node) -> Answer {
    let mut out = Vec::new();
    for g in children(node, "group") {
        let Some(jid) = jid_attr(g, "id") else {
            continue;
        };
        let before = state.groups.get(&jid.user);
        let left = state.groups.with(&jid.user, |g| g.remove(me));
        match (before, left) {
            (Some(group), Some(true)) => {
                notify::send(
                    state,
                    &group,
                    me,
                    notify::participants_node("remove", &[Jid::pn(me)]),
                    None,
                );
                out.push(NodeBuilder::new("group").attr("id", jid).build());
            }
            _ => {
                out.push(
                    NodeBuilder::new("group")
                        .attr("id", jid)
                        .attr("error", "404")
                        .build(),
                );
            }
        }
    }
    // A leave naming only groups the account is not in is refused as a whole.
    if out.iter().all(|g| attr(g, "error").is_some()) {
        return Err(not_found());
    }
    Ok(vec![NodeBuilder::new("leave").children(out).build()])
}

/// `<invite code/>` set: join (or ask to, with approval on).
fn join(state: &State, me: &str, node: &Node) -> Answer {
    let code = attr(node, "code").unwrap_or_default();
    let group = state.groups.by_code(&code).ok_or_else(not_found)?;
    let jid = group.jid();
    if group.role(me).is_some() {
        return Ok(vec![NodeBuilder::new("group").attr("jid", jid).build()]);
    }
    if group.approval {
        let now = unix_now();
        state.groups.with(&group.id, |g| {
            g.requests.insert(me.to_string(), now);
        });
        let admins: Vec<String> = group
            .participants
            .iter()
            .filter(|(_, r)| r.is_admin())
            .map(|(p, _)| p.clone())
            .collect();
        notify::send_to(
            state,
            &group,
            me,
            NodeBuilder::new("created_membership_requests")
                .attr("request_method", "invite_link")
                .children([NodeBuilder::new("requested_user")
                    .attr("jid", Jid::pn(me))
                    .build()])
                .build(),
            &admins,
        );
        return Ok(vec![
            NodeBuilder::new("membership_approval_request")
                .attr("jid", jid)
                .build(),
        ]);
    }
    state.groups.with(&group.id, |g| g.add(me, Role::Member));
    let group = state.groups.get(&group.id).unwrap_or(group);
    notify::send(
        state,
        &group,
        me,
        NodeBuilder::new("add")
            .attr("reason", "invite")
            .children([change(&Jid::pn(me), None)])
            .build(),
        None,
    );
    Ok(vec![NodeBuilder::new("group").attr("jid", jid).build()])
}

/// `<invite code/>` get: the group behind a code.
fn invite_info(state: &State, node: &Node) -> Answer {
    let code = attr(node, "code").unwrap_or_default();
    let group = state.groups.by_code(&code).ok_or_else(not_found)?;
    Ok(vec![info_node(&group)])
}

/// `<add|remove|promote|demote><participant jid/>...</...>`.
fn participants(state: &State, me: &str, group: &Group, action: &str, node: &Node) -> Answer {
    let may = match action {
        "add" => {
            group.is_admin(me)
                || (group.role(me).is_some() && group.member_add_mode == "all_member_add")
        }
        _ => group.is_admin(me),
    };
    if !may {
        return Err(forbidden());
    }
    let mut rows = Vec::new();
    let mut changed = Vec::new();
    for p in children(node, "participant") {
        let Some(jid) = jid_attr(p, "jid") else {
            continue;
        };
        let Some(phone) = phone_of(state, &jid) else {
            rows.push(change(&jid, Some(if action == "add" { 403 } else { 404 })));
            continue;
        };
        let done = state
            .groups
            .with(&group.id, |g| match action {
                "add" => {
                    if g.role(&phone).is_some() {
                        Err(409)
                    } else {
                        g.add(&phone, Role::Member);
                        Ok(())
                    }
                }
                "remove" => g.remove(&phone).then_some(()).ok_or(404),
                "promote" => g.set_role(&phone, Role::Admin).then_some(()).ok_or(404),
                _ => g.set_role(&phone, Role::Member).then_some(()).ok_or(404),
            })
            .unwrap_or(Err(404));
        match done {
            Ok(()) => {
                rows.push(change(&jid, None));
                changed.push(Jid::pn(phone));
            }
            Err(code) => rows.push(change(&jid, Some(code))),
        }
    }
    if !changed.is_empty() {
        // Removed members still hear about their removal.
        let members = if action == "remove" {
            group.clone()
        } else {
            state.groups.get(&group.id).unwrap_or_else(|| group.clone())
        };
        notify::send(
            state,
            &members,
            me,
            notify::participants_node(action, &changed),
            None,
        );
    }
    Ok(vec![
        NodeBuilder::new_dynamic(action.to_string())
            .children(rows)
            .build(),
    ])
}

/// `<membership_requests_action><approve|reject><participant jid/>...`.
fn requests_action(state: &State, me: &str, group: &Group, node: &Node) -> Answer {
    if !group.is_admin(me) {
        return Err(forbidden());
    }
    let inner = node
        .children()
        .and_then(|c| c.first())
        .ok_or_else(|| Refusal::new(400, "bad-request"))?;
    let approve = match inner.tag.as_ref() {
        "approve" => true,
        "reject" => false,
        _ => return Err(Refusal::new(400, "bad-request")),
    };
    let mut rows = Vec::new();
    let mut approved = Vec::new();
    for p in children(inner, "participant") {
        let Some(jid) = jid_attr(p, "jid") else {
            continue;
        };
        let phone = phone_of(state, &jid);
        let done = phone.as_ref().and_then(|phone| {
            state.groups.with(&group.id, |g| {
                if g.requests.remove(phone).is_none() {
                    return false;
                }
                if approve {
                    g.add(phone, Role::Member);
                }
                true
            })
        });
        if done == Some(true) {
            rows.push(change(&jid, None));
            if approve {
                approved.push(Jid::pn(phone.unwrap_or_default()));
            }
        } else {
            rows.push(change(&jid, Some(404)));
        }
    }
    if !approved.is_empty()
        && let Some(now) = state.groups.get(&group.id)
    {
        notify::send(
            state,
            &now,
            me,
            notify::participants_node("add", &approved),
            None,
        );
    }
    Ok(vec![
        NodeBuilder::new("membership_requests_action")
            .children([NodeBuilder::new_dynamic(inner.tag.to_string())
                .children(rows)
                .build()])
            .build(),
    ])
}

/// `<links><link link_type="sub_group"><group jid/>...`.
fn link(state: &State, me: &str, parent: &Group, node: &Node) -> Answer {
    if !parent.is_admin(me) {
        return Err(forbidden());
    }
    let link = child(node, "link").ok_or_else(|| Refusal::new(400, "bad-request"))?;
    let rows = children(link, "group")
        .filter_map(|g| jid_attr(g, "jid"))
        .map(|jid| {
            let ok = state
                .groups
                .with(&jid.user, |g| {
                    if g.is_parent || !g.is_admin(me) {
                        return false;
                    }
                    g.parent = Some(parent.id.clone());
                    true
                })
                .unwrap_or(false);
            let mut b = NodeBuilder::new("group").attr("jid", jid);
            if !ok {
                b = b.attr("error", "406");
            }
            b.build()
        });
    let rows: Vec<Node> = rows.collect();
    state.groups.with(&parent.id, |g| g.is_parent = true);
    Ok(vec![
        NodeBuilder::new("links")
            .children([NodeBuilder::new("link")
                .attr("link_type", "sub_group")
                .children(rows)
                .build()])
            .build(),
    ])
}

/// `<unlink unlink_type="sub_group"><group jid/>...`.
fn unlink(state: &State, me: &str, parent: &Group, node: &Node) -> Answer {
    if !parent.is_admin(me) {
        return Err(forbidden());
    }
    let rows: Vec<Node> = children(node, "group")
        .filter_map(|g| jid_attr(g, "jid"))
        .map(|jid| {
            let ok = state
                .groups
                .with(&jid.user, |g| {
                    if g.parent.as_deref() != Some(parent.id.as_str()) {
                        return false;
                    }
                    g.parent = None;
                    true
                })
                .unwrap_or(false);
            let mut b = NodeBuilder::new("group").attr("jid", jid);
            if !ok {
                b = b.attr("error", "404");
            }
            b.build()
        })
        .collect();
    Ok(vec![
        NodeBuilder::new("unlink")
            .attr("unlink_type", "sub_group")
            .children(rows)
            .build(),
    ])
}

/// Subject, description and the settings toggles.
fn settings(state: &State, me: &str, group: &Group, node: &Node) -> Answer {
    let role = group.role(me).ok_or_else(forbidden)?;
    let tag = node.tag.to_string();
    // Subject and description: anyone unless locked; everything else: admins.
    let info = matches!(tag.as_str(), "subject" | "description");
    if !(role.is_admin() || (info && !group.locked)) {
        return Err(forbidden());
    }
    let now = unix_now();
    let mut notice = None;
    let result: Result<(), Refusal> = state
        .groups
        .with(&group.id, |g| {
            match tag.as_str() {
                "subject" => {
                    let subject = text(node);
                    if subject.trim().is_empty() {
                        return Err(Refusal::new(400, "bad-request"));
                    }
                    g.subject = subject.clone();
                    g.subject_owner = me.to_string();
                    g.subject_time = now;
                    notice = Some(
                        NodeBuilder::new("subject")
                            .attr("subject", subject)
                            .attr("s_o", Jid::pn(me))
                            .attr("s_t", now.to_string())
                            .build(),
                    );
                }
                "description" => {
                    let prev = attr(node, "prev");
                    let current = g.description.as_ref().map(|d| d.id.clone());
                    if current.is_some() && prev != current {
                        return Err(Refusal::new(409, "conflict"));
                    }
                    let id = attr(node, "id").unwrap_or_else(super::fresh_code);
                    let deleted = attr(node, "delete").as_deref() == Some("true");
                    let body = child(node, "body").map(text).unwrap_or_default();
                    g.description = (!deleted && !body.is_empty()).then(|| Description {
                        id: id.clone(),
                        body: body.clone(),
                        owner: me.to_string(),
                        time: now,
                    });
                    let mut b = NodeBuilder::new("description").attr("id", id);
                    b = if g.description.is_some() {
                        b.children([NodeBuilder::new("body").string_content(body).build()])
                    } else {
                        b.children([NodeBuilder::new("delete").build()])
                    };
                    notice = Some(b.build());
                }
                "locked" | "unlocked" => {
                    g.locked = tag == "locked";
                    notice = Some(NodeBuilder::new_dynamic(tag.clone()).build());
                }
                "announcement" | "not_announcement" => {
                    g.announce = tag == "announcement";
                    notice = Some(
                        NodeBuilder::new(if g.announce {
                            "announcement"
                        } else {
                            "not_announcement"
                        })
                        .build(),
                    );
                }
                "membership_approval_mode" => {
                    let on = child(node, "group_join")
                        .and_then(|j| attr(j, "state"))
                        .is_some_and(|s| s == "on");
                    g.approval = on;
                    notice = Some(node.clone());
                }
                "member_add_mode" => {
                    let mode = text(node);
                    if mode != "admin_add" && mode != "all_member_add" {
                        return Err(Refusal::new(400, "bad-request"));
                    }
                    g.member_add_mode = mode;
                    notice = Some(node.clone());
                }
                "ephemeral" | "not_ephemeral" => {
                    g.ephemeral = attr(node, "expiration")
                        .and_then(|e| e.parse().ok())
                        .unwrap_or(0);
                    notice = Some(node.clone());
                }
                other => {
                    return Err(Refusal::new(
                        501,
                        format!("wamock does not model the group setting {other}"),
                    ));
                }
            }
            Ok(())
        })
        .unwrap_or_else(|| Err(not_found()));
    result?;
    if let (Some(notice), Some(now)) = (notice, state.groups.get(&group.id)) {
        notify::send(state, &now, me, notice, None);
    }
    Ok(Vec::new())
}

/// `w:profile:picture` with a group `target`: set (`<picture type="image">bytes`), remove
/// (no child), get.
pub fn picture(ctx: &IqContext<'_>, iq: &Node, target: &Jid) -> Answer {
    let me = logged_in(ctx)?.phone.clone();
    let state = ctx.state;
    let group = state.groups.get(&target.user).ok_or_else(not_found)?;
    match attr(iq, "type").as_deref() {
        Some("set") => {
            if !(group.is_admin(&me) || (group.role(&me).is_some() && !group.locked)) {
                return Err(forbidden());
            }
            let bytes = child(iq, "picture").map(|p| match &p.content {
                Some(NodeContent::Bytes(b)) => b.clone(),
                Some(NodeContent::String(s)) => s.as_bytes().to_vec(),
                _ => Vec::new(),
            });
            let stored = match bytes {
                Some(b) if !b.is_empty() => Some(crate::profile::Picture::of(b)),
                Some(_) => return Err(Refusal::new(400, "bad-request")),
                None => None,
            };
            let id = stored.as_ref().map(|p| p.id.clone());
            state.groups.with(&group.id, |g| g.picture = stored);
            if let Some(now) = state.groups.get(&group.id) {
                let mut b = NodeBuilder::new(if id.is_some() { "set" } else { "delete" })
                    .attr("jid", Jid::pn(me.clone()));
                if let Some(id) = &id {
                    b = b.attr("id", id.clone());
                }
                notify::send_picture(state, &now, &me, b.build());
            }
            Ok(id
                .map(|id| vec![NodeBuilder::new("picture").attr("id", id).build()])
                .unwrap_or_default())
        }
        Some("get") => {
            let kind = child(iq, "picture")
                .and_then(|p| attr(p, "type"))
                .unwrap_or_else(|| "image".into());
            Ok(vec![crate::profile::picture_node(
                &target.user,
                group.picture.as_ref(),
                &kind,
            )])
        }
        _ => Err(Refusal::new(400, "bad-request")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use wacore::iq::groups::GroupInfoResponse;
    use wacore::protocol::ProtocolNode;

    #[test]
    fn the_info_node_parses_as_whatsapp_rust_reads_it() {
        let group = Group {
            id: "120363000000000001".into(),
            subject: "Team".into(),
            subject_owner: "5511999990001".into(),
            subject_time: 10,
            description: Some(Description {
                id: "D1".into(),
                body: "About".into(),
                owner: "5511999990001".into(),
                time: 11,
            }),
            creator: "5511999990001".into(),
            creation: 9,
            participants: vec![
                ("5511999990001".into(), Role::SuperAdmin),
                ("5511999990002".into(), Role::Admin),
                ("5511999990003".into(), Role::Member),
            ],
            announce: true,
            locked: true,
            approval: true,
            member_add_mode: "admin_add".into(),
            ephemeral: 0,
            invite_code: "X".into(),
            requests: BTreeMap::new(),
            picture: None,
            is_parent: false,
            parent: Some("120363000000000009".into()),
        };
        let node = info_node(&group);
        let parsed = GroupInfoResponse::try_from_node_ref(&node.as_node_ref()).expect("parses");
        assert_eq!(parsed.id.to_string(), "120363000000000001@g.us");
        assert_eq!(parsed.subject.as_str(), "Team");
        assert_eq!(parsed.participants.len(), 3);
        assert!(parsed.participants[0].participant_type.is_admin());
        assert!(!parsed.participants[2].participant_type.is_admin());
        assert_eq!(parsed.description.as_deref(), Some("About"));
        assert_eq!(parsed.description_id.as_deref(), Some("D1"));
        assert!(parsed.is_locked && parsed.is_announcement && parsed.membership_approval);
        assert_eq!(
            parsed.parent_group_jid.map(|j| j.to_string()).as_deref(),
            Some("120363000000000009@g.us")
        );
        assert_eq!(parsed.creation_time, Some(9));
    }
}
