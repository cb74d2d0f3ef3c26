//! Every whatsapp-rust event that is neither a message nor a change of the session's
//! connection, mapped once to OnWapp's event (wire-facts 9.3 keys) and to what it changes in
//! our store: receipts move stored messages forward, contact events update `contacts`.

use serde_json::{Value, json};
use uuid::Uuid;
use whatsapp_rust::{
    Jid,
    types::{
        events::{BusinessUpdateType, Event},
        message::MessageSource,
        presence::{ChatPresence, ChatPresenceMedia, ReceiptType},
    },
    wacore::stanza::groups::GroupNotificationAction,
};

use super::payload::{ZERO_TIME, event, jid, opt_jid, proto, time};
use super::{Envelope, info};
use crate::store::{
    Store, StoreResult,
    events::{ContactPatch, NewEvent},
};

/// What one event writes: outbox rows only, or with the rows they change.
#[derive(Debug, Clone)]
pub enum Mapped {
    Outbox(Vec<NewEvent>),
    /// Stored messages `ids` move forward to `status`.
    Receipt {
        ids: Vec<String>,
        status: Option<&'static str>,
        event: NewEvent,
    },
    Contact {
        patch: ContactPatch,
        events: Vec<NewEvent>,
    },
    /// A history sync chunk, decoded (off the runtime) when applied.
    History {
        session: String,
        sync: Box<whatsapp_rust::types::events::LazyHistorySync>,
        me: Me,
    },
}

/// Who the session is, to tell when a group change is about us.
#[derive(Debug, Clone, Default)]
pub struct Me {
    pub pn: Option<Jid>,
    pub lid: Option<Jid>,
}

impl Me {
    fn is(&self, j: &Jid) -> bool {
        [&self.pn, &self.lid]
            .into_iter()
            .flatten()
            .any(|m| m.user == j.user && m.server == j.server)
    }
}

/// The event(s) of `e`; `None` for events OnWapp has no name for (and for messages and the
/// session lifecycle, mapped elsewhere).
pub fn map(session: &str, e: &Event, me: &Me) -> Option<Mapped> {
    let one = |name, fields| Some(Mapped::Outbox(vec![event(session, name, fields)]));
    match e {
        Event::Receipt(r) => {
            let status = match &r.r#type {
                ReceiptType::Delivered => Some("delivered"),
                ReceiptType::Read | ReceiptType::ReadSelf => Some("read"),
                ReceiptType::Played | ReceiptType::PlayedSelf => Some("played"),
                _ => None,
            };
            let wire = match &r.r#type {
                ReceiptType::Delivered => "",
                other => other.as_wire_str(),
            };
            let ids: Vec<String> = r.message_ids.iter().map(ToString::to_string).collect();
            let mut fields = source(&r.source);
            extend(
                &mut fields,
                json!({
                    "MessageIDs": ids,
                    "Timestamp": time(&r.timestamp),
                    "Type": wire,
                    "MessageSender": "",
                    "status": status,
                }),
            );
            Some(Mapped::Receipt {
                ids,
                status,
                event: event(session, "message.receipt", fields),
            })
        }
        Event::UndecryptableMessage(u) => {
            let envelope = Envelope::received(&u.info);
            one(
                "message.undecryptable",
                json!({
                    "Info": info::info(&envelope),
                    "IsUnavailable": u.is_unavailable,
                    "UnavailableType": u.unavailable_type.as_str(),
                    "DecryptFailMode": u.decrypt_fail_mode.as_str(),
                }),
            )
        }
        Event::Presence(p) => one(
            "presence.update",
            json!({
                "From": jid(&p.from),
                "Unavailable": p.unavailable,
                "LastSeen": p.last_seen.as_ref().map_or_else(|| ZERO_TIME.to_string(), time),
            }),
        ),
        Event::ChatPresence(c) => {
            let mut fields = source(&c.source);
            extend(
                &mut fields,
                json!({
                    "State": match c.state {
                        ChatPresence::Composing => "composing",
                        ChatPresence::Paused => "paused",
                    },
                    "Media": match c.media {
                        ChatPresenceMedia::Audio => "audio",
                        ChatPresenceMedia::Text => "",
                    },
                }),
            );
            one("chat.presence", fields)
        }
        Event::PictureUpdate(p) => Some(Mapped::Contact {
            patch: ContactPatch {
                jid: p.jid.to_non_ad().to_string(),
                picture_id: p.picture_id.clone(),
                picture_removed: p.removed,
                ..Default::default()
            },
            events: vec![event(
                session,
                "contact.picture",
                json!({
                    "JID": jid(&p.jid),
                    "Author": opt_jid(p.author.as_ref()),
                    "Timestamp": time(&p.timestamp),
                    "Remove": p.removed,
                    "PictureID": p.picture_id.clone().unwrap_or_default(),
                }),
            )],
        }),
        Event::UserAboutUpdate(a) => Some(Mapped::Contact {
            patch: ContactPatch {
                jid: a.jid.to_non_ad().to_string(),
                about: Some(a.status.clone()),
                ..Default::default()
            },
            events: vec![event(
                session,
                "contact.about",
                json!({"JID": jid(&a.jid), "Status": a.status, "Timestamp": time(&a.timestamp)}),
            )],
        }),
        Event::ContactUpdate(c) => Some(Mapped::Contact {
            patch: ContactPatch {
                jid: c.jid.to_non_ad().to_string(),
                full_name: c.action.full_name.clone(),
                first_name: c.action.first_name.clone(),
                ..Default::default()
            },
            events: vec![event(
                session,
                "contact.update",
                json!({
                    "JID": jid(&c.jid),
                    "Timestamp": time(&c.timestamp),
                    "Action": proto(&*c.action),
                    "FromFullSync": c.from_full_sync,
                }),
            )],
        }),
        Event::BusinessStatusUpdate(b)
            if b.update_type == BusinessUpdateType::VerifiedNameChanged =>
        {
            Some(Mapped::Contact {
                patch: ContactPatch {
                    jid: b.jid.to_non_ad().to_string(),
                    business_name: b.verified_name.clone(),
                    ..Default::default()
                },
                events: vec![event(
                    session,
                    "contact.business_name",
                    json!({
                        "JID": jid(&b.jid),
                        "OldBusinessName": "",
                        "NewBusinessName": b.verified_name.clone().unwrap_or_default(),
                        "Timestamp": time(&b.timestamp),
                    }),
                )],
            })
        }
        Event::IdentityChange(i) => one(
            "privacy.identity_change",
            json!({
                "JID": jid(&i.user),
                "Timestamp": super::payload::now(),
                "Implicit": i.implicit,
            }),
        ),
        Event::IncomingCall(c) => {
            let name = match c.action.wire_tag() {
                "offer" => "call.offer",
                "offer_notice" => "call.offer_notice",
                "preaccept" => "call.pre_accept",
                "accept" => "call.accept",
                "reject" => "call.reject",
                "terminate" => "call.terminate",
                "transport" => "call.transport",
                "relaylatency" => "call.relay_latency",
                _ => return None,
            };
            one(
                name,
                json!({
                    "From": jid(&c.from),
                    "Timestamp": time(&c.timestamp),
                    "CallCreator": jid(c.action.call_creator()),
                    "CallID": c.action.call_id(),
                    "GroupJID": opt_jid(call_group(&c.action)),
                    "RemotePlatform": c.platform.clone().unwrap_or_default(),
                    "RemoteVersion": c.version.clone().unwrap_or_default(),
                    "Reason": call_reason(&c.action),
                    "Offline": c.offline,
                    "Data": proto(&c.action),
                }),
            )
        }
        Event::MissedCall(m) => one(
            "call.terminate",
            json!({
                "From": jid(&m.from),
                "Timestamp": time(&m.timestamp),
                "CallCreator": jid(&m.from),
                "CallID": m.call_id,
                "Reason": format!("missed_{}", proto(&m.reason).as_str().unwrap_or("unknown")),
            }),
        ),
        Event::CallEndedElsewhere(c) => one(
            "call.terminate",
            json!({
                "From": jid(&c.from),
                "Timestamp": time(&c.timestamp),
                "CallCreator": jid(&c.from),
                "CallID": c.call_id,
                "Reason": format!("{}_elsewhere", proto(&c.outcome).as_str().unwrap_or("ended")),
            }),
        ),
        Event::GroupUpdate(g) => Some(Mapped::Outbox(group(session, g, me))),
        Event::NewsletterLiveUpdate(n) => one(
            "newsletter.live_update",
            json!({
                "JID": jid(&n.newsletter_jid),
                "Time": super::payload::now(),
                "Messages": proto(&n.messages),
            }),
        ),
        Event::HistorySync(h) => Some(Mapped::History {
            session: session.to_string(),
            sync: h.clone(),
            me: me.clone(),
        }),
        Event::OfflineSyncPreview(p) => one(
            "sync.offline_preview",
            json!({
                "Total": p.total,
                "AppDataChanges": p.app_data_changes,
                "Messages": p.messages,
                "Notifications": p.notifications,
                "Receipts": p.receipts,
            }),
        ),
        Event::OfflineSyncCompleted(c) => one("sync.offline_completed", json!({"Count": c.count})),
        Event::PinUpdate(u) => one(
            "chat.pin",
            app_state(&u.jid, &u.timestamp, &*u.action, u.from_full_sync),
        ),
        Event::MuteUpdate(u) => one(
            "chat.mute",
            app_state(&u.jid, &u.timestamp, &*u.action, u.from_full_sync),
        ),
        Event::ArchiveUpdate(u) => one(
            "chat.archive",
            app_state(&u.jid, &u.timestamp, &*u.action, u.from_full_sync),
        ),
        Event::MarkChatAsReadUpdate(u) => one(
            "chat.mark_as_read",
            app_state(&u.jid, &u.timestamp, &*u.action, u.from_full_sync),
        ),
        Event::DeleteChatUpdate(u) => one(
            "chat.delete",
            app_state(&u.jid, &u.timestamp, &*u.action, u.from_full_sync),
        ),
        Event::ClearChatUpdate(u) => one(
            "chat.clear",
            app_state(&u.jid, &u.timestamp, &*u.action, u.from_full_sync),
        ),
        Event::StarUpdate(u) => {
            let mut f = app_state(&u.chat_jid, &u.timestamp, &*u.action, u.from_full_sync);
            extend(
                &mut f,
                message_ref(u.participant_jid.as_ref(), &u.message_id, u.from_me),
            );
            one("chat.star", f)
        }
        Event::DeleteMessageForMeUpdate(u) => {
            let mut f = app_state(&u.chat_jid, &u.timestamp, &*u.action, u.from_full_sync);
            extend(
                &mut f,
                message_ref(u.participant_jid.as_ref(), &u.message_id, u.from_me),
            );
            one("chat.delete_for_me", f)
        }
        Event::LabelEditUpdate(u) => one(
            "chat.label_edit",
            json!({
                "LabelID": u.label_id,
                "Timestamp": time(&u.timestamp),
                "Action": proto(&*u.action),
                "FromFullSync": u.from_full_sync,
            }),
        ),
        Event::LabelAssociationUpdate(u) => one(
            "chat.label_association",
            json!({
                "JID": jid(&u.chat_jid),
                "LabelID": u.label_id,
                "Timestamp": time(&u.timestamp),
                "Action": proto(&*u.action),
                "FromFullSync": u.from_full_sync,
            }),
        ),
        Event::UserStatusMuteUpdate(u) => one(
            "sync.app_state",
            json!({
                "Index": ["userStatusMute", jid(&u.jid)],
                "JID": jid(&u.jid),
                "Timestamp": time(&u.timestamp),
                "Action": proto(&*u.action),
                "FromFullSync": u.from_full_sync,
            }),
        ),
        _ => None,
    }
}

/// Writes what `m` changes and its events, in one transaction.
pub async fn apply(store: &dyn Store, session_id: Uuid, m: &Mapped) -> StoreResult<()> {
    match m {
        Mapped::Outbox(events) => store.record_events(session_id, events).await,
        Mapped::Receipt { ids, status, event } => {
            let status = status.unwrap_or("");
            store
                .record_receipt(session_id, ids, status, std::slice::from_ref(event))
                .await
                .map(|_| ())
        }
        Mapped::Contact { patch, events } => store.record_contact(session_id, patch, events).await,
        Mapped::History { session, sync, me } => {
            let (session, sync, me) = (session.clone(), sync.clone(), me.clone());
            let decoded =
                tokio::task::spawn_blocking(move || super::history::decode(&session, &sync, &me))
                    .await;
            let Ok((rows, event)) = decoded else {
                return Ok(());
            };
            store
                .record_history(
                    session_id,
                    &rows.chats,
                    &rows.messages,
                    &rows.contacts,
                    std::slice::from_ref(&event),
                )
                .await
                .map(|_| ())
        }
    }
}

/// A MessageSource flattened, as whatsmeow embeds it.
fn source(s: &MessageSource) -> Value {
    json!({
        "Chat": jid(&s.chat),
        "Sender": jid(&s.sender),
        "IsFromMe": s.is_from_me,
        "IsGroup": s.is_group,
        "AddressingMode": s.addressing_mode.as_ref().map_or("", |m| m.as_str()),
        "SenderAlt": opt_jid(s.sender_alt.as_ref()),
        "RecipientAlt": opt_jid(s.recipient_alt.as_ref()),
        "BroadcastListOwner": opt_jid(s.broadcast_list_owner.as_ref()),
    })
}

fn extend(into: &mut Value, more: Value) {
    if let (Value::Object(a), Value::Object(b)) = (into, more) {
        a.extend(b);
    }
}

fn app_state<T: serde::Serialize>(
    j: &Jid,
    at: &chrono::DateTime<chrono::Utc>,
    action: &T,
    full_sync: bool,
) -> Value {
    json!({
        "JID": jid(j),
        "Timestamp": time(at),
        "Action": proto(action),
        "FromFullSync": full_sync,
    })
}

fn message_ref(sender: Option<&Jid>, id: &str, from_me: bool) -> Value {
    json!({"SenderJID": opt_jid(sender), "MessageID": id, "IsFromMe": from_me})
}

fn call_group(a: &whatsapp_rust::wacore::types::call::CallAction) -> Option<&Jid> {
    match a {
        whatsapp_rust::wacore::types::call::CallAction::Offer { group_jid, .. } => {
            group_jid.as_ref()
        }
        _ => None,
    }
}

fn call_reason(a: &whatsapp_rust::wacore::types::call::CallAction) -> String {
    use whatsapp_rust::wacore::types::call::CallAction;
    match a {
        CallAction::Reject { reason, .. } | CallAction::Terminate { reason, .. } => {
            reason.clone().unwrap_or_default()
        }
        _ => String::new(),
    }
}

/// `group.update` with whatsmeow's GroupInfo keys; participant changes also as
/// `group.participants`, and being added as `group.joined`.
fn group(session: &str, g: &whatsapp_rust::types::events::GroupUpdate, me: &Me) -> Vec<NewEvent> {
    use GroupNotificationAction as A;
    let jids = |ps: &[whatsapp_rust::wacore::stanza::groups::GroupParticipantInfo]| -> Vec<String> {
        ps.iter().map(|p| jid(&p.jid)).collect()
    };
    let mut fields = json!({
        "JID": jid(&g.group_jid),
        "Notify": g.notify.clone().unwrap_or_default(),
        "Sender": opt_jid(g.participant.as_ref()),
        "SenderPN": opt_jid(g.participant_pn.as_ref()),
        "Timestamp": time(&g.timestamp),
        "Action": proto(&g.action),
    });
    let mut participants = None;
    let specific = match &g.action {
        A::Add {
            participants: ps,
            reason,
        } => {
            participants = Some(("add", jids(ps)));
            json!({"Join": jids(ps), "JoinReason": reason.clone().unwrap_or_default()})
        }
        A::Remove {
            participants: ps, ..
        } => {
            participants = Some(("remove", jids(ps)));
            json!({"Leave": jids(ps)})
        }
        A::Promote { participants: ps } => {
            participants = Some(("promote", jids(ps)));
            json!({"Promote": jids(ps)})
        }
        A::Demote { participants: ps } => {
            participants = Some(("demote", jids(ps)));
            json!({"Demote": jids(ps)})
        }
        A::Subject {
            subject,
            subject_owner,
            ..
        } => json!({
            "Name": {"Name": subject, "NameSetBy": opt_jid(subject_owner.as_ref())},
        }),
        A::Description { id, description } => json!({
            "Topic": {"Topic": description.clone().unwrap_or_default(), "TopicID": id,
                      "TopicDeleted": description.is_none()},
        }),
        A::Locked { .. } => json!({"Locked": {"IsLocked": true}}),
        A::Unlocked => json!({"Locked": {"IsLocked": false}}),
        A::Announce => json!({"Announce": {"IsAnnounce": true}}),
        A::NotAnnounce => json!({"Announce": {"IsAnnounce": false}}),
        A::Ephemeral { expiration, .. } => json!({
            "Ephemeral": {"IsEphemeral": *expiration > 0, "DisappearingTimer": expiration},
        }),
        A::MembershipApprovalMode { enabled } => json!({
            "MembershipApprovalMode": {"IsJoinApprovalRequired": enabled},
        }),
        _ => json!({}),
    };
    extend(&mut fields, specific);
    let mut out = vec![event(session, "group.update", fields)];
    if let Some((action, who)) = participants {
        let joined = action == "add"
            && matches!(&g.action, A::Add { participants: ps, .. } if ps.iter().any(|p| me.is(&p.jid)));
        out.push(event(
            session,
            "group.participants",
            json!({
                "JID": jid(&g.group_jid),
                "Action": action,
                "Participants": who,
                "Sender": opt_jid(g.participant.as_ref()),
                "Timestamp": time(&g.timestamp),
            }),
        ));
        if joined {
            out.push(event(
                session,
                "group.joined",
                json!({
                    "JID": jid(&g.group_jid),
                    "Reason": "",
                    "Type": "",
                    "Sender": opt_jid(g.participant.as_ref()),
                    "SenderPN": opt_jid(g.participant_pn.as_ref()),
                    "Notify": g.notify.clone().unwrap_or_default(),
                }),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::types::events::{GroupUpdate, PictureUpdate, PresenceUpdate, Receipt};
    use whatsapp_rust::wacore::stanza::groups::GroupParticipantInfo;
    use whatsapp_rust::wacore::types::call::{CallAction, IncomingCall};

    fn j(s: &str) -> Jid {
        s.parse().expect("jid")
    }

    fn at() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp(1_790_000_000, 0).expect("time")
    }

    fn outbox(m: Option<Mapped>) -> Vec<NewEvent> {
        match m {
            Some(Mapped::Outbox(e)) => e,
            other => panic!("not outbox-only: {other:?}"),
        }
    }

    #[test]
    fn receipts_move_messages_forward_and_keep_whatsmeows_type() {
        let r = Receipt::builder()
            .source(MessageSource {
                chat: j("5511900000002@s.whatsapp.net"),
                sender: j("5511900000002:0@s.whatsapp.net"),
                ..Default::default()
            })
            .message_ids(vec!["A1".into(), "A2".into()])
            .timestamp(at())
            .r#type(ReceiptType::Read)
            .offline(false)
            .build();
        let Some(Mapped::Receipt { ids, status, event }) =
            map("s", &Event::Receipt(r), &Me::default())
        else {
            panic!("a receipt");
        };
        assert_eq!(
            (ids, status),
            (vec!["A1".to_string(), "A2".into()], Some("read"))
        );
        assert_eq!(event.name, "message.receipt");
        let p = &event.payload;
        assert_eq!(p["Type"], "read");
        assert_eq!(p["MessageIDs"], json!(["A1", "A2"]));
        assert_eq!(p["Chat"], "5511900000002@s.whatsapp.net");
        assert_eq!(p["Timestamp"], "2026-09-21T14:13:20Z");
        assert_eq!(p["IsFromMe"], false);
    }

    #[test]
    fn presence_with_and_without_last_seen() {
        let seen = |last: Option<chrono::DateTime<chrono::Utc>>| {
            let p = PresenceUpdate::builder()
                .from(j("5511900000002@s.whatsapp.net"))
                .unavailable(last.is_some())
                .maybe_last_seen(last)
                .build();
            outbox(map("s", &Event::Presence(p), &Me::default())).remove(0)
        };
        let away = seen(Some(at()));
        assert_eq!(away.name, "presence.update");
        assert_eq!(
            (&away.payload["Unavailable"], &away.payload["LastSeen"]),
            (&json!(true), &json!("2026-09-21T14:13:20Z"))
        );
        assert_eq!(seen(None).payload["LastSeen"], ZERO_TIME);
    }

    #[test]
    fn call_offers_name_the_call() {
        let call = IncomingCall::builder()
            .from(j("5511900000002:0@s.whatsapp.net"))
            .stanza_id("S1".into())
            .platform("android".into())
            .timestamp(at())
            .offline(false)
            .action(CallAction::Offer {
                call_id: "C1".into(),
                call_creator: j("5511900000002:0@s.whatsapp.net"),
                caller_pn: None,
                caller_country_code: None,
                device_class: None,
                joinable: false,
                is_video: true,
                audio: vec![],
                group_jid: None,
            })
            .build();
        let e = outbox(map("s", &Event::IncomingCall(call), &Me::default())).remove(0);
        assert_eq!(e.name, "call.offer");
        assert_eq!(e.payload["CallID"], "C1");
        assert_eq!(e.payload["CallCreator"], "5511900000002@s.whatsapp.net");
        assert_eq!(e.payload["RemotePlatform"], "android");
        assert_eq!(e.payload["GroupJID"], "");
    }

    #[test]
    fn being_added_to_a_group_is_an_update_a_participant_change_and_a_join() {
        let me = Me {
            pn: Some(j("5511900000001:3@s.whatsapp.net")),
            lid: None,
        };
        let added = GroupParticipantInfo {
            jid: j("5511900000001@s.whatsapp.net"),
            phone_number: None,
            display_name: None,
            r#type: None,
            lid: None,
            username: None,
            join_time: None,
            group_history_sent_state: None,
        };
        let g = GroupUpdate::builder()
            .group_jid(j("120363000000000001@g.us"))
            .participant(j("5511900000002@s.whatsapp.net"))
            .timestamp(at())
            .is_lid_addressing_mode(false)
            .action(GroupNotificationAction::Add {
                participants: vec![added],
                reason: None,
            })
            .build();
        let events = outbox(map("s", &Event::GroupUpdate(g), &me));
        let names: Vec<&str> = events.iter().map(|e| e.name).collect();
        assert_eq!(
            names,
            ["group.update", "group.participants", "group.joined"]
        );
        assert_eq!(
            events[0].payload["Join"],
            json!(["5511900000001@s.whatsapp.net"])
        );
        assert_eq!(events[1].payload["Action"], "add");
        assert_eq!(events[2].payload["JID"], "120363000000000001@g.us");
    }

    #[test]
    fn a_new_picture_updates_the_contact() {
        let p = PictureUpdate::builder()
            .jid(j("5511900000002@s.whatsapp.net"))
            .timestamp(at())
            .removed(false)
            .picture_id("P9".into())
            .build();
        let Some(Mapped::Contact { patch, events }) =
            map("s", &Event::PictureUpdate(p), &Me::default())
        else {
            panic!("a contact change");
        };
        assert_eq!(patch.picture_id.as_deref(), Some("P9"));
        assert_eq!(events[0].name, "contact.picture");
        assert_eq!(events[0].payload["PictureID"], "P9");
    }
}
