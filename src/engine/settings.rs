//! Session settings that live on WhatsApp: the seven privacy categories (whatsapp-rust's
//! `set_privacy_setting` / `fetch_privacy_settings`) and the default disappearing timer
//! (`set_default_disappearing_mode`, `<iq xmlns="disappearing_mode">`).
//!
//! A setting stored while the session is not connected is listed in `privacy_pending` and
//! pushed at the next connect ([`on_connected`]); after every push the seven values are read
//! back from WhatsApp and `privacy_synced_at` is set.

use std::sync::Arc;

use uuid::Uuid;
use whatsapp_rust::Client;
use whatsapp_rust::wacore::iq::privacy::{PrivacyCategory, PrivacyValue};

use super::EngineError;
use crate::store::{SettingsPatch, SettingsRecord, Store};

/// API field → whatsapp-rust's wire name of the privacy category.
pub const PRIVACY_FIELDS: [(&str, &str); 7] = [
    ("lastSeen", "last"),
    ("online", "online"),
    ("profilePhoto", "profile"),
    ("status", "status"),
    ("readReceipts", "readreceipts"),
    ("groupAdd", "groupadd"),
    ("callAdd", "calladd"),
];

/// The API field of the default disappearing timer.
pub const TIMER_FIELD: &str = "defaultDisappearingTimer";

/// Seconds of a default disappearing timer value (`off`, `24h`, `7d`, `90d`).
pub fn timer_seconds(value: &str) -> Option<u32> {
    match value {
        "off" => Some(0),
        "24h" => Some(86_400),
        "7d" => Some(7 * 86_400),
        "90d" => Some(90 * 86_400),
        _ => None,
    }
}

/// The stored value of an API field.
fn stored<'a>(rec: &'a SettingsRecord, field: &str) -> Option<&'a str> {
    Some(match field {
        "lastSeen" => &rec.last_seen,
        "online" => &rec.online,
        "profilePhoto" => &rec.profile_photo,
        "status" => &rec.status,
        "readReceipts" => &rec.read_receipts,
        "groupAdd" => &rec.group_add,
        "callAdd" => &rec.call_add,
        TIMER_FIELD => &rec.default_disappearing_timer,
        _ => return None,
    })
}

/// The fields a patch changes that live on WhatsApp, in [`PRIVACY_FIELDS`] order.
pub fn remote_fields(p: &SettingsPatch) -> Vec<&'static str> {
    let set = [
        p.last_seen.is_some(),
        p.online.is_some(),
        p.profile_photo.is_some(),
        p.status.is_some(),
        p.read_receipts.is_some(),
        p.group_add.is_some(),
        p.call_add.is_some(),
    ];
    let mut out: Vec<&'static str> = PRIVACY_FIELDS
        .iter()
        .zip(set)
        .filter(|(_, s)| *s)
        .map(|((f, _), _)| *f)
        .collect();
    if p.default_disappearing_timer.is_some() {
        out.push(TIMER_FIELD);
    }
    out
}

/// `privacy_pending` as a list, in a stable order (privacy fields, then the timer).
pub fn parse_pending(raw: &str) -> Vec<&'static str> {
    PRIVACY_FIELDS
        .iter()
        .map(|(f, _)| *f)
        .chain([TIMER_FIELD])
        .filter(|f| raw.split(',').any(|p| p.trim() == *f))
        .collect()
}

/// Both lists merged, as `privacy_pending` stores them.
pub fn join_pending(a: &[&str], b: &[&str]) -> String {
    let all: Vec<&str> = a.iter().chain(b).copied().collect();
    parse_pending(&all.join(",")).join(",")
}

/// Pushes the stored value of each of `fields` to WhatsApp, in order; the first failure is
/// the error (`failed to apply privacy setting <name>: ...`).
pub async fn push(
    client: &Client,
    rec: &SettingsRecord,
    fields: &[&str],
) -> Result<(), EngineError> {
    for field in fields {
        let Some(value) = stored(rec, field) else {
            continue;
        };
        if *field == TIMER_FIELD {
            let seconds = timer_seconds(value).ok_or_else(|| {
                EngineError::Action(format!(
                    "failed to set disappearing timer: invalid timer value: {value} (must be off, 24h, 7d, or 90d)"
                ))
            })?;
            client
                .set_default_disappearing_mode(seconds)
                .await
                .map_err(|e| {
                    EngineError::Action(format!("failed to set disappearing timer: {e}"))
                })?;
            continue;
        }
        let Some((_, wa)) = PRIVACY_FIELDS.iter().find(|(f, _)| f == field) else {
            continue;
        };
        let failed = |e: &dyn std::fmt::Display| {
            EngineError::Action(format!("failed to apply privacy setting {wa}: {e}"))
        };
        let category = PrivacyCategory::from(*wa);
        let value = PrivacyValue::from(value);
        if !category.is_valid_value(&value) {
            return Err(failed(&format!(
                "{} is not a value of {wa}",
                value.as_str()
            )));
        }
        client
            .set_privacy_setting(category, value)
            .await
            .map_err(|e| failed(&e))?;
    }
    Ok(())
}

/// The seven privacy values WhatsApp holds now, as a patch that also sets `privacy_synced_at`.
pub async fn read_back(client: &Client) -> Result<SettingsPatch, EngineError> {
    let got = client
        .fetch_privacy_settings()
        .await
        .map_err(|e| EngineError::Action(format!("failed to get privacy settings: {e}")))?;
    let value = |wa: &str| {
        got.get_value(&PrivacyCategory::from(wa))
            .map(|v| v.as_str().to_string())
    };
    Ok(SettingsPatch {
        last_seen: value("last"),
        online: value("online"),
        profile_photo: value("profile"),
        status: value("status"),
        read_receipts: value("readreceipts"),
        group_add: value("groupadd"),
        call_add: value("calladd"),
        privacy_synced_at: Some(chrono::Utc::now()),
        ..Default::default()
    })
}

/// `rec` with the values `p` sets.
pub fn with_patch(rec: &SettingsRecord, p: &SettingsPatch) -> SettingsRecord {
    let mut r = rec.clone();
    let pick = |into: &mut String, v: &Option<String>| {
        if let Some(v) = v {
            into.clone_from(v);
        }
    };
    pick(&mut r.last_seen, &p.last_seen);
    pick(&mut r.online, &p.online);
    pick(&mut r.profile_photo, &p.profile_photo);
    pick(&mut r.status, &p.status);
    pick(&mut r.read_receipts, &p.read_receipts);
    pick(&mut r.group_add, &p.group_add);
    pick(&mut r.call_add, &p.call_add);
    pick(
        &mut r.default_disappearing_timer,
        &p.default_disappearing_timer,
    );
    r
}

/// At connect: pushes each pending field (a field WhatsApp refuses is logged and dropped:
/// the read-back then stores what WhatsApp really holds), clears the list, and reads the
/// privacy back into the row.
pub async fn sync(
    client: &Client,
    store: &dyn Store,
    session_id: Uuid,
    name: &str,
) -> Result<Option<SettingsRecord>, EngineError> {
    let store_err =
        |e: crate::store::StoreError| EngineError::Action(format!("storing settings: {e}"));
    let Some(rec) = store.get_settings(session_id).await.map_err(store_err)? else {
        return Ok(None);
    };
    let pending = parse_pending(&rec.privacy_pending);
    if !pending.is_empty() {
        for field in &pending {
            match push(client, &rec, &[field]).await {
                Ok(()) => tracing::info!(session = %name, field, "pending setting pushed"),
                Err(e) => {
                    tracing::warn!(session = %name, field, error = %e, "pending setting refused")
                }
            }
        }
        let cleared = SettingsPatch {
            privacy_pending: Some(String::new()),
            ..Default::default()
        };
        store
            .update_settings(session_id, &cleared)
            .await
            .map_err(store_err)?;
    }
    let back = read_back(client).await?;
    store
        .update_settings(session_id, &back)
        .await
        .map_err(store_err)
}

/// At each `Connected`: push pending settings, read privacy back, and announce the session
/// available when `alwaysOnline` is set (whatsapp-rust sends `available` itself only when it
/// knows a push name).
pub async fn on_connected(
    client: Arc<Client>,
    store: Arc<dyn Store>,
    session_id: Uuid,
    name: String,
) {
    match sync(&client, &*store, session_id, &name).await {
        Ok(Some(rec)) => {
            tracing::info!(session = %name, "settings synced with WhatsApp");
            if rec.always_online {
                keep_online(&client, &name).await;
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(session = %name, error = %e, "settings not synced at connect"),
    }
}

/// Sends presence `available`.
pub async fn keep_online(client: &Client, name: &str) {
    match client.presence().set_available().await {
        Ok(()) => tracing::debug!(session = %name, "always online: presence available sent"),
        Err(e) => tracing::warn!(session = %name, error = ?e, "always online: presence not sent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_lists_merge_in_a_stable_order() {
        assert_eq!(parse_pending(""), Vec::<&str>::new());
        assert_eq!(
            parse_pending("defaultDisappearingTimer, callAdd,bogus,lastSeen"),
            ["lastSeen", "callAdd", TIMER_FIELD]
        );
        assert_eq!(
            join_pending(&["callAdd", "lastSeen"], &["lastSeen", TIMER_FIELD]),
            "lastSeen,callAdd,defaultDisappearingTimer"
        );
        let p = SettingsPatch {
            online: Some("all".into()),
            default_disappearing_timer: Some("7d".into()),
            always_online: Some(true),
            ..Default::default()
        };
        assert_eq!(remote_fields(&p), ["online", TIMER_FIELD]);
    }

    #[test]
    fn timers_are_seconds() {
        let got: Vec<_> = ["off", "24h", "7d", "90d", "1h"]
            .iter()
            .map(|t| timer_seconds(t))
            .collect();
        assert_eq!(
            got,
            [Some(0), Some(86_400), Some(604_800), Some(7_776_000), None]
        );
    }
}
