//! `<iq xmlns="w:mex"><query query_id>{"variables": ...}</query>`: the GraphQL queries
//! wamock models. Only `WAWebMexFetchAllSubgroupsJobQuery` (a community's linked
//! groups, whatsapp-rust's `community().get_subgroups`); others get a GraphQL error.

use serde_json::{Value, json};
use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Jid, Node, NodeContent};

use crate::iq::{Answer, IqContext, Refusal};
use crate::nodes::{attr, child};

/// `wacore::iq::mex_operations::fetch_all_subgroups::DOC_ID`.
const FETCH_ALL_SUBGROUPS: &str = "9935467776504344";

fn result(body: Value) -> Answer {
    Ok(vec![
        NodeBuilder::new("result")
            .bytes(body.to_string().into_bytes())
            .build(),
    ])
}

pub fn answer(ctx: &IqContext<'_>, iq: &Node) -> Answer {
    let me = ctx
        .device
        .ok_or_else(|| Refusal::new(401, "not-authorized"))?
        .phone
        .clone();
    let query = child(iq, "query").ok_or_else(|| Refusal::new(400, "bad-request"))?;
    let payload: Value = match &query.content {
        Some(NodeContent::Bytes(b)) => serde_json::from_slice(b).unwrap_or(Value::Null),
        Some(NodeContent::String(s)) => serde_json::from_str(s).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    if attr(query, "query_id").as_deref() != Some(FETCH_ALL_SUBGROUPS) {
        tracing::info!(query_id = ?attr(query, "query_id"), "mex query not modelled by wamock");
        return result(json!({"errors": [{"message": "not modelled by wamock",
            "extensions": {"error_code": 501, "severity": "CRITICAL"}}]}));
    }
    let id = payload["variables"]["group_id"]
        .as_str()
        .and_then(|g| g.parse::<Jid>().ok())
        .map(|j| j.user.to_string())
        .unwrap_or_default();
    let Some(parent) = ctx.state.groups.get(&id) else {
        return result(json!({"errors": [{"message": "group not found",
            "extensions": {"error_code": 404, "severity": "CRITICAL"}}]}));
    };
    if parent.role(&me).is_none() {
        return result(json!({"errors": [{"message": "not a member",
            "extensions": {"error_code": 403, "severity": "CRITICAL"}}]}));
    }
    let edges: Vec<Value> = ctx
        .state
        .groups
        .linked(&id)
        .iter()
        .map(|g| {
            json!({"node": {
                "id": g.jid().to_string(),
                "subject": {"value": g.subject, "creation_time": g.subject_time},
                "participants_count": g.participants.len(),
                "creation_time": g.creation,
                "creator": Jid::pn(g.creator.clone()).to_string(),
            }})
        })
        .collect();
    result(json!({"data": {"xwa2_group_query_by_id": {
        "id": parent.jid().to_string(),
        "sub_groups": {"edges": edges},
    }}}))
}
