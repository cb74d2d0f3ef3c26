//! Small helpers for reading and building stanzas.

use wacore_binary::builder::NodeBuilder;
use wacore_binary::{Node, NodeContent, SERVER_JID};

/// An attribute as text.
pub fn attr(node: &Node, key: &str) -> Option<String> {
    node.attrs.get(key).map(|v| v.as_str().into_owned())
}

/// The bytes content of a node.
pub fn bytes(node: &Node) -> Option<&[u8]> {
    match &node.content {
        Some(NodeContent::Bytes(b)) => Some(b),
        _ => None,
    }
}

/// The first child with this tag.
pub fn child<'a>(node: &'a Node, tag: &str) -> Option<&'a Node> {
    node.get_optional_child(tag)
}

/// `<iq type="result">` answering `request`, with these children.
pub fn iq_result(request: &Node, children: Vec<Node>) -> Node {
    let mut b = iq_reply(request, "result");
    if !children.is_empty() {
        b = b.children(children);
    }
    b.build()
}

/// `<iq type="error"><error code text/></iq>` answering `request`.
pub fn iq_error(request: &Node, code: u16, text: &str) -> Node {
    iq_reply(request, "error")
        .children([NodeBuilder::new("error")
            .attr("code", code.to_string())
            .attr("text", text)
            .build()])
        .build()
}

fn iq_reply(request: &Node, kind: &'static str) -> NodeBuilder {
    let from = attr(request, "to").unwrap_or_else(|| SERVER_JID.to_string());
    NodeBuilder::new("iq")
        .attr("type", kind)
        .attr("id", attr(request, "id").unwrap_or_default())
        .attr("from", from)
}

/// A server-initiated `<iq>` of this namespace and type.
pub fn server_iq(id: &str, xmlns: &'static str, kind: &'static str, children: Vec<Node>) -> Node {
    NodeBuilder::new("iq")
        .attr("from", SERVER_JID)
        .attr("id", id)
        .attr("type", kind)
        .attr("xmlns", xmlns)
        .children(children)
        .build()
}

/// A JID attribute.
pub fn jid_attr(node: &Node, key: &str) -> Option<wacore_binary::Jid> {
    node.attrs.get(key).and_then(|v| v.to_jid())
}

/// `<stream:error><conflict type="..."/></stream:error>`: `replaced` for a second login
/// of the same device, `device_removed` when the phone unlinks it.
pub fn conflict(kind: &str) -> Node {
    NodeBuilder::new("stream:error")
        .children([NodeBuilder::new("conflict").attr("type", kind).build()])
        .build()
}

/// `<stream:error code="..."/>`.
pub fn stream_error(code: &str) -> Node {
    NodeBuilder::new("stream:error").attr("code", code).build()
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
