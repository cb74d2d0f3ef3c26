//! onwapp-rs: an OnWapp-compatible WhatsApp REST bridge.
//!
//! `main.rs` only parses the configuration and runs [`app::App`]; everything else lives here so
//! tests and benchmarks can build the whole router without a socket.

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod dotenv;
pub mod engine;
pub mod error;
pub mod events;
pub mod http;
pub mod media;
pub mod observability;
pub mod ratelimit;
pub mod shards;
pub mod store;
pub mod webhooks;
