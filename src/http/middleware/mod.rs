//! The request path, outermost first: request id, trace span, panic guard, CORS, then [`edge`]
//! (metrics, security headers, body limit 413, timeout 504) and, per matched route, [`route`]
//! (route template, rate limit 429) and [`require_auth`] (401).
//!
//! Few layers on purpose: every `from_fn` layer clones its inner service on each request.

mod auth;
mod edge;
mod route;

pub use auth::require_auth;
pub use edge::edge;
pub use route::route;
