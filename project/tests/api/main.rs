//! Integration tests of the `chat` server: one test binary (linking axum, tokio and redis once),
//! one module per feature. Each behaviour runs on both backends (see `on_both_backends!`).
//!
//! `TEST_LOG=1` shows the server's logs; `REQUIRE_REDIS=1` turns a missing Redis into a failure.

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
mod supervision;
mod ws_delivery;
mod ws_presence;
mod ws_protocol;
mod ws_rfc6455;
mod ws_upgrade;
