//! Newsletters (channels) through a connected session's client: metadata over `w:mex`
//! (create, info, the subscribed list, follow, unfollow, mute), history and live updates
//! over `newsletter` IQs, reactions and views as plaintext stanzas.

use serde_json::{Value, json};
use whatsapp_rust::features::{
    NewsletterError, NewsletterMessage, NewsletterMetadata, NewsletterRole, NewsletterState,
    NewsletterVerification,
};
use whatsapp_rust::{IqError, Jid, NodeBuilder};

use super::{Engine, EngineError, events::payload::proto};

/// How many messages `GET newsletter/messages` asks for (OnWapp's fixed count).
pub const MESSAGE_COUNT: u32 = 50;

/// Why a newsletter action failed.
#[derive(Debug, thiserror::Error)]
pub enum NewsletterFailure {
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// WhatsApp does not know this newsletter.
    #[error("newsletter {0} not found")]
    NotFound(String),
    #[error("failed to {0}")]
    Failed(String),
}

impl From<NewsletterFailure> for crate::error::ApiError {
    fn from(e: NewsletterFailure) -> Self {
        match e {
            NewsletterFailure::Engine(e) => e.into(),
            NewsletterFailure::NotFound(_) => Self::NotFound(e.to_string()),
            NewsletterFailure::Failed(_) => Self::Upstream(e.to_string()),
        }
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> NewsletterFailure {
    NewsletterFailure::Failed(format!("{what}: {e}"))
}

/// A `newsletter` IQ answered 404: the channel is unknown.
fn iq_not_found(e: &NewsletterError) -> bool {
    matches!(
        e,
        NewsletterError::Iq(IqError::ServerError { code: 404, .. })
    )
}

/// The metadata as whatsmeow's `NewsletterMetadata` serialises (`id`, `state`,
/// `thread_metadata`, `viewer_metadata`).
pub fn metadata_json(m: &NewsletterMetadata) -> Value {
    let state = match m.state {
        NewsletterState::Suspended => "suspended",
        NewsletterState::Geosuspended => "geosuspended",
        _ => "active",
    };
    let verification = match m.verification {
        NewsletterVerification::Verified => "verified",
        _ => "unverified",
    };
    let role = m.role.as_ref().map(|r| match r {
        NewsletterRole::Owner => "owner",
        NewsletterRole::Admin => "admin",
        NewsletterRole::Subscriber => "subscriber",
        _ => "guest",
    });
    let picture = |p: &Option<String>| p.as_ref().map(|d| json!({ "direct_path": d }));
    json!({
        "id": m.jid.to_string(),
        "state": { "type": state },
        "thread_metadata": {
            "creation_time": m.creation_time.map(|t| t.to_string()).unwrap_or_default(),
            "invite": m.invite_code.clone().unwrap_or_default(),
            "name": { "text": m.name },
            "description": { "text": m.description.clone().unwrap_or_default() },
            "subscribers_count": m.subscriber_count.to_string(),
            "verification": verification,
            "picture": picture(&m.picture_url),
            "preview": picture(&m.preview_url),
        },
        "viewer_metadata": { "role": role },
    })
}

/// One history message as whatsmeow's `NewsletterMessage` serialises.
fn message_json(m: &NewsletterMessage) -> Value {
    let reactions: serde_json::Map<String, Value> = m
        .reactions
        .iter()
        .map(|r| (r.code.clone(), json!(r.count)))
        .collect();
    json!({
        "MessageServerID": m.server_id,
        "MessageID": m.message_id,
        "Type": m.message_type.as_str(),
        "Timestamp": m.timestamp,
        "IsSender": m.is_sender,
        "ReactionCounts": reactions,
        "Message": m.message.as_ref().map(proto),
    })
}

impl Engine {
    fn newsletter_client(
        &self,
        name: &str,
    ) -> Result<std::sync::Arc<whatsapp_rust::Client>, NewsletterFailure> {
        Ok(self.connected(name)?.client().clone())
    }

    /// Creates a channel owned by the session's account.
    pub async fn newsletter_create(
        &self,
        name: &str,
        title: &str,
        description: Option<&str>,
    ) -> Result<Value, NewsletterFailure> {
        let client = self.newsletter_client(name)?;
        let m = client
            .newsletter()
            .create(title, description)
            .await
            .map_err(|e| failed("create the newsletter", e))?;
        Ok(metadata_json(&m))
    }

    /// The channels the account owns or follows.
    pub async fn newsletter_list(&self, name: &str) -> Result<Vec<Value>, NewsletterFailure> {
        let client = self.newsletter_client(name)?;
        let list = client
            .newsletter()
            .list_subscribed()
            .await
            .map_err(|e| failed("list the newsletters", e))?;
        Ok(list.iter().map(metadata_json).collect())
    }

    /// A channel's metadata; `NotFound` when WhatsApp answers none.
    pub async fn newsletter_info(&self, name: &str, jid: &Jid) -> Result<Value, NewsletterFailure> {
        let client = self.newsletter_client(name)?;
        match client.newsletter().get_metadata(jid).await {
            Ok(m) => Ok(metadata_json(&m)),
            Err(NewsletterError::InvalidRequest(why))
                if why.starts_with("newsletter not found") =>
            {
                Err(NewsletterFailure::NotFound(jid.to_string()))
            }
            Err(e) => Err(failed("get the newsletter", e)),
        }
    }

    /// Follows (`true`) or unfollows a channel.
    pub async fn newsletter_follow(
        &self,
        name: &str,
        jid: &Jid,
        follow: bool,
    ) -> Result<(), NewsletterFailure> {
        self.newsletter_info(name, jid).await?;
        let client = self.newsletter_client(name)?;
        let nl = client.newsletter();
        if follow {
            nl.join(jid).await.map(|_| ())
        } else {
            nl.leave(jid).await
        }
        .map_err(|e| failed(if follow { "follow" } else { "unfollow" }, e))
    }

    /// Mutes or unmutes a channel's notifications for the account.
    pub async fn newsletter_mute(
        &self,
        name: &str,
        jid: &Jid,
        mute: bool,
    ) -> Result<(), NewsletterFailure> {
        self.newsletter_info(name, jid).await?;
        self.newsletter_client(name)?
            .newsletter()
            .set_follower_mute(jid, mute)
            .await
            .map_err(|e| failed("mute the newsletter", e))
    }

    /// The channel's latest messages.
    pub async fn newsletter_messages(
        &self,
        name: &str,
        jid: &Jid,
    ) -> Result<Vec<Value>, NewsletterFailure> {
        let client = self.newsletter_client(name)?;
        match client
            .newsletter()
            .get_messages(jid.clone(), MESSAGE_COUNT, None)
            .await
        {
            Ok(list) => Ok(list.iter().map(message_json).collect()),
            Err(e) if iq_not_found(&e) => Err(NewsletterFailure::NotFound(jid.to_string())),
            Err(e) => Err(failed("get the newsletter messages", e)),
        }
    }

    /// Reacts to the message `server_id` (an empty emoji removes the reaction).
    pub async fn newsletter_react(
        &self,
        name: &str,
        jid: &Jid,
        server_id: u64,
        reaction: &str,
    ) -> Result<(), NewsletterFailure> {
        self.newsletter_info(name, jid).await?;
        self.newsletter_client(name)?
            .newsletter()
            .send_reaction(jid, server_id, reaction)
            .await
            .map_err(|e| failed("react", e))
    }

    /// Marks messages viewed: `<receipt type="view">` listing their server ids, as
    /// whatsmeow's `NewsletterMarkViewed` sends it (whatsapp-rust has no call for it).
    pub async fn newsletter_viewed(
        &self,
        name: &str,
        jid: &Jid,
        server_ids: &[u64],
    ) -> Result<(), NewsletterFailure> {
        self.newsletter_info(name, jid).await?;
        let client = self.newsletter_client(name)?;
        let items = server_ids.iter().map(|id| {
            NodeBuilder::new("item")
                .attr("server_id", id.to_string())
                .build()
        });
        let node = NodeBuilder::new("receipt")
            .attr("to", jid.to_string())
            .attr("type", "view")
            .attr("id", client.generate_message_id())
            .children([NodeBuilder::new("list").children(items).build()])
            .build();
        client
            .send_node(node)
            .await
            .map_err(|e| failed("mark the messages viewed", e))
    }

    /// Subscribes to live updates; the duration the server granted, in seconds.
    pub async fn newsletter_subscribe_live(
        &self,
        name: &str,
        jid: &Jid,
    ) -> Result<u64, NewsletterFailure> {
        let client = self.newsletter_client(name)?;
        match client
            .newsletter()
            .subscribe_live_updates(jid.clone())
            .await
        {
            Ok(secs) => Ok(secs),
            Err(e) if iq_not_found(&e) => Err(NewsletterFailure::NotFound(jid.to_string())),
            Err(e) => Err(failed("subscribe to live updates", e)),
        }
    }
}

/// A Go duration string (`5m0s`, `1h0m0s`, `45s`) for whole seconds.
pub fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::go_duration;

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(300), "5m0s");
        assert_eq!(go_duration(45), "45s");
        assert_eq!(go_duration(3600), "1h0m0s");
    }
}
