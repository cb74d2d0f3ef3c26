//! Contact shapes (`/:session/contact/...`).

use std::collections::BTreeMap;

use super::bounded;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Names known for one contact.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactEntry {
    /// Name the contact set for themself.
    pub push_name: String,
    /// Verified business name.
    pub business_name: String,
    /// Full name from the address book.
    pub full_name: String,
    /// First name from the address book.
    pub first_name: String,
}

/// All contacts, keyed by JID (`GET /:session/contact/list`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct ContactListResponse(pub BTreeMap<String, ContactEntry>);

/// Body of `POST /:session/contact/check`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckPhonesRequest {
    /// Phone numbers to check.
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::LOOKUPS }>")]
    pub phones: Vec<String>,
}

/// Registration state of one checked phone number.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckPhoneResult {
    /// Phone number as given.
    pub phone: String,
    /// Whether the number has a WhatsApp account.
    pub is_registered: bool,
    /// WhatsApp JID, when registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jid: Option<String>,
}

/// Result of `POST /:session/contact/check`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
pub struct CheckPhonesResponse(pub Vec<CheckPhoneResult>);

/// Blocked contacts (`GET /:session/contact/blocklist`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlocklistResponse {
    /// JIDs of the blocked contacts.
    pub jids: Vec<String>,
}

/// Body of `POST /:session/contact/blocklist`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBlocklistRequest {
    /// Phone number or JID.
    pub phone: String,
    /// `block` or `unblock`.
    pub action: String,
}

/// Result of `POST /:session/contact/blocklist`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBlocklistResponse {
    /// Action applied.
    pub action: String,
    /// Phone number as given.
    pub phone: String,
}

/// Query carrying one phone number (`?phone=`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PhoneQuery {
    /// Phone number or JID.
    #[serde(default)]
    pub phone: Option<String>,
}

/// JSON body accepted by `GET /:session/contact/info` from 0.2.8 clients.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactInfoRequest {
    /// Phone numbers to look up.
    #[serde(deserialize_with = "bounded::vec::<_, _, { bounded::LOOKUPS }>")]
    pub phones: Vec<String>,
}

/// WhatsApp details of one user.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactUserInfo {
    /// Status (about) message.
    pub status: String,
    /// Current profile picture id.
    pub picture_id: String,
    /// Device JIDs of the user.
    pub devices: Vec<String>,
}

/// Result of `GET /:session/contact/info`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactInfoResponse {
    /// Details keyed by JID.
    pub users: BTreeMap<String, ContactUserInfo>,
}

/// Result of `GET /:session/contact/business`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BusinessProfileResponse {
    /// Business profile as reported by WhatsApp.
    pub profile: BusinessProfile,
}

/// A business profile with whatsmeow's field names (OnWapp serialises whatsmeow's
/// `BusinessProfile`), plus `Description` and `Website`, which whatsmeow drops.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct BusinessProfile {
    #[serde(rename = "JID")]
    pub jid: String,
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Email")]
    pub email: String,
    #[serde(rename = "Categories")]
    pub categories: Vec<BusinessCategory>,
    #[serde(rename = "ProfileOptions")]
    pub profile_options: BTreeMap<String, String>,
    #[serde(rename = "BusinessHoursTimeZone")]
    pub business_hours_time_zone: String,
    #[serde(rename = "BusinessHours")]
    pub business_hours: Vec<BusinessHoursConfig>,
    #[serde(rename = "Description")]
    pub description: String,
    #[serde(rename = "Website")]
    pub website: Vec<String>,
}

/// One business category.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct BusinessCategory {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Name")]
    pub name: String,
}

/// Opening hours of one day: `Mode` is `open_24h`, `specific_hours` or `appointment_only`;
/// times are minutes from midnight (0 when not given).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct BusinessHoursConfig {
    #[serde(rename = "DayOfWeek")]
    pub day_of_week: String,
    #[serde(rename = "Mode")]
    pub mode: String,
    #[serde(rename = "OpenTime")]
    pub open_time: u32,
    #[serde(rename = "CloseTime")]
    pub close_time: u32,
}

/// Result of `GET /:session/contact/lid`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactLidResponse {
    /// Phone number as given.
    pub phone: String,
    /// Linked ID of the contact.
    pub lid: String,
}

/// Query of `GET /:session/contact/qrlink`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QrLinkQuery {
    /// `true` to revoke the current link and get a new one.
    #[serde(default)]
    pub revoke: Option<bool>,
}

/// Result of `GET /:session/contact/qrlink`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContactQrLinkResponse {
    /// wa.me QR link.
    pub link: String,
}
