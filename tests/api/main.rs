//! Integration tests: the real server on port 0, real Postgres/SQLite/Redis, spoken to over HTTP.

mod helpers;
mod wa;

mod auth;
mod calls;
mod chat_actions;
mod cluster;
mod communities;
mod contacts;
mod device_store;
mod engine;
mod errors;
mod events;
mod fence;
mod groups;
mod health;
mod incoming_events;
mod media;
mod newsletters;
mod openapi;
mod process;
mod profile;
mod ratelimit;
mod readme;
mod resilience;
mod rich_messages;
mod sessions;
mod settings;
mod settings_sync;
mod status;
mod store_contract;
mod webhook_crash;
mod webhook_delivery;
mod webhooks;
