//! One entry point that throws arbitrary bytes at every request-body parser and validator, for
//! the `cargo fuzz` target (`tests/fuzz`) and for the randomized test below. It must never panic.

use serde::de::DeserializeOwned;

use crate::http::{dto::*, extract::parse_json, sessions, settings, webhooks};

fn try_parse<T: DeserializeOwned>(data: &[u8]) -> Option<T> {
    parse_json::<T>(data).ok()
}

macro_rules! parse_all {
    ($data:ident; $($t:ty),* $(,)?) => {
        $( let _ = try_parse::<$t>($data); )*
    };
}

/// Parses `data` as every request body of the contract and runs the validators we have.
pub fn parse_every_body(data: &[u8]) {
    parse_all!(data;
        RejectCallRequest, ChatPresenceRequest, MarkReadRequest, MarkUnreadRequest,
        ArchiveChatRequest, DisappearingTimerRequest, ChatwootConfigRequest, LinkGroupRequest,
        CheckPhonesRequest, UpdateBlocklistRequest, ContactInfoRequest, CreateGroupRequest,
        GroupIdRequest, UpdateGroupNameRequest, UpdateGroupTopicRequest, SetGroupPhotoRequest,
        GroupParticipantsRequest, GroupAnnounceRequest, GroupLockedRequest, GroupApprovalRequest,
        GroupMemberAddModeRequest, JoinGroupRequest, GroupRequestActionRequest,
        SendGroupTextRequest, SendTextRequest, SendImageRequest, SendAudioRequest,
        SendVideoRequest, SendDocumentRequest, SendStickerRequest, SendLocationRequest,
        SendContactRequest, SendPollRequest, SendButtonsRequest, SendListRequest,
        SendInteractiveRequest, SendTemplateRequest, SendCarouselRequest, SendReactionRequest,
        DeleteMessageRequest, EditMessageRequest, PollVoteRequest, RequestUnavailableRequest,
        CreateNewsletterRequest, NewsletterIdRequest, NewsletterReactRequest,
        NewsletterMuteRequest, NewsletterViewedRequest, SetPresenceRequest,
        SubscribePresenceRequest, SetStatusRequest, SetPushNameRequest, SetProfilePictureRequest,
        PairPhoneRequest, SendStatusRequest,
    );
    if let Some(r) = try_parse::<CreateSessionRequest>(data) {
        let _ = sessions::validate_session_name(&r.session);
    }
    if let Some(r) = try_parse::<UpdateSettingsRequest>(data) {
        let _ = settings::validate(r);
    }
    if let Some(r) = try_parse::<WebhookRequest>(data) {
        let _ = webhooks::config(r, false);
    }
    parse_inbound_payloads(data);
}

/// What strangers and receivers send in: Chatwoot's webhook payload, a webhook configuration
/// and a dead-letter replay (the `inbound_webhook` fuzz target).
pub fn parse_inbound_payloads(data: &[u8]) {
    let _ = try_parse::<ChatwootWebhookPayload>(data);
    let _ = try_parse::<ReplayRequest>(data);
    if let Some(r) = try_parse::<WebhookRequest>(data) {
        let _ = webhooks::config(r, true);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_every_body;

    const SEEDS: &[&str] = &[
        r#"{"session":"a","apiKey":"0123456789abcdef"}"#,
        r#"{"url":"https://e.com/h","events":["*","message.received"],"enabled":true,"secret":"x"}"#,
        r#"{"alwaysOnline":true,"lastSeen":"contacts","defaultDisappearingTimer":"7d"}"#,
        r#"{"phone":"5511999999999","text":"hi","quoted":{"messageId":"X","participant":"y"}}"#,
        r#"{"phone":"1","cards":[{"header":{"title":"t"},"body":"b","buttons":[{"name":"n","params":{}}]}]}"#,
        r#"{"phone":"1","sections":[{"title":"s","rows":[{"title":"r","rowId":"1"}]}]}"#,
        r#"{"latitude":0,"longitude":-0.5e3,"phone":"\u0000\ud83d\ude00"}"#,
    ];

    /// Mutates the seeds (bit flips, truncation, splices, deep nesting) and feeds them to every
    /// parser: nothing may panic.
    #[test]
    fn random_bodies_never_panic() {
        let mut rng = onwapp_cluster::fuzzing::XorShift(0x9e37_79b9_7f4a_7c15);
        for round in 0..5_000 {
            let seed = SEEDS[round % SEEDS.len()].as_bytes();
            let mut b = seed.to_vec();
            match rng.next_u64() % 5 {
                0 => {
                    for _ in 0..(rng.next_u64() % 8 + 1) {
                        let i = (rng.next_u64() as usize) % b.len();
                        b[i] ^= 1 << (rng.next_u64() % 8);
                    }
                }
                1 => b.truncate((rng.next_u64() as usize) % b.len()),
                2 => {
                    let other = SEEDS[(rng.next_u64() as usize) % SEEDS.len()].as_bytes();
                    let cut = (rng.next_u64() as usize) % other.len();
                    let at = (rng.next_u64() as usize) % b.len();
                    b.splice(at..at, other[cut..].iter().copied());
                }
                3 => {
                    let depth = (rng.next_u64() % 5000) as usize;
                    b = format!("{{\"phone\":{}1{}}}", "[".repeat(depth), "]".repeat(depth))
                        .into_bytes();
                }
                _ => {
                    b = (0..(rng.next_u64() % 64))
                        .map(|_| rng.next_u64() as u8)
                        .collect()
                }
            }
            parse_every_body(&b);
        }
    }
}
