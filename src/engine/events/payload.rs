//! The parts every webhook payload shares, and whatsmeow's JSON conventions for the fields that
//! OnWapp clients parse: JIDs as strings (empty when absent), times as RFC 3339, protobuf
//! messages with lowerCamel field names and bytes as base64.

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};
use whatsapp_rust::Jid;

use crate::store::events::NewEvent;

/// `{"event", "sessionId", "id", "timestamp"}` followed by `fields`, as one outbox event.
pub fn event(session: &str, name: &'static str, fields: Value) -> NewEvent {
    let mut out = Map::new();
    out.insert("event".into(), json!(name));
    out.insert("sessionId".into(), json!(session));
    out.insert("id".into(), json!(uuid::Uuid::now_v7().to_string()));
    out.insert("timestamp".into(), json!(now()));
    if let Value::Object(fields) = fields {
        out.extend(fields);
    }
    NewEvent {
        name,
        payload: Value::Object(out),
    }
}

pub fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Go's zero time, which whatsmeow sends for an unknown time.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

pub fn jid(j: &Jid) -> String {
    j.to_string()
}

/// An optional JID the way Go marshals an empty one: `""`.
pub fn opt_jid(j: Option<&Jid>) -> String {
    j.map(ToString::to_string).unwrap_or_default()
}

/// A protobuf message (or any serde value of one) as whatsmeow's webhooks carry it: absent
/// and empty fields left out, field names in lowerCamel, bytes in base64. Enum values keep
/// their protobuf names (`"MESSAGE_EDIT"`), where whatsmeow writes their numbers.
pub fn proto<T: serde::Serialize + ?Sized>(m: &T) -> Value {
    serde_json::to_value(m).map_or(Value::Null, |v| camel(v).unwrap_or(Value::Null))
}

fn camel(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(m) => {
            let out: Map<String, Value> = m
                .into_iter()
                .filter(|(k, _)| !k.starts_with("__"))
                .filter_map(|(k, v)| camel(v).map(|v| (lower_camel(&k), v)))
                .collect();
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(a) if is_bytes(&a) => {
            let bytes: Vec<u8> = a
                .iter()
                .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
                .collect();
            Some(Value::String(
                base64::engine::general_purpose::STANDARD.encode(bytes),
            ))
        }
        Value::Array(a) => {
            let out: Vec<Value> = a.into_iter().filter_map(camel).collect();
            (!out.is_empty()).then_some(Value::Array(out))
        }
        other => Some(other),
    }
}

/// Serde writes `Vec<u8>`/`Bytes` as arrays of numbers; protobuf messages have no repeated
/// small-integer fields worth keeping as arrays, so such an array is a bytes field.
fn is_bytes(a: &[Value]) -> bool {
    a.len() >= 2 && a.iter().all(|b| b.as_u64().is_some_and(|b| b <= 255))
}

fn lower_camel(k: &str) -> String {
    let mut out = String::with_capacity(k.len());
    let mut upper = false;
    for c in k.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use whatsapp_rust::waproto::whatsapp as wa;

    #[test]
    fn protobuf_messages_as_whatsmeow_sends_them() {
        let m = wa::Message {
            extended_text_message: whatsapp_rust::waproto::buffa::MessageField::some(
                wa::message::ExtendedTextMessage {
                    text: Some("hi".into()),
                    ..Default::default()
                },
            ),
            image_message: whatsapp_rust::waproto::buffa::MessageField::some(
                wa::message::ImageMessage {
                    media_key: Some(vec![1, 2, 3]),
                    file_length: Some(7),
                    ..Default::default()
                },
            ),
            ..Default::default()
        };
        let v = proto(&m);
        assert_eq!(v["extendedTextMessage"]["text"], "hi", "{v}");
        assert_eq!(v["imageMessage"]["mediaKey"], "AQID", "{v}");
        assert_eq!(v["imageMessage"]["fileLength"], 7, "{v}");
        assert!(v.get("conversation").is_none(), "{v}");
        assert_eq!(lower_camel("file_enc_sha256"), "fileEncSha256");
    }

    #[test]
    fn every_payload_carries_the_shared_fields() {
        let e = event("s1", "session.connected", json!({"X": 1}));
        for k in ["event", "sessionId", "id", "timestamp", "X"] {
            assert!(e.payload.get(k).is_some(), "{k}: {}", e.payload);
        }
        assert_eq!(e.payload["event"], "session.connected");
        assert_eq!(e.payload["sessionId"], "s1");
    }
}
