//! Integration tests: the real server on port 0, real Postgres/SQLite/Redis, spoken to over HTTP.

mod helpers;
mod wa;

mod auth;
mod chat_actions;
mod communities;
mod contacts;
mod device_store;
mod engine;
mod errors;
mod events;
mod groups;
mod health;
mod incoming_events;
mod media;
mod openapi;
mod process;
mod profile;
mod ratelimit;
mod readme;
mod resilience;
mod rich_messages;
mod sessions;
mod settings;
mod store_contract;
mod webhooks;
