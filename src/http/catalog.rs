//! Every endpoint of the OnWapp contract (`api-reference.md`), in the contract's order.
//!
//! This table is the single source of truth for routing status and for the OpenAPI document:
//! paths use the contract spelling (`/:session/...`), schema names refer to
//! [`crate::http::dto::schemas`] components.

/// Whether an endpoint is served yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Done,
    /// Served, with a limit the note states (shown in the README's coverage table).
    Partial(&'static str),
    NotImplemented,
}

/// A query-string parameter of an endpoint.
#[derive(Debug, Clone, Copy)]
pub struct QueryParam {
    pub name: &'static str,
    pub required: bool,
    pub description: &'static str,
}

/// One method + path of the contract.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// `GET`, `POST`, `PUT` or `DELETE`.
    pub method: &'static str,
    /// Contract spelling, e.g. `/:session/message/send/text`.
    pub path: &'static str,
    /// Contract section title, e.g. `Messages - Send`.
    pub section: &'static str,
    /// Contract heading, e.g. `Send Text Message`.
    pub summary: &'static str,
    pub status: Status,
    /// `false` only for `GET /`, `GET /health`, the probes and `POST /chatwoot/webhook/:sessionId`.
    pub auth: bool,
    /// DTO component of the JSON body.
    pub request_body: Option<&'static str>,
    /// The body may be left out (`request_body` then describes it when sent).
    pub body_optional: bool,
    pub query: &'static [QueryParam],
    /// DTO component of the success body, where one is defined.
    pub response: Option<&'static str>,
}

impl Endpoint {
    const fn new(
        method: &'static str,
        path: &'static str,
        section: &'static str,
        summary: &'static str,
    ) -> Self {
        Self {
            method,
            path,
            section,
            summary,
            status: Status::NotImplemented,
            auth: true,
            request_body: None,
            body_optional: false,
            query: &[],
            response: None,
        }
    }
    const fn done(mut self) -> Self {
        self.status = Status::Done;
        self
    }
    const fn partial(mut self, note: &'static str) -> Self {
        self.status = Status::Partial(note);
        self
    }
    const fn public(mut self) -> Self {
        self.auth = false;
        self
    }
    const fn body(mut self, schema: &'static str) -> Self {
        self.request_body = Some(schema);
        self
    }
    const fn optional_body(mut self, schema: &'static str) -> Self {
        self.request_body = Some(schema);
        self.body_optional = true;
        self
    }
    const fn query(mut self, params: &'static [QueryParam]) -> Self {
        self.query = params;
        self
    }
    const fn res(mut self, schema: &'static str) -> Self {
        self.response = Some(schema);
        self
    }
}

const fn q(name: &'static str, required: bool, description: &'static str) -> QueryParam {
    QueryParam {
        name,
        required,
        description,
    }
}

const GET: &str = "GET";
const POST: &str = "POST";
const PUT: &str = "PUT";
const DELETE: &str = "DELETE";

const HEALTH: &str = "Health & Status";
const SESSIONS: &str = "Sessions";
const PROFILE: &str = "Profile";
const SETTINGS: &str = "Settings";
const CONTACTS: &str = "Contacts";
const PRESENCE: &str = "Presence";
const CHAT: &str = "Chat";
const SEND: &str = "Messages - Send";
const ACTIONS: &str = "Messages - Actions";
const GROUPS: &str = "Groups";
const COMMUNITIES: &str = "Communities";
const MEDIA: &str = "Media";
const NEWSLETTERS: &str = "Newsletters (Channels)";
const STATUS: &str = "Status (Stories)";
const CALLS: &str = "Calls";
const WEBHOOKS: &str = "Webhooks";
const CHATWOOT: &str = "Chatwoot Integration";
const CLUSTER: &str = "Cluster (extension)";

const Q_QR: &[QueryParam] = &[q(
    "format",
    false,
    "`json` (default) or `image` for the raw PNG",
)];
const Q_PHONE: &[QueryParam] = &[q("phone", true, "Phone number or JID")];
const Q_REVOKE: &[QueryParam] = &[q("revoke", false, "`true` to revoke the current link")];
const Q_CHAT_LIST: &[QueryParam] = &[
    q("limit", false, "Max results (default: 100, max: 500)"),
    q("offset", false, "Offset for pagination (default: 0)"),
    q("unread", false, "`true` to list only unread chats"),
];
const Q_CHAT_MESSAGES: &[QueryParam] = &[
    q("chatId", true, "Chat JID"),
    q("limit", false, "Max results (default: 50, max: 200)"),
    q("offset", false, "Offset for pagination"),
];
const Q_CHAT_ID: &[QueryParam] = &[q("chatId", true, "Chat JID")];
const Q_GROUP: &[QueryParam] = &[q("groupId", true, "Group JID")];
const Q_INVITE_LINK: &[QueryParam] = &[
    q("groupId", true, "Group JID"),
    q(
        "reset",
        false,
        "`true` to revoke the current link and create a new one",
    ),
];
const Q_INVITE_INFO: &[QueryParam] = &[
    q("inviteLink", true, "Invite URL or code"),
    q("link", false, "0.2.8 spelling of `inviteLink`"),
];
const Q_COMMUNITY: &[QueryParam] = &[q("communityId", true, "Community JID")];
const Q_MEDIA_LIST: &[QueryParam] = &[
    q("limit", false, "Max results (default: 100)"),
    q("offset", false, "Offset for pagination (default: 0)"),
];
const Q_MEDIA_PENDING: &[QueryParam] = &[q("limit", false, "Max results (default: 100)")];
const Q_MEDIA_PROCESS: &[QueryParam] =
    &[q("batchSize", false, "Downloads per batch (default: 10)")];
const Q_MEDIA_DOWNLOAD: &[QueryParam] = &[
    q("messageId", true, "Message ID"),
    q(
        "format",
        false,
        "`json` (default: the media record) or `file` (the stored file itself)",
    ),
];
const Q_NEWSLETTER: &[QueryParam] = &[
    q("newsletterId", true, "Newsletter JID"),
    q("newsletterJid", false, "0.2.8 spelling of `newsletterId`"),
];
const Q_SYNC: &[QueryParam] = &[q("days", false, "Days of history to sync")];

const LEGACY_INTERACTIVE: &str = "sent inside viewOnceMessage with whatsmeow's <biz> node and stored; WhatsApp's own apps have not shown legacy buttons/lists from non-business accounts since 2023, so recipients may see nothing (issue 4)";
const MEDIA_SENT: &str = "base64 (also as a data: URL) or an http(s) URL fetched with an SSRF guard; uploaded, sent, stored with its file and queued as message.sent; 0.2.8's multipart form (`file` field) too; no thumbnails, durations or waveforms yet; delivery of the outbox is issue 6";

/// Every endpoint of the contract, in the contract's order.
pub static ENDPOINTS: &[Endpoint] = &[
    // Health & Status
    Endpoint::new(GET, "/", HEALTH, "Get Health Status")
        .public()
        .done()
        .res("HealthResponse"),
    Endpoint::new(GET, "/health", HEALTH, "Get Health Status")
        .public()
        .done()
        .res("HealthResponse"),
    // Sessions
    Endpoint::new(GET, "/sessions", SESSIONS, "List All Sessions")
        .done()
        .res("SessionListResponse"),
    Endpoint::new(POST, "/sessions", SESSIONS, "Create Session")
        .done()
        .body("CreateSessionRequest")
        .res("SessionResponse"),
    Endpoint::new(GET, "/:session/status", SESSIONS, "Get Session Status")
        .done()
        .res("SessionResponse"),
    Endpoint::new(DELETE, "/:session", SESSIONS, "Delete Session")
        .done()
        .res("MessageResponse"),
    Endpoint::new(POST, "/:session/connect", SESSIONS, "Connect Session")
        .done()
        .res("ConnectResponse"),
    Endpoint::new(GET, "/:session/qr", SESSIONS, "Get QR Code")
        .done()
        .query(Q_QR)
        .res("QrResponse"),
    Endpoint::new(
        POST,
        "/:session/pairphone",
        SESSIONS,
        "Pair with Phone Number",
    )
    .done()
    .body("PairPhoneRequest")
    .res("PairPhoneResponse"),
    Endpoint::new(POST, "/:session/disconnect", SESSIONS, "Disconnect Session")
        .done()
        .res("MessageResponse"),
    Endpoint::new(POST, "/:session/logout", SESSIONS, "Logout Session")
        .done()
        .res("MessageResponse"),
    Endpoint::new(POST, "/:session/restart", SESSIONS, "Restart Session")
        .done()
        .res("MessageResponse"),
    // Profile
    Endpoint::new(GET, "/:session/profile", PROFILE, "Get Profile")
        .partial("jid, pushName, status (the about text, a usync `status` query) and pictureUrl (a `w:profile:picture` get) while connected; only jid and pushName (from the session row) while disconnected")
        .res("ProfileResponse"),
    Endpoint::new(
        POST,
        "/:session/profile/status",
        PROFILE,
        "Set Status Message",
    )
    .done()
    .body("SetStatusRequest")
    .res("SetStatusResponse"),
    Endpoint::new(POST, "/:session/profile/name", PROFILE, "Set Push Name")
        .partial("sent to WhatsApp (presence name + setting_pushName app state) and kept in the device store, unlike OnWapp; needs the session connected (409 otherwise)")
        .body("SetPushNameRequest")
        .res("SetPushNameResponse"),
    Endpoint::new(
        POST,
        "/:session/profile/picture",
        PROFILE,
        "Set Profile Picture",
    )
    .partial("base64, data URL, http(s) URL or multipart `file`, sent as is: no resizing or JPEG conversion (WhatsApp expects a square JPEG)")
    .body("SetProfilePictureRequest")
    .res("PictureIdResponse"),
    Endpoint::new(
        POST,
        "/:session/profile/picture/remove",
        PROFILE,
        "Delete Profile Picture",
    )
    .done()
    .res("EmptyResponse"),
    // Settings
    Endpoint::new(GET, "/:session/settings", SETTINGS, "Get Settings")
        .done()
        .res("SettingsResponse"),
    Endpoint::new(POST, "/:session/settings", SETTINGS, "Update Settings")
        .partial("privacy fields and defaultDisappearingTimer are pushed to WhatsApp when connected (then the seven privacy values are read back, privacySyncedAt set); on a session not connected they are stored and pushed at its next connect (no 409/500); defaultDisappearingTimer is never read back; alwaysOnline re-announces presence at connect and every 4 min, autoRejectCalls rejects offers, syncHistory=false skips history sync chunks")
        .body("UpdateSettingsRequest")
        .res("SettingsResponse"),
    // Contacts
    Endpoint::new(GET, "/:session/contact/list", CONTACTS, "Get All Contacts")
        .done()
        .res("ContactListResponse"),
    Endpoint::new(
        POST,
        "/:session/contact/check",
        CONTACTS,
        "Check Phone Numbers",
    )
    .done()
    .body("CheckPhonesRequest")
    .res("CheckPhonesResponse"),
    Endpoint::new(
        GET,
        "/:session/contact/blocklist",
        CONTACTS,
        "Get Blocklist",
    )
    .done()
    .res("BlocklistResponse"),
    Endpoint::new(
        POST,
        "/:session/contact/blocklist",
        CONTACTS,
        "Update Blocklist",
    )
    .done()
    .body("UpdateBlocklistRequest")
    .res("UpdateBlocklistResponse"),
    Endpoint::new(GET, "/:session/contact/info", CONTACTS, "Get Contact Info")
        .done()
        .query(Q_PHONE)
        .res("ContactInfoResponse"),
    Endpoint::new(
        GET,
        "/:session/contact/avatar",
        CONTACTS,
        "Get Contact Avatar",
    )
    .done()
    .query(Q_PHONE)
    .res("PictureUrlResponse"),
    Endpoint::new(
        GET,
        "/:session/contact/business",
        CONTACTS,
        "Get Business Profile",
    )
    .done()
    .query(Q_PHONE)
    .res("BusinessProfileResponse"),
    Endpoint::new(GET, "/:session/contact/lid", CONTACTS, "Get Contact LID")
        .done()
        .query(Q_PHONE)
        .res("ContactLidResponse"),
    Endpoint::new(
        GET,
        "/:session/contact/qrlink",
        CONTACTS,
        "Get Contact QR Link",
    )
    .done()
    .query(Q_REVOKE)
    .res("ContactQrLinkResponse"),
    // Presence
    Endpoint::new(POST, "/:session/presence", PRESENCE, "Set Presence")
        .done()
        .body("SetPresenceRequest")
        .res("SimpleStatusResponse"),
    Endpoint::new(
        POST,
        "/:session/presence/subscribe",
        PRESENCE,
        "Subscribe to Presence",
    )
    .done()
    .body("SubscribePresenceRequest")
    .res("EmptyResponse"),
    // Chat
    Endpoint::new(
        POST,
        "/:session/chat/presence",
        CHAT,
        "Set Chat Presence (Typing)",
    )
    .done()
    .body("ChatPresenceRequest")
    .res("ChatPresenceResponse"),
    Endpoint::new(
        POST,
        "/:session/chat/markread",
        CHAT,
        "Mark Messages as Read",
    )
    .done()
    .body("MarkReadRequest")
    .res("EmptyResponse"),
    Endpoint::new(POST, "/:session/chat/unread", CHAT, "Mark Chat as Unread")
        .done()
        .body("MarkUnreadRequest")
        .res("SimpleStatusResponse"),
    Endpoint::new(
        POST,
        "/:session/chat/archive",
        CHAT,
        "Archive/Unarchive Chat",
    )
    .done()
    .body("ArchiveChatRequest")
    .res("SimpleStatusResponse"),
    Endpoint::new(
        POST,
        "/:session/chat/disappearing",
        CHAT,
        "Set Disappearing Timer",
    )
    .partial("direct chats proven end to end; a group's timer is set with the group IQ, not yet proven (wamock has no groups)")
    .body("DisappearingTimerRequest")
    .res("MessageResponse"),
    Endpoint::new(GET, "/:session/chat/list", CHAT, "List All Chats")
        .done()
        .query(Q_CHAT_LIST)
        .res("ChatListResponse"),
    Endpoint::new(GET, "/:session/chat/messages", CHAT, "Get Chat Messages")
        .done()
        .query(Q_CHAT_MESSAGES)
        .res("ChatMessagesResponse"),
    Endpoint::new(GET, "/:session/chat/info", CHAT, "Get Chat Info")
        .done()
        .query(Q_CHAT_ID)
        .res("ChatRecord"),
    // Messages - Send
    Endpoint::new(
        POST,
        "/:session/message/send/text",
        SEND,
        "Send Text Message",
    )
    .done()
    .body("SendTextRequest")
    .res("SendResponse"),
    Endpoint::new(POST, "/:session/message/send/image", SEND, "Send Image")
        .partial(MEDIA_SENT)
        .body("SendImageRequest")
        .res("SendResponse"),
    Endpoint::new(POST, "/:session/message/send/audio", SEND, "Send Audio")
        .partial(MEDIA_SENT)
        .body("SendAudioRequest")
        .res("SendResponse"),
    Endpoint::new(POST, "/:session/message/send/video", SEND, "Send Video")
        .partial(MEDIA_SENT)
        .body("SendVideoRequest")
        .res("SendResponse"),
    Endpoint::new(
        POST,
        "/:session/message/send/document",
        SEND,
        "Send Document",
    )
    .partial(MEDIA_SENT)
    .body("SendDocumentRequest")
    .res("SendResponse"),
    Endpoint::new(POST, "/:session/message/send/sticker", SEND, "Send Sticker")
        .partial(MEDIA_SENT)
        .body("SendStickerRequest")
        .res("SendResponse"),
    Endpoint::new(
        POST,
        "/:session/message/send/location",
        SEND,
        "Send Location",
    )
    .done()
    .body("SendLocationRequest")
    .res("SendResponse"),
    Endpoint::new(POST, "/:session/message/send/contact", SEND, "Send Contact")
        .done()
        .body("SendContactRequest")
        .res("SendResponse"),
    Endpoint::new(POST, "/:session/message/send/poll", SEND, "Send Poll")
        .done()
        .body("SendPollRequest")
        .res("SendResponse"),
    Endpoint::new(POST, "/:session/message/send/buttons", SEND, "Send Buttons")
        .partial(LEGACY_INTERACTIVE)
        .body("SendButtonsRequest")
        .res("SendResponse"),
    Endpoint::new(POST, "/:session/message/send/list", SEND, "Send List")
        .partial(LEGACY_INTERACTIVE)
        .body("SendListRequest")
        .res("SendResponse"),
    Endpoint::new(
        POST,
        "/:session/message/send/interactive",
        SEND,
        "Send Interactive",
    )
    .partial("native-flow buttons sent (whatsapp-rust adds the <biz> node) and stored, with a title or an image/video header uploaded from base64 or a URL; delivery of the outbox is issue 6")
    .body("SendInteractiveRequest")
    .res("SendResponse"),
    Endpoint::new(
        POST,
        "/:session/message/send/template",
        SEND,
        "Send Template",
    )
    .partial("hydrated four-row template inside viewOnceMessage (a title or an image/video/document header), sent and stored; WhatsApp's apps may not show templates from non-business accounts (issue 4)")
    .body("SendTemplateRequest")
    .res("SendResponse"),
    Endpoint::new(
        POST,
        "/:session/message/send/carousel",
        SEND,
        "Send Carousel",
    )
    .partial("cards (title or image/video header, body, footer, native-flow buttons) sent with whatsapp-rust's <biz> node and stored; cards without an image or video may not render on WhatsApp's apps (issue 4)")
    .body("SendCarouselRequest")
    .res("SendResponse"),
    // Messages - Actions
    Endpoint::new(POST, "/:session/message/react", ACTIONS, "Send Reaction")
        .done()
        .body("SendReactionRequest")
        .res("SendResponse"),
    Endpoint::new(POST, "/:session/message/delete", ACTIONS, "Delete Message")
        .done()
        .body("DeleteMessageRequest")
        .res("SendResponse"),
    Endpoint::new(POST, "/:session/message/edit", ACTIONS, "Edit Message")
        .done()
        .body("EditMessageRequest")
        .res("SendResponse"),
    Endpoint::new(POST, "/:session/message/poll/vote", ACTIONS, "Vote on Poll")
        .partial("votes on polls this session sent or received live (history-synced polls are not known yet); votes others cast on them are decrypted and the session's own are recorded: stored as `poll_vote` messages, the latest per voter kept, announced in `message.received` / `message.sent` with `pollVote`")
        .body("PollVoteRequest")
        .res("SendResponse"),
    Endpoint::new(
        POST,
        "/:session/message/request-unavailable",
        ACTIONS,
        "Request Unavailable Message",
    )
    .partial("the peer resend request reaches the phone (`id` is the request's own message id); whatsapp-rust asks once per message while the session runs, so a repeat answers 409")
    .body("RequestUnavailableRequest")
    .res("RequestUnavailableResponse"),
    // Groups
    Endpoint::new(POST, "/:session/group/create", GROUPS, "Create Group")
        .done()
        .body("CreateGroupRequest")
        .res("GroupInfoResponse"),
    Endpoint::new(GET, "/:session/group/list", GROUPS, "Get Joined Groups")
        .done()
        .res("GroupListResponse"),
    Endpoint::new(GET, "/:session/group/info", GROUPS, "Get Group Info")
        .done()
        .query(Q_GROUP)
        .res("GroupInfoResponse"),
    Endpoint::new(GET, "/:session/group/avatar", GROUPS, "Get Group Picture")
        .done()
        .query(Q_GROUP)
        .res("PictureUrlResponse"),
    Endpoint::new(POST, "/:session/group/leave", GROUPS, "Leave Group")
        .done()
        .body("GroupIdRequest")
        .res("GroupIdResponse"),
    Endpoint::new(POST, "/:session/group/name", GROUPS, "Update Group Name")
        .done()
        .body("UpdateGroupNameRequest")
        .res("GroupIdResponse"),
    Endpoint::new(POST, "/:session/group/topic", GROUPS, "Update Group Topic")
        .done()
        .body("UpdateGroupTopicRequest")
        .res("GroupIdResponse"),
    Endpoint::new(POST, "/:session/group/photo", GROUPS, "Set Group Picture")
        .done()
        .body("SetGroupPhotoRequest")
        .res("PictureIdResponse"),
    Endpoint::new(
        POST,
        "/:session/group/photo/remove",
        GROUPS,
        "Delete Group Picture",
    )
    .done()
    .body("GroupIdRequest")
    .res("MessageResponse"),
    Endpoint::new(
        POST,
        "/:session/group/participants/add",
        GROUPS,
        "Add Participants",
    )
    .done()
    .body("GroupParticipantsRequest")
    .res("GroupParticipantsResponse"),
    Endpoint::new(
        POST,
        "/:session/group/participants/remove",
        GROUPS,
        "Remove Participants",
    )
    .done()
    .body("GroupParticipantsRequest")
    .res("GroupParticipantsResponse"),
    Endpoint::new(
        POST,
        "/:session/group/participants/promote",
        GROUPS,
        "Promote Participants",
    )
    .done()
    .body("GroupParticipantsRequest")
    .res("GroupParticipantsResponse"),
    Endpoint::new(
        POST,
        "/:session/group/participants/demote",
        GROUPS,
        "Demote Participants",
    )
    .done()
    .body("GroupParticipantsRequest")
    .res("GroupParticipantsResponse"),
    Endpoint::new(
        POST,
        "/:session/group/announce",
        GROUPS,
        "Set Group Announce Mode",
    )
    .done()
    .body("GroupAnnounceRequest")
    .res("EmptyResponse"),
    Endpoint::new(
        POST,
        "/:session/group/locked",
        GROUPS,
        "Set Group Locked Mode",
    )
    .done()
    .body("GroupLockedRequest")
    .res("EmptyResponse"),
    Endpoint::new(
        POST,
        "/:session/group/approval",
        GROUPS,
        "Set Group Approval Mode",
    )
    .done()
    .body("GroupApprovalRequest")
    .res("EmptyResponse"),
    Endpoint::new(
        POST,
        "/:session/group/memberadd",
        GROUPS,
        "Set Group Member Add Mode",
    )
    .done()
    .body("GroupMemberAddModeRequest")
    .res("EmptyResponse"),
    Endpoint::new(
        GET,
        "/:session/group/invitelink",
        GROUPS,
        "Get Group Invite Link",
    )
    .done()
    .query(Q_INVITE_LINK)
    .res("GroupInviteLinkResponse"),
    Endpoint::new(
        GET,
        "/:session/group/inviteinfo",
        GROUPS,
        "Get Group Info from Invite Link",
    )
    .done()
    .query(Q_INVITE_INFO)
    .res("GroupInfoResponse"),
    Endpoint::new(
        POST,
        "/:session/group/join",
        GROUPS,
        "Join Group via Invite Link",
    )
    .done()
    .body("JoinGroupRequest")
    .res("GroupIdResponse"),
    Endpoint::new(GET, "/:session/group/requests", GROUPS, "Get Join Requests")
        .done()
        .query(Q_GROUP)
        .res("GroupJoinRequestsResponse"),
    Endpoint::new(
        POST,
        "/:session/group/requests/action",
        GROUPS,
        "Handle Join Requests",
    )
    .done()
    .body("GroupRequestActionRequest")
    .res("GroupParticipantsResponse"),
    Endpoint::new(
        POST,
        "/:session/group/send/text",
        GROUPS,
        "Send Group Message (Legacy)",
    )
    .done()
    .body("SendGroupTextRequest")
    .res("SendResponse"),
    // Communities
    Endpoint::new(
        GET,
        "/:session/community/groups",
        COMMUNITIES,
        "Get Sub Groups",
    )
    .done()
    .query(Q_COMMUNITY)
    .res("CommunityGroupsResponse"),
    Endpoint::new(
        POST,
        "/:session/community/link",
        COMMUNITIES,
        "Link Group to Community",
    )
    .done()
    .body("LinkGroupRequest")
    .res("EmptyResponse"),
    Endpoint::new(
        POST,
        "/:session/community/unlink",
        COMMUNITIES,
        "Unlink Group from Community",
    )
    .done()
    .body("LinkGroupRequest")
    .res("EmptyResponse"),
    // Media
    Endpoint::new(GET, "/:session/media/list", MEDIA, "List Media")
        .done()
        .query(Q_MEDIA_LIST)
        .res("MediaListResponse"),
    Endpoint::new(GET, "/:session/media/pending", MEDIA, "List Pending Media")
        .done()
        .query(Q_MEDIA_PENDING)
        .res("MediaPendingResponse"),
    Endpoint::new(
        POST,
        "/:session/media/process",
        MEDIA,
        "Process Pending Media",
    )
    .done()
    .query(Q_MEDIA_PROCESS)
    .res("MediaProcessResponse"),
    Endpoint::new(GET, "/:session/media/download", MEDIA, "Get Media")
        .partial("the JSON record (OnWapp's answer); `&format=file` serves the stored file itself, and `storageUrl` points there; no media-retry requests for expired files yet")
        .query(Q_MEDIA_DOWNLOAD)
        .res("MediaRecord"),
    // Newsletters (Channels)
    Endpoint::new(
        POST,
        "/:session/newsletter/create",
        NEWSLETTERS,
        "Create Newsletter",
    )
    .body("CreateNewsletterRequest")
    .res("NewsletterResponse")
    .done(),
    Endpoint::new(
        GET,
        "/:session/newsletter/list",
        NEWSLETTERS,
        "Get Subscribed Newsletters",
    )
    .res("NewsletterListResponse")
    .done(),
    Endpoint::new(
        GET,
        "/:session/newsletter/info",
        NEWSLETTERS,
        "Get Newsletter Info",
    )
    .query(Q_NEWSLETTER)
    .res("NewsletterResponse")
    .done(),
    Endpoint::new(
        POST,
        "/:session/newsletter/follow",
        NEWSLETTERS,
        "Follow Newsletter",
    )
    .body("NewsletterIdRequest")
    .res("EmptyResponse")
    .done(),
    Endpoint::new(
        POST,
        "/:session/newsletter/unfollow",
        NEWSLETTERS,
        "Unfollow Newsletter",
    )
    .body("NewsletterIdRequest")
    .res("EmptyResponse")
    .done(),
    Endpoint::new(
        GET,
        "/:session/newsletter/messages",
        NEWSLETTERS,
        "Get Newsletter Messages",
    )
    .query(Q_NEWSLETTER)
    .res("NewsletterMessagesResponse")
    .partial("the latest 50 messages (OnWapp's fixed count), no paging"),
    Endpoint::new(
        POST,
        "/:session/newsletter/react",
        NEWSLETTERS,
        "React to Newsletter Message",
    )
    .body("NewsletterReactRequest")
    .res("EmptyResponse")
    .done(),
    Endpoint::new(
        POST,
        "/:session/newsletter/mute",
        NEWSLETTERS,
        "Toggle Newsletter Mute",
    )
    .body("NewsletterMuteRequest")
    .res("EmptyResponse")
    .done(),
    Endpoint::new(
        POST,
        "/:session/newsletter/viewed",
        NEWSLETTERS,
        "Mark Newsletter Viewed",
    )
    .body("NewsletterViewedRequest")
    .res("MessageResponse")
    .done(),
    Endpoint::new(
        POST,
        "/:session/newsletter/subscribe-live",
        NEWSLETTERS,
        "Subscribe to Live Updates",
    )
    .body("NewsletterIdRequest")
    .res("NewsletterLiveResponse")
    .done(),
    // Status (Stories)
    Endpoint::new(POST, "/:session/status/send", STATUS, "Send Story")
        .body("SendStatusRequest")
        .res("SendResponse")
        .partial("text, image and video stories to every contact the session stored; default background and font for text (the contract has no fields for them)"),
    Endpoint::new(
        GET,
        "/:session/status/privacy",
        STATUS,
        "Get Status Privacy",
    )
    .res("StatusPrivacyResponse")
    .partial("the `status` category of the privacy settings; allow/deny lists are not read (`List` is empty)"),
    // Calls
    Endpoint::new(POST, "/:session/call/reject", CALLS, "Reject Call")
        .partial("client.voip().reject_call for an offer this process received (404 for an unknown call id or caller, e.g. after a restart)")
        .body("RejectCallRequest")
        .res("EmptyResponse"),
    // Webhooks
    Endpoint::new(
        GET,
        "/:session/webhook",
        WEBHOOKS,
        "Get Webhook Configuration",
    )
    .done()
    .res("WebhookResponse"),
    Endpoint::new(POST, "/:session/webhook", WEBHOOKS, "Set Webhook")
        .done()
        .body("WebhookRequest")
        .res("WebhookResponse"),
    Endpoint::new(PUT, "/:session/webhook", WEBHOOKS, "Update Webhook")
        .done()
        .body("WebhookRequest")
        .res("WebhookResponse"),
    Endpoint::new(DELETE, "/:session/webhook", WEBHOOKS, "Delete Webhook")
        .done()
        .res("MessageResponse"),
    // Extensions to the contract: dead letters of webhook delivery.
    Endpoint::new(GET, "/:session/webhook/failed", WEBHOOKS, "List Failed Webhook Events (extension)")
        .done()
        .query(&[
            q("limit", false, "page size, default 50, at most 500"),
            q("offset", false, "events to skip, default 0"),
        ])
        .res("FailedEventsResponse"),
    Endpoint::new(POST, "/:session/webhook/replay", WEBHOOKS, "Replay Failed Webhook Events (extension)")
        .done()
        .body("ReplayRequest")
        .res("ReplayResponse"),
    Endpoint::new(GET, "/events", WEBHOOKS, "Get Available Events")
        .done()
        .res("EventsResponse"),
    // Chatwoot Integration
    Endpoint::new(
        POST,
        "/sessions/:sessionId/chatwoot/set",
        CHATWOOT,
        "Set Chatwoot Config",
    )
    .body("ChatwootConfigRequest")
    .res("ChatwootConfigResponse"),
    Endpoint::new(
        GET,
        "/sessions/:sessionId/chatwoot/find",
        CHATWOOT,
        "Get Chatwoot Config",
    )
    .res("ChatwootConfigResponse"),
    Endpoint::new(
        DELETE,
        "/sessions/:sessionId/chatwoot",
        CHATWOOT,
        "Delete Chatwoot Config",
    )
    .res("MessageResponse"),
    Endpoint::new(
        POST,
        "/sessions/:sessionId/chatwoot/sync",
        CHATWOOT,
        "Sync All",
    )
    .query(Q_SYNC)
    .res("ChatwootSyncStatusResponse"),
    Endpoint::new(
        POST,
        "/sessions/:sessionId/chatwoot/sync/contacts",
        CHATWOOT,
        "Sync Contacts",
    )
    .query(Q_SYNC)
    .res("ChatwootSyncStatusResponse"),
    Endpoint::new(
        POST,
        "/sessions/:sessionId/chatwoot/sync/messages",
        CHATWOOT,
        "Sync Messages",
    )
    .query(Q_SYNC)
    .res("ChatwootSyncStatusResponse"),
    Endpoint::new(
        GET,
        "/sessions/:sessionId/chatwoot/sync/status",
        CHATWOOT,
        "Get Sync Status",
    )
    .res("ChatwootSyncStatusResponse"),
    Endpoint::new(
        GET,
        "/sessions/:sessionId/chatwoot/overview",
        CHATWOOT,
        "Get Sync Overview",
    )
    .res("ChatwootOverviewResponse"),
    Endpoint::new(
        POST,
        "/sessions/:sessionId/chatwoot/resolve-all",
        CHATWOOT,
        "Resolve All Conversations",
    )
    .res("ChatwootResolveAllResponse"),
    Endpoint::new(
        GET,
        "/sessions/:sessionId/chatwoot/conversations/stats",
        CHATWOOT,
        "Get Conversations Stats",
    )
    .res("ChatwootConversationStatsResponse"),
    Endpoint::new(
        POST,
        "/sessions/:sessionId/chatwoot/reset",
        CHATWOOT,
        "Reset Chatwoot",
    )
    .res("ChatwootResetResponse"),
    Endpoint::new(
        POST,
        "/chatwoot/webhook/:sessionId",
        CHATWOOT,
        "Chatwoot Webhook",
    )
    .public()
    .body("ChatwootWebhookPayload")
    .res("MessageResponse"),
    // Extensions to the contract: the probes of a load balancer or Kubernetes (no key) and the
    // operator's cluster routes (global key only).
    Endpoint::new(GET, "/health/live", HEALTH, "Liveness Probe (extension)")
        .public()
        .done()
        .res("LiveResponse"),
    Endpoint::new(GET, "/health/ready", HEALTH, "Readiness Probe (extension)")
        .public()
        .done()
        .res("ReadyResponse"),
    Endpoint::new(GET, "/admin/cluster", CLUSTER, "Cluster Status (extension)")
        .done()
        .res("ClusterStatusResponse"),
    Endpoint::new(POST, "/admin/drain", CLUSTER, "Drain This Node (extension)")
        .done()
        .optional_body("DrainRequest")
        .res("DrainResponse"),
    Endpoint::new(POST, "/admin/undrain", CLUSTER, "Undrain This Node (extension)")
        .done()
        .res("UndrainResponse"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn no_duplicate_method_and_path() {
        let mut seen = HashSet::new();
        for e in ENDPOINTS {
            assert!(
                seen.insert((e.method, e.path)),
                "duplicate {} {}",
                e.method,
                e.path
            );
            assert!(matches!(e.method, "GET" | "POST" | "PUT" | "DELETE"));
            assert!(
                e.path.starts_with('/') && !e.path.contains('?'),
                "{}",
                e.path
            );
        }
        assert!(ENDPOINTS.len() >= 116, "only {} endpoints", ENDPOINTS.len());
    }

    #[test]
    fn schema_names_exist() {
        let names: HashSet<String> = crate::http::dto::schemas()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        for e in ENDPOINTS {
            for s in e.request_body.iter().chain(e.response.iter()) {
                assert!(
                    names.contains(*s),
                    "{} {}: unknown schema {s}",
                    e.method,
                    e.path
                );
            }
        }
    }

    #[test]
    fn done_and_public_sets() {
        let done: HashSet<(&str, &str)> = ENDPOINTS
            .iter()
            .filter(|e| e.status != Status::NotImplemented)
            .map(|e| (e.method, e.path))
            .collect();
        let expected: HashSet<(&str, &str)> = [
            ("GET", "/"),
            ("GET", "/health"),
            ("GET", "/sessions"),
            ("POST", "/sessions"),
            ("GET", "/:session/status"),
            ("DELETE", "/:session"),
            ("POST", "/:session/connect"),
            ("GET", "/:session/qr"),
            ("POST", "/:session/pairphone"),
            ("POST", "/:session/disconnect"),
            ("POST", "/:session/logout"),
            ("POST", "/:session/restart"),
            ("POST", "/:session/message/send/text"),
            ("POST", "/:session/message/send/location"),
            ("POST", "/:session/message/send/contact"),
            ("POST", "/:session/message/send/image"),
            ("POST", "/:session/message/send/audio"),
            ("POST", "/:session/message/send/video"),
            ("POST", "/:session/message/send/document"),
            ("POST", "/:session/message/send/sticker"),
            ("POST", "/:session/message/send/poll"),
            ("POST", "/:session/message/send/buttons"),
            ("POST", "/:session/message/send/list"),
            ("POST", "/:session/message/send/interactive"),
            ("POST", "/:session/message/send/template"),
            ("POST", "/:session/message/send/carousel"),
            ("POST", "/:session/message/poll/vote"),
            ("POST", "/:session/message/request-unavailable"),
            ("POST", "/:session/message/edit"),
            ("POST", "/:session/message/react"),
            ("POST", "/:session/message/delete"),
            ("GET", "/:session/contact/list"),
            ("POST", "/:session/newsletter/create"),
            ("POST", "/:session/status/send"),
            ("GET", "/:session/status/privacy"),
            ("GET", "/:session/newsletter/list"),
            ("GET", "/:session/newsletter/info"),
            ("POST", "/:session/newsletter/follow"),
            ("POST", "/:session/newsletter/unfollow"),
            ("GET", "/:session/newsletter/messages"),
            ("POST", "/:session/newsletter/react"),
            ("POST", "/:session/newsletter/mute"),
            ("POST", "/:session/newsletter/viewed"),
            ("POST", "/:session/newsletter/subscribe-live"),
            ("POST", "/:session/contact/check"),
            ("GET", "/:session/contact/lid"),
            ("GET", "/:session/contact/info"),
            ("GET", "/:session/contact/blocklist"),
            ("GET", "/:session/contact/avatar"),
            ("GET", "/:session/contact/business"),
            ("GET", "/:session/contact/qrlink"),
            ("POST", "/:session/contact/blocklist"),
            ("POST", "/:session/presence"),
            ("POST", "/:session/presence/subscribe"),
            ("GET", "/:session/profile"),
            ("POST", "/:session/profile/status"),
            ("POST", "/:session/profile/name"),
            ("POST", "/:session/profile/picture"),
            ("POST", "/:session/profile/picture/remove"),
            ("POST", "/:session/chat/presence"),
            ("POST", "/:session/chat/markread"),
            ("POST", "/:session/chat/unread"),
            ("POST", "/:session/chat/archive"),
            ("POST", "/:session/chat/disappearing"),
            ("GET", "/:session/chat/list"),
            ("GET", "/:session/chat/messages"),
            ("GET", "/:session/chat/info"),
            ("POST", "/:session/group/create"),
            ("GET", "/:session/group/list"),
            ("GET", "/:session/group/info"),
            ("GET", "/:session/group/avatar"),
            ("POST", "/:session/group/leave"),
            ("POST", "/:session/group/name"),
            ("POST", "/:session/group/topic"),
            ("POST", "/:session/group/photo"),
            ("POST", "/:session/group/photo/remove"),
            ("POST", "/:session/group/participants/add"),
            ("POST", "/:session/group/participants/remove"),
            ("POST", "/:session/group/participants/promote"),
            ("POST", "/:session/group/participants/demote"),
            ("POST", "/:session/group/announce"),
            ("POST", "/:session/group/locked"),
            ("POST", "/:session/group/approval"),
            ("POST", "/:session/group/memberadd"),
            ("GET", "/:session/group/invitelink"),
            ("GET", "/:session/group/inviteinfo"),
            ("POST", "/:session/group/join"),
            ("GET", "/:session/group/requests"),
            ("POST", "/:session/group/requests/action"),
            ("POST", "/:session/group/send/text"),
            ("GET", "/:session/community/groups"),
            ("POST", "/:session/community/link"),
            ("POST", "/:session/community/unlink"),
            ("GET", "/:session/media/list"),
            ("GET", "/:session/media/pending"),
            ("POST", "/:session/media/process"),
            ("GET", "/:session/media/download"),
            ("GET", "/:session/settings"),
            ("POST", "/:session/settings"),
            ("POST", "/:session/call/reject"),
            ("GET", "/:session/webhook"),
            ("POST", "/:session/webhook"),
            ("PUT", "/:session/webhook"),
            ("DELETE", "/:session/webhook"),
            ("GET", "/:session/webhook/failed"),
            ("POST", "/:session/webhook/replay"),
            ("GET", "/events"),
            ("GET", "/health/live"),
            ("GET", "/health/ready"),
            ("GET", "/admin/cluster"),
            ("POST", "/admin/drain"),
            ("POST", "/admin/undrain"),
        ]
        .into_iter()
        .collect();
        assert_eq!(done, expected);
        let public: Vec<(&str, &str)> = ENDPOINTS
            .iter()
            .filter(|e| !e.auth)
            .map(|e| (e.method, e.path))
            .collect();
        assert_eq!(
            public,
            [
                ("GET", "/"),
                ("GET", "/health"),
                ("POST", "/chatwoot/webhook/:sessionId"),
                ("GET", "/health/live"),
                ("GET", "/health/ready"),
            ]
        );
    }
}
