//! The request path, outermost first: request id, trace span, metrics, security headers, CORS,
//! body limit (413), timeout, then per matched route: rate limit (429) and authentication (401).

mod auth;
mod limits;
mod metrics;
mod ratelimit;

pub use auth::require_auth;
pub use limits::{body_limit, security_headers, timeout};
pub use metrics::{record_route, track_metrics};
pub use ratelimit::rate_limit;
