//! Request and response shapes of every contract endpoint, one module per contract section.
//!
//! Field names follow `api-reference.md`; 0.2.8 spellings are accepted through serde aliases.
//! No validation happens here. [`schemas`] lists every type for the OpenAPI components.

pub mod bounded;
pub mod calls;
pub mod chat;
pub mod chatwoot;
pub mod cluster;
pub mod common;
pub mod communities;
pub mod contacts;
pub mod group_info;
pub mod groups;
pub mod media;
pub mod messages;
pub mod newsletters;
pub mod presence;
pub mod profile;
pub mod sessions;
pub mod settings;
pub mod status;
pub mod webhooks;

pub use self::{
    calls::*, chat::*, chatwoot::*, cluster::*, common::*, communities::*, contacts::*, groups::*,
    media::*, messages::*, newsletters::*, presence::*, profile::*, sessions::*, settings::*,
    status::*, webhooks::*,
};

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

/// A named OpenAPI component schema.
pub type NamedSchema = (String, RefOr<Schema>);

/// Pushes each type's own schema, then the schemas it references (nested types).
macro_rules! register {
    ($out:ident; $($t:ty),* $(,)?) => {
        $(
            $out.push((
                <$t as utoipa::ToSchema>::name().into_owned(),
                <$t as utoipa::PartialSchema>::schema(),
            ));
            <$t as utoipa::ToSchema>::schemas(&mut $out);
        )*
    };
}

/// Every DTO of this module as `(component name, schema)`, each name once, in a stable order.
pub fn schemas() -> Vec<NamedSchema> {
    let mut all: Vec<NamedSchema> = Vec::new();
    register_all(&mut all);
    let mut seen = std::collections::HashSet::new();
    all.retain(|(name, _)| seen.insert(name.clone()));
    all
}

/// Schema of the component called `name`, if it is one of ours.
pub fn schema(name: &str) -> Option<RefOr<Schema>> {
    schemas()
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s)
}

fn register_all(out: &mut Vec<NamedSchema>) {
    let mut v = Vec::new();
    register!(v;
        // common
        ErrorBody, MessageResponse, EmptyResponse, SimpleStatusResponse, SendResponse, Quoted,
        PictureUrlResponse, PictureIdResponse,
        // sessions
        HealthResponse, SessionStats, SessionResponse, SessionListResponse, CreateSessionRequest,
        ConnectResponse, QrResponse, QrQuery, PairPhoneRequest, PairPhoneResponse,
        // profile
        ProfileResponse, OwnProfile, SetStatusRequest, SetStatusResponse, SetPushNameRequest,
        SetPushNameResponse, SetProfilePictureRequest,
        // settings
        SettingsResponse, UpdateSettingsRequest,
        // contacts
        ContactEntry, ContactListResponse, CheckPhonesRequest, CheckPhoneResult,
        CheckPhonesResponse, BlocklistResponse, UpdateBlocklistRequest, UpdateBlocklistResponse,
        PhoneQuery, ContactInfoRequest, ContactUserInfo, ContactInfoResponse,
        BusinessProfileResponse, BusinessProfile, BusinessCategory, BusinessHoursConfig, ContactLidResponse, QrLinkQuery, ContactQrLinkResponse,
        // presence
        SetPresenceRequest, SubscribePresenceRequest,
        // chat
        ChatPresenceRequest, ChatPresenceResponse, MarkReadRequest, MarkUnreadRequest,
        ArchiveChatRequest, DisappearingTimerRequest, ChatListQuery, ChatMessagesQuery,
        ChatRecord, ChatListResponse, MessageRecord, ChatMessagesResponse,
        // messages
        SendTextRequest, SendImageRequest, SendAudioRequest, SendVideoRequest,
        SendDocumentRequest, SendStickerRequest, SendLocationRequest, SendContactRequest,
        SendPollRequest, ButtonItem, SendButtonsRequest, ListRow, ListSection, SendListRequest,
        NativeFlowButton, SendInteractiveRequest, TemplateQuickReply, TemplateUrlButton,
        TemplateCallButton, TemplateButton, SendTemplateRequest, CarouselCardHeader,
        CarouselCard, SendCarouselRequest, SendReactionRequest, DeleteMessageRequest,
        EditMessageRequest, PollVoteRequest, RequestUnavailableRequest,
        RequestUnavailableResponse,
        // groups
        CreateGroupRequest, GroupInfoResponse, GroupSummary, GroupListResponse, GroupIdQuery,
        InviteInfoQuery, GroupIdRequest, GroupIdResponse, UpdateGroupNameRequest,
        UpdateGroupTopicRequest, SetGroupPhotoRequest, GroupParticipantsRequest,
        GroupParticipantsResponse, GroupAnnounceRequest, GroupLockedRequest,
        GroupApprovalRequest, GroupMemberAddModeRequest, GroupInviteLinkResponse,
        JoinGroupRequest, GroupJoinRequestsResponse, GroupRequestActionRequest,
        SendGroupTextRequest,
        // communities
        CommunityIdQuery, CommunityGroupsResponse, LinkGroupRequest,
        // media
        MediaQuery, MediaRecord, MediaListResponse, MediaPendingResponse, MediaProcessResponse,
        // newsletters
        NewsletterIdQuery, CreateNewsletterRequest, NewsletterResponse, NewsletterListResponse,
        NewsletterMessagesResponse, NewsletterIdRequest, NewsletterReactRequest,
        NewsletterMuteRequest, NewsletterViewedRequest, NewsletterLiveResponse,
        // status
        SendStatusRequest, StatusPrivacyResponse,
        // calls
        RejectCallRequest,
        // webhooks
        WebhookRequest, WebhookResponse, EventsResponse, FailedEvent, FailedEventsResponse,
        ReplayRequest, ReplayResponse,
        // chatwoot
        ChatwootConfigRequest, ChatwootConfigResponse, ChatwootSyncQuery,
        ChatwootContactDetails, ChatwootMessageDetails, ChatwootSyncStats,
        ChatwootSyncStatusResponse, ChatwootContactsOverview, ChatwootConversationsOverview,
        ChatwootMessagesOverview, ChatwootOverviewData, WhatsAppOverview,
        ChatwootOverviewResponse, ChatwootResolveAllResponse, ChatwootConversationStatsResponse,
        ChatwootResetCounts, ChatwootResetResponse, ChatwootWebhookPayload,
        // probes and cluster (extensions)
        LiveResponse, ReadyResponse, ClusterStatusResponse, ClusterNodeResponse, DrainRequest, DrainResponse, UndrainResponse,
    );
    out.append(&mut v);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn collect_refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, val) in map {
                    if k == "$ref"
                        && let Some(s) = val.as_str()
                    {
                        out.push(s.to_owned());
                    }
                    collect_refs(val, out);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| collect_refs(i, out)),
            _ => {}
        }
    }

    #[test]
    fn names_are_unique_and_refs_resolve() {
        let mut raw = Vec::new();
        register_all(&mut raw);
        let mut by_name = std::collections::HashMap::new();
        for (name, schema) in &raw {
            let json = serde_json::to_value(schema).unwrap();
            if let Some(prev) = by_name.insert(name.clone(), json.clone()) {
                assert_eq!(prev, json, "two different types are named {name}");
            }
        }
        let names: std::collections::HashSet<String> =
            schemas().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names.len(), by_name.len());
        for (_, schema) in schemas() {
            let mut refs = Vec::new();
            collect_refs(&serde_json::to_value(&schema).unwrap(), &mut refs);
            for r in refs {
                let target = r.trim_start_matches("#/components/schemas/");
                assert!(names.contains(target), "dangling $ref {r}");
            }
        }
        assert!(schema("SendTextRequest").is_some());
        assert!(schema("Quoted").is_some());
        assert!(schema("Nope").is_none());
    }

    #[test]
    fn wrappers_are_transparent() {
        let s = serde_json::to_value(sessions::SessionListResponse(vec![])).unwrap();
        assert_eq!(s, json!([]));
        let e = serde_json::to_value(common::EmptyResponse {}).unwrap();
        assert_eq!(e, json!({}));
        let sch = serde_json::to_value(schema("SessionListResponse").unwrap()).unwrap();
        assert_eq!(sch["type"], "array", "{sch}");
    }

    #[test]
    fn aliases_accept_0_2_8_spellings() {
        let g: groups::UpdateGroupNameRequest =
            serde_json::from_value(json!({"groupId": "1@g.us", "value": "n"})).unwrap();
        assert_eq!(g.name, "n");
        let t: groups::UpdateGroupTopicRequest =
            serde_json::from_value(json!({"groupId": "1", "topic": "t"})).unwrap();
        assert_eq!(t.topic, "t");
        let n: newsletters::NewsletterIdRequest =
            serde_json::from_value(json!({"newsletterJid": "x@newsletter"})).unwrap();
        assert_eq!(n.newsletter_id, "x@newsletter");
        let r: messages::RequestUnavailableRequest =
            serde_json::from_value(json!({"chatId": "c", "messageId": "m"})).unwrap();
        assert_eq!(r.chat_jid, "c");
        let l: communities::LinkGroupRequest =
            serde_json::from_value(json!({"parentGroupId": "p", "childGroupId": "c"})).unwrap();
        assert_eq!(l.community_id, "p");
        let c: chatwoot::ChatwootConfigRequest = serde_json::from_value(
            json!({"url": "https://cw", "token": "t", "account": 3, "enabled": true}),
        )
        .unwrap();
        assert_eq!((c.base_url.as_str(), c.account_id), ("https://cw", 3));
        let q: groups::InviteInfoQuery = serde_json::from_value(json!({"link": "abc"})).unwrap();
        assert_eq!(q.link(), Some("abc"));
        // Both spellings at once: no duplicate-field error, the contract's name wins.
        let q: groups::InviteInfoQuery =
            serde_json::from_value(json!({"inviteLink": "new", "link": "old"})).unwrap();
        assert_eq!(q.link(), Some("new"));
        let n: newsletters::NewsletterIdQuery =
            serde_json::from_value(json!({"newsletterId": "", "newsletterJid": "1@newsletter"}))
                .unwrap();
        assert_eq!(n.id(), Some("1@newsletter"));
    }

    #[test]
    fn send_accepts_quoted_and_skips_empty_options() {
        let s: messages::SendTextRequest = serde_json::from_value(
            json!({"phone": "1", "text": "hi", "quoted": {"messageId": "M"}}),
        )
        .unwrap();
        assert_eq!(s.quoted.map(|q| q.message_id).as_deref(), Some("M"));
        let back = serde_json::to_value(messages::SendTextRequest {
            phone: "1".into(),
            text: "t".into(),
            quoted: None,
        })
        .unwrap();
        assert_eq!(back, json!({"phone": "1", "text": "t"}));
        assert!(
            serde_json::from_value::<messages::SendTextRequest>(json!({"phone": "1"})).is_err()
        );
    }
}
