//! Integration tests of the `chat` server: one test binary (linking axum, tokio and redis once),
//! one module per feature. Each behaviour runs on both backends (see `on_both_backends!`).
//!
//! `TEST_LOG=1` shows the server's logs. A test that needs what the machine lacks says so on
//! stderr (`OMITIDA …`) and is listed again after the run (see `skip.rs`); `REQUIRE_REDIS=1`,
//! `REQUIRE_BROWSER=1`, `REQUIRE_NGINX=1`, `REQUIRE_SMTP=1` and `REQUIRE_CHAT_BINARY=1` (all set
//! by `.ci/run`) turn each of those skips into a failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod backend_suite;
mod browser;
mod cache;
mod cluster;
mod dashboard;
mod deploy;
mod helpers;
mod http_basics;
mod jobs;
mod limits;
mod members;
mod operations;
mod process;
mod redis_recovery;
mod redis_server;
mod rooms;
mod rooms_changed;
mod supervision;
mod ws_delivery;
mod ws_presence;
mod ws_protocol;
mod ws_rfc6455;
mod ws_upgrade;
