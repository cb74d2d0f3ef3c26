//! The event names a webhook can subscribe to: OnWapp's 61 names, grouped as `/events` shows them.

/// `(category, names)` in OnWapp's order; `all` is their concatenation in this order.
pub const CATEGORIES: &[(&str, &[&str])] = &[
    (
        "session",
        &[
            "session.connected",
            "session.disconnected",
            "session.logged_out",
            "session.qr",
            "session.connect_failure",
            "session.stream_replaced",
            "session.stream_error",
            "session.temporary_ban",
            "session.client_outdated",
            "session.keepalive_timeout",
            "session.keepalive_restored",
            "session.pair_success",
            "session.pair_error",
        ],
    ),
    (
        "message",
        &[
            "message.received",
            "message.sent",
            "message.receipt",
            "message.reaction",
            "message.deleted",
            "message.edited",
            "message.undecryptable",
            "message.media_retry",
        ],
    ),
    ("presence", &["presence.update", "chat.presence"]),
    (
        "sync",
        &[
            "history.sync",
            "sync.offline_preview",
            "sync.offline_completed",
            "sync.app_state",
            "sync.app_state_complete",
        ],
    ),
    (
        "contact",
        &[
            "contact.push_name",
            "contact.picture",
            "contact.update",
            "contact.business_name",
            "contact.about",
        ],
    ),
    (
        "call",
        &[
            "call.offer",
            "call.offer_notice",
            "call.accept",
            "call.pre_accept",
            "call.reject",
            "call.terminate",
            "call.transport",
            "call.relay_latency",
        ],
    ),
    (
        "group",
        &["group.update", "group.joined", "group.participants"],
    ),
    (
        "privacy",
        &[
            "privacy.settings",
            "privacy.identity_change",
            "privacy.blocklist",
        ],
    ),
    (
        "newsletter",
        &[
            "newsletter.join",
            "newsletter.leave",
            "newsletter.mute_change",
            "newsletter.live_update",
        ],
    ),
    (
        "chat",
        &[
            "chat.archive",
            "chat.pin",
            "chat.mute",
            "chat.star",
            "chat.delete_for_me",
            "chat.delete",
            "chat.clear",
            "chat.mark_as_read",
            "chat.label_edit",
            "chat.label_association",
        ],
    ),
];

/// Names OnWapp lists that this build never emits, with why: whatsapp-rust does not report
/// them (OnWapp's whatsmeow did). They stay subscribable, so an OnWapp client's `events` lists
/// are accepted as they are; `GET /events` lists them under `notEmitted`.
pub const NOT_EMITTED: &[(&str, &str)] = &[
    (
        "session.keepalive_timeout",
        "whatsapp-rust reports no keepalive events",
    ),
    (
        "session.keepalive_restored",
        "whatsapp-rust reports no keepalive events",
    ),
    (
        "message.media_retry",
        "whatsapp-rust reports no media retry receipts",
    ),
    (
        "sync.app_state_complete",
        "whatsapp-rust reports no end of app state sync",
    ),
    (
        "privacy.settings",
        "whatsapp-rust reports no privacy setting changes",
    ),
    (
        "privacy.blocklist",
        "whatsapp-rust reports no blocklist changes",
    ),
    ("newsletter.join", "whatsapp-rust reports no channel joins"),
    (
        "newsletter.leave",
        "whatsapp-rust reports no channel leaves",
    ),
    (
        "newsletter.mute_change",
        "whatsapp-rust reports no channel mute changes",
    ),
];

/// Every event name, in order.
pub fn all() -> impl Iterator<Item = &'static str> {
    CATEGORIES
        .iter()
        .flat_map(|(_, names)| names.iter().copied())
}

/// Subscription wildcards: an `events` list holding one of these (or empty) means every event.
pub const WILDCARDS: &[&str] = &["*", "all"];

pub fn is_known(name: &str) -> bool {
    WILDCARDS.contains(&name) || all().any(|n| n == name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sixty_one_unique_names() {
        let mut v: Vec<_> = super::all().collect();
        assert_eq!(v.len(), 61);
        v.sort_unstable();
        v.dedup();
        assert_eq!(v.len(), 61);
    }
}
