//! `Contacts`: which numbers are on WhatsApp, their LIDs and usync details, and the
//! account's blocklist, through the session's client.

use std::collections::HashMap;

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    routing::{get, post},
};
use whatsapp_rust::Jid;

use crate::{
    app::AppState,
    error::{ApiError, ApiResult},
    http::{
        chat_actions::chat_jid,
        dto::{
            BlocklistResponse, BusinessCategory, BusinessHoursConfig, BusinessProfile,
            BusinessProfileResponse, CheckPhoneResult, CheckPhonesRequest, CheckPhonesResponse,
            ContactEntry, ContactInfoRequest, ContactInfoResponse, ContactLidResponse,
            ContactListResponse, ContactQrLinkResponse, ContactUserInfo, PhoneQuery,
            PictureUrlResponse, UpdateBlocklistRequest, UpdateBlocklistResponse,
        },
        extract::{JsonBody, Query, SessionCtx, parse_json},
    },
};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/{session}/contact/list", get(list))
        .route("/{session}/contact/check", post(check))
        .route("/{session}/contact/lid", get(lid))
        .route("/{session}/contact/info", get(info))
        .route("/{session}/contact/avatar", get(avatar))
        .route("/{session}/contact/business", get(business))
        .route("/{session}/contact/qrlink", get(qr_link))
        .route(
            "/{session}/contact/blocklist",
            get(blocklist).post(update_blocklist),
        )
}

/// Each phone as a user JID; 400 naming `field` (with its index in a list) when not one.
pub(super) fn user_jids(field: &str, phones: &[String]) -> Result<Vec<Jid>, ApiError> {
    if phones.is_empty() {
        return Err(ApiError::bad_request(format!("{field} is required")));
    }
    phones
        .iter()
        .enumerate()
        .map(|(i, p)| user_jid(&format!("{field}[{i}]"), p))
        .collect()
}

/// A phone number (or `@s.whatsapp.net` / `@lid` JID) of a user.
fn user_jid(field: &str, raw: &str) -> Result<Jid, ApiError> {
    let jid = chat_jid(field, raw)?;
    let digits = !jid.user.is_empty() && jid.user.chars().all(|c| c.is_ascii_digit());
    let user_server = jid.is_pn() || jid.is_lid();
    if !digits || !user_server {
        return Err(ApiError::bad_request(format!(
            "{field} must be a phone number, not {raw:?}"
        )));
    }
    Ok(jid)
}

fn query_phone(q: &PhoneQuery) -> Result<(String, Jid), ApiError> {
    let raw = q.phone.as_deref().map(str::trim).unwrap_or_default();
    if raw.is_empty() {
        return Err(ApiError::bad_request("phone query parameter is required"));
    }
    Ok((raw.to_string(), user_jid("phone", raw)?))
}

/// Every contact the session stored (push names from messages, names from history sync),
/// keyed by JID; read from the database, so it answers while disconnected too.
async fn list(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
) -> ApiResult<Json<ContactListResponse>> {
    let rows = s.store.list_contacts(rec.id).await?;
    Ok(Json(ContactListResponse(
        rows.into_iter()
            .map(|c| {
                (
                    c.jid,
                    ContactEntry {
                        push_name: c.push_name.unwrap_or_default(),
                        business_name: c.business_name.unwrap_or_default(),
                        full_name: c.full_name.unwrap_or_default(),
                        first_name: c.first_name.unwrap_or_default(),
                    },
                )
            })
            .collect(),
    )))
}

/// Which of `phones` have a WhatsApp account, in request order.
async fn check(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<CheckPhonesRequest>,
) -> ApiResult<Json<CheckPhonesResponse>> {
    let jids = user_jids("phones", &req.phones)?;
    let found = s.engine.check_registered(&rec.name, &jids).await?;
    Ok(Json(CheckPhonesResponse(
        req.phones
            .into_iter()
            .zip(found)
            .map(|(phone, r)| CheckPhoneResult {
                phone,
                is_registered: r.is_registered,
                jid: r.jid,
            })
            .collect(),
    )))
}

/// The LID WhatsApp gives for `phone`; 404 when it gives none.
async fn lid(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<PhoneQuery>,
) -> ApiResult<Json<ContactLidResponse>> {
    let (phone, jid) = query_phone(&q)?;
    let found = s
        .engine
        .check_registered(&rec.name, std::slice::from_ref(&jid))
        .await?;
    match found.into_iter().next().and_then(|r| r.lid) {
        Some(lid) => Ok(Json(ContactLidResponse { phone, lid })),
        None => Err(ApiError::NotFound("LID not found for this contact".into())),
    }
}

/// Usync details of the users in the JSON body's `phones` (as OnWapp reads them), or of
/// `?phone=` when given.
async fn info(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<PhoneQuery>,
    body: Bytes,
) -> ApiResult<Json<ContactInfoResponse>> {
    let jids = if q.phone.as_deref().is_some_and(|p| !p.trim().is_empty()) {
        vec![query_phone(&q)?.1]
    } else if body.is_empty() {
        return Err(ApiError::bad_request("phones is required"));
    } else {
        let req: ContactInfoRequest = parse_json(&body)?;
        user_jids("phones", &req.phones)?
    };
    let users = s.engine.user_details(&rec.name, &jids).await?;
    Ok(Json(ContactInfoResponse {
        users: users
            .into_iter()
            .map(|(jid, u)| {
                (
                    jid,
                    ContactUserInfo {
                        status: u.status,
                        picture_id: u.picture_id,
                        devices: u.devices,
                    },
                )
            })
            .collect(),
    }))
}

/// The contact's profile picture URL; `{"url": ""}` when there is none.
async fn avatar(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<PhoneQuery>,
) -> ApiResult<Json<PictureUrlResponse>> {
    let (_, jid) = query_phone(&q)?;
    Ok(Json(match s.engine.avatar(&rec.name, &jid).await? {
        Some((url, id)) => PictureUrlResponse { url, id: Some(id) },
        None => PictureUrlResponse {
            url: String::new(),
            id: None,
        },
    }))
}

/// The contact's business profile; 404 when the number is a personal account.
async fn business(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<PhoneQuery>,
) -> ApiResult<Json<BusinessProfileResponse>> {
    let (raw, jid) = query_phone(&q)?;
    let Some(p) = s.engine.business_profile(&rec.name, &jid).await? else {
        return Err(ApiError::NotFound(format!("{raw} has no business profile")));
    };
    let profile = BusinessProfile {
        jid: p.wid.as_ref().unwrap_or(&jid).to_string(),
        address: p.address.unwrap_or_default(),
        email: p.email.unwrap_or_default(),
        categories: p
            .categories
            .into_iter()
            .map(|c| BusinessCategory {
                id: c.id,
                name: c.name,
            })
            .collect(),
        profile_options: Default::default(),
        business_hours_time_zone: p.business_hours.timezone.unwrap_or_default(),
        business_hours: p
            .business_hours
            .business_config
            .unwrap_or_default()
            .into_iter()
            .map(|h| BusinessHoursConfig {
                day_of_week: h.day_of_week.as_str().to_string(),
                mode: h.mode.as_str().to_string(),
                open_time: h.open_time.unwrap_or_default(),
                close_time: h.close_time.unwrap_or_default(),
            })
            .collect(),
        description: p.description,
        website: p.website,
    };
    Ok(Json(BusinessProfileResponse { profile }))
}

/// The account's `https://wa.me/qr/<code>` link; `revoke=true` replaces it first.
async fn qr_link(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<ContactQrLinkResponse>> {
    let revoke = match q.get("revoke").map(|v| v.trim().to_ascii_lowercase()) {
        None => false,
        Some(v) if v.is_empty() || v == "false" || v == "0" => false,
        Some(v) if v == "true" || v == "1" => true,
        Some(v) => {
            return Err(ApiError::bad_request(format!(
                "revoke must be true or false, not {v:?}"
            )));
        }
    };
    let code = s.engine.contact_qr_code(&rec.name, revoke).await?;
    Ok(Json(ContactQrLinkResponse {
        link: format!("https://wa.me/qr/{code}"),
    }))
}

async fn blocklist(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
) -> ApiResult<Json<BlocklistResponse>> {
    let jids = s.engine.blocklist(&rec.name).await?;
    Ok(Json(BlocklistResponse { jids }))
}

/// `action: "block"` blocks; any other action unblocks (as OnWapp).
async fn update_blocklist(
    State(s): State<AppState>,
    SessionCtx(rec): SessionCtx,
    JsonBody(req): JsonBody<UpdateBlocklistRequest>,
) -> ApiResult<Json<UpdateBlocklistResponse>> {
    let who = user_jid("phone", &req.phone)?;
    if req.action.trim().is_empty() {
        return Err(ApiError::bad_request("action is required"));
    }
    s.engine
        .set_blocked(&rec.name, &who, req.action == "block")
        .await?;
    Ok(Json(UpdateBlocklistResponse {
        action: req.action,
        phone: req.phone,
    }))
}
