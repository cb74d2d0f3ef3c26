//! The request path, outermost first: trace context, [`forward_first`] (a request for a session
//! another node owns leaves here, after its rate limit), request id, trace span, panic guard,
//! CORS, then [`edge`] (metrics, security headers, body limit 413, timeout 504) and, per matched
//! route, [`route`] (route template, rate limit 429, forwarding) and [`require_auth`] (401).
//!
//! Few layers on purpose: every `from_fn` layer clones its inner service on each request.

mod auth;
mod edge;
mod forward_first;
mod route;

pub use auth::require_auth;
pub use edge::edge;
pub use forward_first::{forward_first, session_segment};
pub use route::{RouteTemplate, route};
