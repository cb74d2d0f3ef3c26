//! whatsmeow's group objects as OnWapp serialises them (Go field names, embedded structs
//! flattened, JIDs as strings, times as RFC 3339): `GroupInfo`, `GroupParticipant`,
//! `GroupParticipantRequest`, `GroupLinkTarget`; built from whatsapp-rust's types.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use whatsapp_rust::{
    Jid,
    features::{
        CommunitySubgroup, GroupMetadata, GroupParticipant, MemberAddMode, MembershipRequest,
        ParticipantChangeResponse,
    },
};

/// Go's zero `time.Time` for an unknown time.
const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn time(secs: Option<u64>) -> String {
    secs.and_then(|s| i64::try_from(s).ok())
        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| ZERO_TIME.to_string())
}

fn jid(j: Option<&Jid>) -> String {
    j.map(ToString::to_string).unwrap_or_default()
}

/// whatsmeow `GroupParticipant`.
pub fn participant(p: &GroupParticipant) -> Value {
    let (pn, lid) = if p.jid.is_lid() {
        (p.phone_number.as_ref(), Some(&p.jid))
    } else {
        (Some(&p.jid), p.lid.as_ref())
    };
    json!({
        "JID": p.jid.to_string(),
        "PhoneNumber": jid(pn),
        "LID": jid(lid),
        "IsAdmin": p.is_admin(),
        "IsSuperAdmin": p.is_super_admin(),
        "DisplayName": p.details.as_ref().and_then(|d| d.display_name.as_ref()).map(|n| n.to_string()).unwrap_or_default(),
        "Error": 0,
        "AddRequest": null,
    })
}

/// whatsmeow `GroupParticipant` for one answer of a participant change: `Error` is the
/// code WhatsApp refused this member with (0: done).
pub fn participant_change(r: &ParticipantChangeResponse) -> Value {
    let error: i64 = r.error.as_deref().and_then(|e| e.parse().ok()).unwrap_or(0);
    json!({
        "JID": r.jid.to_string(),
        "PhoneNumber": jid(r.phone_number.as_ref()),
        "LID": if r.jid.is_lid() { r.jid.to_string() } else { String::new() },
        "IsAdmin": false,
        "IsSuperAdmin": false,
        "DisplayName": "",
        "Error": error,
        "AddRequest": r.add_request.as_ref().map(|a| json!({
            "Code": a.code,
            "Expiration": time(Some(a.expiration)),
        })),
    })
}

/// whatsmeow `GroupInfo`.
pub fn info(g: &GroupMetadata) -> Value {
    let topic = g.description.clone().unwrap_or_default();
    json!({
        "JID": g.id.to_string(),
        "OwnerJID": jid(g.creator.as_ref()),
        "OwnerPN": jid(g.creator_pn.as_ref()),
        "Name": g.subject,
        "NameSetAt": time(g.subject_time),
        "NameSetBy": jid(g.subject_owner.as_ref()),
        "NameSetByPN": jid(g.subject_owner_pn.as_ref()),
        "Topic": topic,
        "TopicID": g.description_id.clone().unwrap_or_default(),
        "TopicSetAt": time(g.description_time),
        "TopicSetBy": jid(g.description_owner.as_ref()),
        "TopicSetByPN": jid(g.description_owner_pn.as_ref()),
        "TopicDeleted": false,
        "IsLocked": g.is_locked,
        "IsAnnounce": g.is_announcement,
        "AnnounceVersionID": "",
        "IsEphemeral": g.ephemeral.and_then(|e| e.expiration).is_some_and(|e| e > 0),
        "DisappearingTimer": g.ephemeral.and_then(|e| e.expiration).unwrap_or(0),
        "IsIncognito": g.is_incognito,
        "IsParent": g.is_parent_group,
        "DefaultMembershipApprovalMode": if g.parent_membership_approval_required { "request_required" } else { "" },
        "LinkedParentJID": jid(g.parent_group_jid.as_ref()),
        "IsDefaultSubGroup": g.is_default_sub_group,
        "IsJoinApprovalRequired": g.membership_approval,
        "AddressingMode": g.addressing_mode.as_str(),
        "GroupCreated": time(g.creation_time),
        "CreatorCountryCode": g.creator_country_code.clone().unwrap_or_default(),
        "ParticipantVersionID": g.participant_version_id.clone().unwrap_or_default(),
        "Participants": g.participants.iter().map(participant).collect::<Vec<_>>(),
        "ParticipantCount": g.size.map(|s| s as usize).unwrap_or(g.participants.len()),
        "MemberAddMode": match g.member_add_mode {
            Some(MemberAddMode::AdminAdd) => "admin_add",
            Some(MemberAddMode::AllMemberAdd) => "all_member_add",
            _ => "",
        },
        "Suspended": g.is_suspended,
    })
}

/// whatsmeow `GroupParticipantRequest`.
pub fn join_request(r: &MembershipRequest) -> Value {
    json!({
        "JID": r.jid.to_string(),
        "RequestedAt": time(r.request_time),
    })
}

/// whatsmeow `GroupLinkTarget`.
pub fn link_target(s: &CommunitySubgroup) -> Value {
    json!({
        "JID": s.id.to_string(),
        "Name": s.subject,
        "NameSetAt": time(s.creation),
        "NameSetBy": jid(s.owner.as_ref()),
        "NameSetByPN": "",
        "IsDefaultSubGroup": s.is_default_sub_group,
    })
}
