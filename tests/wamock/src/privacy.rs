//! Each account's privacy settings and default disappearing-messages timer, as its devices
//! set them: `<iq xmlns="privacy">` get (`<privacy/>` → `<privacy><category name value/>…`)
//! and set (`<privacy><category name value/></privacy>`, answered with the category as
//! stored, which whatsapp-rust's `SetPrivacySettingSpec` parses), and `<iq
//! xmlns="disappearing_mode"><disappearing_mode duration/>` (`SetDefaultDisappearingModeSpec`).

use std::collections::BTreeMap;

use serde_json::{Value, json};
use wacore::iq::privacy::{PrivacyCategory, PrivacyValue};
use wacore_binary::Node;
use wacore_binary::builder::NodeBuilder;

use crate::iq::{Answer, IqContext, Refusal};
use crate::nodes::{attr, child};
use crate::state::State;

/// WhatsApp's defaults for a new account.
pub const DEFAULTS: [(&str, &str); 9] = [
    ("last", "all"),
    ("online", "all"),
    ("profile", "all"),
    ("status", "contacts"),
    ("groupadd", "all"),
    ("readreceipts", "all"),
    ("calladd", "all"),
    ("messages", "all"),
    ("defense", "off"),
];

/// One account's settings.
#[derive(Debug, Clone)]
pub struct Privacy {
    /// Category → value, by wire name (`last`, `readreceipts`, ...).
    pub categories: BTreeMap<String, String>,
    /// Seconds; 0 is off.
    pub disappearing_duration: u32,
}

impl Default for Privacy {
    fn default() -> Self {
        Self {
            categories: DEFAULTS
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            disappearing_duration: 0,
        }
    }
}

impl Privacy {
    /// Sets `name` to `value` when the client accepts that pair (`is_valid_value`).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let category = PrivacyCategory::from(name);
        if matches!(category, PrivacyCategory::Other(_)) {
            return Err(format!("unknown privacy category {name:?}"));
        }
        if !category.is_valid_value(&PrivacyValue::from(value)) {
            return Err(format!("{value:?} is not a value of {name:?}"));
        }
        self.categories.insert(name.to_string(), value.to_string());
        Ok(())
    }

    fn category_node(name: &str, value: &str) -> Node {
        NodeBuilder::new("category")
            .attr("name", name.to_string())
            .attr("value", value.to_string())
            .build()
    }

    fn list_node(&self) -> Node {
        NodeBuilder::new("privacy")
            .children(
                self.categories
                    .iter()
                    .map(|(k, v)| Self::category_node(k, v)),
            )
            .build()
    }

    /// `{"categories": {name: value}, "disappearingDuration": seconds}`.
    pub fn view(&self) -> Value {
        json!({"categories": self.categories, "disappearingDuration": self.disappearing_duration})
    }
}

/// `<iq xmlns="privacy">`: get answers every category, set changes one.
pub fn answer(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let device = ctx
        .device
        .ok_or_else(|| Refusal::new(401, "not-authorized"))?;
    let set = attr(iq, "type").as_deref() == Some("set");
    let change = if set {
        let category = child(iq, "privacy")
            .and_then(|p| child(p, "category"))
            .ok_or_else(|| Refusal::new(400, "bad-request: no category"))?;
        if child(category, "user").is_some() {
            return Err(Refusal::new(
                501,
                "wamock does not model disallowed lists (contact_blacklist users)",
            ));
        }
        let name = attr(category, "name").unwrap_or_default();
        let value = attr(category, "value").unwrap_or_default();
        Some((name, value))
    } else {
        None
    };
    ctx.state
        .with_account(&device.phone, false, |account| match change {
            Some((name, value)) => {
                account
                    .privacy
                    .set(&name, &value)
                    .map_err(|e| Refusal::new(400, format!("bad-request: {e}")))?;
                tracing::debug!(phone = %device.phone, %name, %value, "privacy set");
                Ok(vec![
                    NodeBuilder::new("privacy")
                        .children([Privacy::category_node(&name, &value)])
                        .build(),
                ])
            }
            None => Ok(vec![account.privacy.list_node()]),
        })
        .unwrap_or_else(|| Err(Refusal::new(404, "item-not-found")))
}

/// `<iq xmlns="disappearing_mode" type="set"><disappearing_mode duration/>`.
pub fn disappearing_mode(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let device = ctx
        .device
        .ok_or_else(|| Refusal::new(401, "not-authorized"))?;
    let duration: u32 = child(iq, "disappearing_mode")
        .and_then(|d| attr(d, "duration"))
        .and_then(|d| d.parse().ok())
        .ok_or_else(|| Refusal::new(400, "bad-request: duration"))?;
    ctx.state
        .with_account(&device.phone, false, |a| {
            a.privacy.disappearing_duration = duration
        })
        .ok_or_else(|| Refusal::new(404, "item-not-found"))?;
    tracing::debug!(phone = %device.phone, duration, "default disappearing mode set");
    Ok(Vec::new())
}

/// What the admin API shows of an account's settings.
pub fn view(state: &State, phone: &str) -> Option<Value> {
    state.with_account(phone, false, |a| a.privacy.view())
}

/// Changes an account's settings as its phone would (`{"last": "none", ...}`); the first
/// refused pair is the error and nothing changes then.
pub fn change(
    state: &State,
    phone: &str,
    values: &BTreeMap<String, String>,
) -> Option<Result<Value, String>> {
    state.with_account(phone, false, |a| {
        let mut next = a.privacy.clone();
        for (k, v) in values {
            next.set(k, v)?;
        }
        a.privacy = next;
        Ok(a.privacy.view())
    })
}
