//! A simulated user acting on groups through its own client (`client.groups()`), so the
//! `w:g2` IQs are the ones whatsapp-rust sends.

use serde::Deserialize;
use wacore_binary::{Jid, Server};
use whatsapp_rust::features::{
    GroupCreateOptions, GroupDescription, GroupParticipantOptions, GroupSubject, JoinGroupResult,
    ParticipantChangeResponse, PreviousDescription,
};

use super::{SimUser, UserError, user_jid};

/// `POST /admin/users/{phone}/groups {"subject", "participants": [...]}`.
#[derive(Debug, Deserialize)]
pub struct CreateGroupRequest {
    pub subject: String,
    #[serde(default)]
    pub participants: Vec<String>,
}

/// `POST /admin/users/{phone}/group {"group", "action", "value"?, "participants"?}`.
#[derive(Debug, Deserialize)]
pub struct GroupActionRequest {
    pub group: String,
    pub action: String,
    #[serde(default)]
    pub value: Option<String>,
    #[serde(default)]
    pub participants: Vec<String>,
}

/// A group JID from `ID@g.us` or the bare id.
pub fn group_jid(raw: &str) -> Result<Jid, UserError> {
    let raw = raw.trim();
    let jid: Jid = if raw.contains('@') {
        raw.parse()
            .map_err(|e| UserError::BadRequest(format!("invalid group jid {raw:?}: {e}")))?
    } else {
        Jid::group(raw.to_string())
    };
    if jid.server != Server::Group || jid.user.is_empty() {
        return Err(UserError::BadRequest(format!("{raw} is not a group JID")));
    }
    Ok(jid)
}

fn client_err(e: impl std::fmt::Display) -> UserError {
    UserError::Client(e.to_string())
}

impl SimUser {
    /// Creates a group with these members; returns its JID.
    pub async fn create_group(&self, req: &CreateGroupRequest) -> Result<String, UserError> {
        let mut options = GroupCreateOptions::new(req.subject.clone());
        for p in &req.participants {
            options = options.with_participant(GroupParticipantOptions::new(user_jid(p)?));
        }
        let created = self
            .client
            .groups()
            .create_group(options)
            .await
            .map_err(client_err)?;
        Ok(created.metadata.id.to_string())
    }

    /// Joins with an invite code or link; `(jid, pending approval)`.
    pub async fn join_group(&self, code: &str) -> Result<(String, bool), UserError> {
        match self
            .client
            .groups()
            .join_with_invite_code(code)
            .await
            .map_err(client_err)?
        {
            JoinGroupResult::Joined(jid) => Ok((jid.to_string(), false)),
            JoinGroupResult::PendingApproval(jid) => Ok((jid.to_string(), true)),
        }
    }

    /// `subject`, `description`, `add`, `remove`, `promote`, `demote`, `leave`.
    pub async fn group_action(&self, req: &GroupActionRequest) -> Result<(), UserError> {
        let group = group_jid(&req.group)?;
        let members = req
            .participants
            .iter()
            .map(|p| user_jid(p))
            .collect::<Result<Vec<_>, _>>()?;
        let groups = self.client.groups();
        let value = req.value.clone().unwrap_or_default();
        match req.action.as_str() {
            "subject" => {
                let subject =
                    GroupSubject::new(value).map_err(|e| UserError::BadRequest(e.to_string()))?;
                groups.set_subject(group, subject).await.map_err(client_err)
            }
            "description" => {
                let description = if value.is_empty() {
                    None
                } else {
                    Some(
                        GroupDescription::new(value)
                            .map_err(|e| UserError::BadRequest(e.to_string()))?,
                    )
                };
                groups
                    .set_description(group, description, PreviousDescription::Resolve)
                    .await
                    .map_err(client_err)
            }
            "add" => refused(
                groups
                    .add_participants(group, &members)
                    .await
                    .map_err(client_err)?,
            ),
            "remove" => refused(
                groups
                    .remove_participants(group, &members)
                    .await
                    .map_err(client_err)?,
            ),
            "promote" => refused(
                groups
                    .promote_participants(group, &members)
                    .await
                    .map_err(client_err)?,
            ),
            "demote" => refused(
                groups
                    .demote_participants(group, &members)
                    .await
                    .map_err(client_err)?,
            ),
            "leave" => groups.leave(group).await.map_err(client_err),
            other => Err(UserError::BadRequest(format!(
                "unknown action {other:?}: subject, description, add, remove, promote, demote, leave"
            ))),
        }
    }
}

fn refused(rows: Vec<ParticipantChangeResponse>) -> Result<(), UserError> {
    match rows.iter().find(|r| !r.is_ok()) {
        Some(r) => Err(UserError::Client(format!(
            "{} refused with {}",
            r.jid,
            r.error.clone().unwrap_or_default()
        ))),
        None => Ok(()),
    }
}
