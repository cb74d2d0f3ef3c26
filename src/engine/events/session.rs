//! `session.*`: the lifecycle of a session's connection, with whatsmeow's top-level keys
//! (wire-facts 9.3) where OnWapp sends the event, and the QR code for `session.qr`, which
//! OnWapp lists but never sends.

use serde_json::json;
use whatsapp_rust::types::events::Event;

use super::payload::{event, jid};
use crate::store::events::NewEvent;

/// The `session.*` event of a whatsapp-rust lifecycle event; `None` for every other event.
pub fn lifecycle(session: &str, e: &Event) -> Option<NewEvent> {
    Some(match e {
        Event::PairingQrCode(q) => event(
            session,
            "session.qr",
            json!({"Code": q.code, "Timeout": q.timeout.as_secs()}),
        ),
        Event::PairSuccess(p) => event(
            session,
            "session.pair_success",
            json!({
                "ID": jid(&p.id),
                "LID": jid(&p.lid),
                "BusinessName": p.business_name,
                "Platform": p.platform,
            }),
        ),
        Event::PairError(p) => event(
            session,
            "session.pair_error",
            json!({
                "ID": jid(&p.id),
                "LID": jid(&p.lid),
                "BusinessName": p.business_name,
                "Platform": p.platform,
                "Error": p.error,
            }),
        ),
        Event::PairingCodeError(p) => event(
            session,
            "session.pair_error",
            json!({"ID": "", "LID": "", "BusinessName": "", "Platform": "", "Error": p.error}),
        ),
        Event::Connected(_) => event(session, "session.connected", json!({})),
        Event::Disconnected(d) => disconnected(session, &d.reason.to_string()),
        Event::PairingQrCodesExhausted(_) => disconnected(session, "qr codes exhausted"),
        Event::LoggedOut(l) => event(
            session,
            "session.logged_out",
            json!({"OnConnect": l.on_connect, "Reason": l.reason.code()}),
        ),
        Event::StreamReplaced(_) => event(session, "session.stream_replaced", json!({})),
        Event::ClientOutdated(_) => event(session, "session.client_outdated", json!({})),
        Event::TemporaryBan(b) => event(
            session,
            "session.temporary_ban",
            json!({
                "Code": b.code.code(),
                "Expire": b.expire.num_nanoseconds().unwrap_or(i64::MAX),
                "Message": b.message,
            }),
        ),
        Event::ConnectFailure(f) => event(
            session,
            "session.connect_failure",
            json!({"Reason": f.reason.code(), "Message": f.message.clone().unwrap_or_default()}),
        ),
        Event::StreamError(s) => event(session, "session.stream_error", json!({"Code": s.code})),
        _ => return None,
    })
}

/// `session.logged_out` for a logout asked through the API (`Reason` 0: no WhatsApp code).
pub fn logged_out_by_request(session: &str) -> NewEvent {
    event(
        session,
        "session.logged_out",
        json!({"OnConnect": false, "Reason": 0, "reason": "logout requested"}),
    )
}

/// `session.disconnected`: the connection dropped (the client reconnects by itself unless it
/// was stopped). OnWapp sends no fields; `reason` says why.
pub fn disconnected(session: &str, reason: &str) -> NewEvent {
    event(session, "session.disconnected", json!({"reason": reason}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::types::events::{
        ConnectFailureReason, Connected, LoggedOut, PairSuccess, PairingQrCode, StreamReplaced,
    };

    #[test]
    fn lifecycle_events_carry_whatsmeows_keys() {
        let qr = lifecycle(
            "s",
            &Event::PairingQrCode(
                PairingQrCode::builder()
                    .code("2@abc".into())
                    .timeout(std::time::Duration::from_secs(60))
                    .build(),
            ),
        )
        .expect("qr");
        assert_eq!(
            (qr.name, &qr.payload["Code"]),
            ("session.qr", &json!("2@abc"))
        );

        let paired = lifecycle(
            "s",
            &Event::PairSuccess(
                PairSuccess::builder()
                    .id("5511999990001:3@s.whatsapp.net".parse().expect("jid"))
                    .lid("123:3@lid".parse().expect("jid"))
                    .business_name(String::new())
                    .platform("android".into())
                    .build(),
            ),
        )
        .expect("pair");
        assert_eq!(paired.payload["ID"], "5511999990001:3@s.whatsapp.net");
        assert_eq!(paired.payload["Platform"], "android");

        let out = lifecycle(
            "s",
            &Event::LoggedOut(
                LoggedOut::builder()
                    .on_connect(false)
                    .reason(ConnectFailureReason::LoggedOut)
                    .build(),
            ),
        )
        .expect("logout");
        assert_eq!(out.name, "session.logged_out");
        assert_eq!(
            (&out.payload["OnConnect"], &out.payload["Reason"]),
            (&json!(false), &json!(401))
        );

        let names: Vec<&str> = [
            Event::Connected(Connected::builder().build()),
            Event::StreamReplaced(StreamReplaced::builder().build()),
        ]
        .iter()
        .filter_map(|e| lifecycle("s", e))
        .map(|e| e.name)
        .collect();
        assert_eq!(names, ["session.connected", "session.stream_replaced"]);
    }
}
