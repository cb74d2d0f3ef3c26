//! Groups and communities through a connected session's client (`client.groups()`,
//! `client.community()`): create, read, change members and settings, invites, join
//! requests, pictures and community links.

use whatsapp_rust::{
    Jid,
    features::{
        CommunityError, CommunitySubgroup, GroupCreateOptions, GroupDescription, GroupError,
        GroupMetadata, GroupParticipantOptions, GroupSubject, JoinGroupResult, MemberAddMode,
        MembershipApprovalMode, MembershipRequest, ParticipantChangeResponse, PreviousDescription,
    },
    request::IqError,
};

use super::{Engine, EngineError};

/// What to do with a list of members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberAction {
    Add,
    Remove,
    Promote,
    Demote,
    Approve,
    Reject,
}

/// One group setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSetting {
    Announce(bool),
    Locked(bool),
    Approval(bool),
    /// `true`: only admins add members (`admin_add`); `false`: everyone (`all_member_add`).
    AdminAdd(bool),
}

/// A join attempt: in, or waiting for an admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    Member(Jid),
    Pending(Jid),
}

/// The server's code of a refused IQ.
fn iq_code(e: &IqError) -> Option<u16> {
    match e {
        IqError::ServerError { code, .. } => Some(*code),
        _ => None,
    }
}

/// 404 → the group (or invite) is unknown; 403/401 → not allowed; the rest names `what`.
fn group_failed(what: &str, e: GroupError) -> EngineError {
    let code = match &e {
        GroupError::Iq(iq) => iq_code(iq),
        _ => None,
    };
    refused(what, code, e)
}

fn community_failed(what: &str, e: CommunityError) -> EngineError {
    let code = match &e {
        CommunityError::Iq(iq) => iq_code(iq),
        CommunityError::Group(GroupError::Iq(iq)) => iq_code(iq),
        _ => None,
    };
    refused(what, code, e)
}

fn refused(what: &str, code: Option<u16>, e: impl std::fmt::Display) -> EngineError {
    match code {
        Some(404) => EngineError::NotFound(
            if matches!(what, "read the invite" | "join with the invite") {
                "invite link not found or revoked".into()
            } else {
                "group not found".into()
            },
        ),
        Some(401 | 403) => EngineError::Forbidden(format!(
            "not allowed to {what}: this session is not a member (or not an admin) of the group"
        )),
        _ => EngineError::Action(format!("failed to {what}: {e}")),
    }
}

impl Engine {
    fn group_client(
        &self,
        name: &str,
    ) -> Result<std::sync::Arc<whatsapp_rust::Client>, EngineError> {
        Ok(self.connected(name)?.client().clone())
    }

    /// Creates a group with `participants` as members; its metadata as WhatsApp answered.
    pub async fn group_create(
        &self,
        name: &str,
        subject: &str,
        participants: &[Jid],
    ) -> Result<GroupMetadata, EngineError> {
        let client = self.group_client(name)?;
        let mut options = GroupCreateOptions::new(subject);
        for p in participants {
            options = options.with_participant(GroupParticipantOptions::new(p.clone()));
        }
        client
            .groups()
            .create_group(options)
            .await
            .map(|r| r.metadata)
            .map_err(|e| group_failed("create the group", e))
    }

    /// Every group the account is a member of, by JID order.
    pub async fn group_list(&self, name: &str) -> Result<Vec<GroupMetadata>, EngineError> {
        let client = self.group_client(name)?;
        let groups = client
            .groups()
            .get_participating()
            .await
            .map_err(|e| group_failed("list the groups", e))?;
        let mut out: Vec<GroupMetadata> = groups.into_values().collect();
        out.sort_by_key(|g| g.id.to_string());
        Ok(out)
    }

    /// A group's metadata, fresh from WhatsApp.
    pub async fn group_info(&self, name: &str, group: &Jid) -> Result<GroupMetadata, EngineError> {
        let client = self.group_client(name)?;
        client
            .groups()
            .get_metadata(group)
            .await
            .map_err(|e| group_failed("get the group info", e))
    }

    /// The group's picture as `(url, id)`; `None` when it has none.
    pub async fn group_avatar(
        &self,
        name: &str,
        group: &Jid,
    ) -> Result<Option<(String, String)>, EngineError> {
        let client = self.group_client(name)?;
        let pic = client
            .contacts()
            .get_profile_picture(group, false)
            .await
            .map_err(|e| refused("get the group picture", None, e))?;
        Ok(pic.map(|p| (p.url, p.id)))
    }

    pub async fn group_leave(&self, name: &str, group: &Jid) -> Result<(), EngineError> {
        let client = self.group_client(name)?;
        client
            .groups()
            .leave(group.clone())
            .await
            .map_err(|e| group_failed("leave the group", e))
    }

    pub async fn group_set_name(
        &self,
        name: &str,
        group: &Jid,
        subject: &str,
    ) -> Result<(), EngineError> {
        let subject =
            GroupSubject::new(subject).map_err(|e| EngineError::Invalid(format!("name {e}")))?;
        let client = self.group_client(name)?;
        client
            .groups()
            .set_subject(group.clone(), subject)
            .await
            .map_err(|e| group_failed("set the group name", e))
    }

    /// Sets the description; an empty `topic` deletes it.
    pub async fn group_set_topic(
        &self,
        name: &str,
        group: &Jid,
        topic: &str,
    ) -> Result<(), EngineError> {
        let description = if topic.is_empty() {
            None
        } else {
            Some(
                GroupDescription::new(topic)
                    .map_err(|e| EngineError::Invalid(format!("topic {e}")))?,
            )
        };
        let client = self.group_client(name)?;
        client
            .groups()
            .set_description(group.clone(), description, PreviousDescription::Resolve)
            .await
            .map_err(|e| group_failed("set the group topic", e))
    }

    /// Sets the group's picture (JPEG bytes); the new picture id.
    pub async fn group_set_photo(
        &self,
        name: &str,
        group: &Jid,
        image: Vec<u8>,
    ) -> Result<String, EngineError> {
        let client = self.group_client(name)?;
        let r = client
            .groups()
            .set_profile_picture(group.clone(), image)
            .await
            .map_err(|e| group_failed("set the group picture", e))?;
        Ok(r.id)
    }

    pub async fn group_remove_photo(&self, name: &str, group: &Jid) -> Result<(), EngineError> {
        let client = self.group_client(name)?;
        client
            .groups()
            .remove_profile_picture(group.clone())
            .await
            .map(|_| ())
            .map_err(|e| group_failed("remove the group picture", e))
    }

    /// Adds, removes, promotes or demotes members, or approves or rejects join requests;
    /// one answer per member, as WhatsApp gave them.
    pub async fn group_members(
        &self,
        name: &str,
        group: &Jid,
        action: MemberAction,
        members: &[Jid],
    ) -> Result<Vec<ParticipantChangeResponse>, EngineError> {
        let client = self.group_client(name)?;
        let groups = client.groups();
        let g = group.clone();
        let r = match action {
            MemberAction::Add => groups.add_participants(g, members).await,
            MemberAction::Remove => groups.remove_participants(g, members).await,
            MemberAction::Promote => groups.promote_participants(g, members).await,
            MemberAction::Demote => groups.demote_participants(g, members).await,
            MemberAction::Approve => groups.approve_membership_requests(g, members).await,
            MemberAction::Reject => groups.reject_membership_requests(g, members).await,
        };
        r.map_err(|e| group_failed("change the group members", e))
    }

    pub async fn group_setting(
        &self,
        name: &str,
        group: &Jid,
        setting: GroupSetting,
    ) -> Result<(), EngineError> {
        let client = self.group_client(name)?;
        let groups = client.groups();
        let g = group.clone();
        let r = match setting {
            GroupSetting::Announce(on) => groups.set_announce(g, on).await,
            GroupSetting::Locked(on) => groups.set_locked(g, on).await,
            GroupSetting::Approval(on) => {
                let mode = if on {
                    MembershipApprovalMode::On
                } else {
                    MembershipApprovalMode::Off
                };
                groups.set_membership_approval(g, mode).await
            }
            GroupSetting::AdminAdd(admins) => {
                let mode = if admins {
                    MemberAddMode::AdminAdd
                } else {
                    MemberAddMode::AllMemberAdd
                };
                groups.set_member_add_mode(g, mode).await
            }
        };
        r.map_err(|e| group_failed("change the group setting", e))
    }

    /// `https://chat.whatsapp.com/CODE`; `reset` revokes the old code first.
    pub async fn group_invite_link(
        &self,
        name: &str,
        group: &Jid,
        reset: bool,
    ) -> Result<String, EngineError> {
        let client = self.group_client(name)?;
        client
            .groups()
            .get_invite_link(group.clone(), reset)
            .await
            .map_err(|e| group_failed("get the group invite link", e))
    }

    /// The group behind an invite code, without joining.
    pub async fn group_invite_info(
        &self,
        name: &str,
        code: &str,
    ) -> Result<GroupMetadata, EngineError> {
        let client = self.group_client(name)?;
        client
            .groups()
            .get_invite_info(code)
            .await
            .map_err(|e| group_failed("read the invite", e))
    }

    pub async fn group_join(&self, name: &str, code: &str) -> Result<Joined, EngineError> {
        let client = self.group_client(name)?;
        match client.groups().join_with_invite_code(code).await {
            Ok(JoinGroupResult::Joined(j)) => Ok(Joined::Member(j)),
            Ok(JoinGroupResult::PendingApproval(j)) => Ok(Joined::Pending(j)),
            Err(e) => Err(group_failed("join with the invite", e)),
        }
    }

    pub async fn group_requests(
        &self,
        name: &str,
        group: &Jid,
    ) -> Result<Vec<MembershipRequest>, EngineError> {
        let client = self.group_client(name)?;
        client
            .groups()
            .get_membership_requests(group.clone())
            .await
            .map_err(|e| group_failed("list the join requests", e))
    }

    /// The groups linked to a community (404 when the community is unknown).
    pub async fn community_groups(
        &self,
        name: &str,
        community: &Jid,
    ) -> Result<Vec<CommunitySubgroup>, EngineError> {
        // The sub-group query is GraphQL, whose errors carry no IQ code: ask for the
        // community itself first, so an unknown one is a 404.
        self.group_info(name, community).await?;
        let client = self.group_client(name)?;
        client
            .community()
            .get_subgroups(community)
            .await
            .map_err(|e| community_failed("list the community groups", e))
    }

    /// Links (`link: true`) or unlinks a group to or from a community.
    pub async fn community_link(
        &self,
        name: &str,
        community: &Jid,
        group: &Jid,
        link: bool,
    ) -> Result<(), EngineError> {
        let client = self.group_client(name)?;
        let c = client.community();
        let groups = std::slice::from_ref(group);
        let failed = if link {
            c.link_subgroups(community.clone(), groups)
                .await
                .map(|r| r.failed_groups)
        } else {
            c.unlink_subgroups(community.clone(), groups, false)
                .await
                .map(|r| r.failed_groups)
        }
        .map_err(|e| {
            community_failed(
                if link {
                    "link the group"
                } else {
                    "unlink the group"
                },
                e,
            )
        })?;
        match failed.first() {
            None => Ok(()),
            Some((jid, 404)) if !link => Err(EngineError::NotFound(format!(
                "group {jid} is not linked to this community"
            ))),
            Some((jid, code)) => Err(EngineError::Action(format!(
                "failed to {} group {jid}: WhatsApp answered {code}",
                if link { "link" } else { "unlink" }
            ))),
        }
    }
}
