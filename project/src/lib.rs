//! `chat`: the real-time chat server of week 10, the course's final project.
//!
//! - [`app`] assembles everything and serves it ([`app::App::serve`]) through [`server`], the
//!   accept loop and its limits.
//! - [`auth`], [`rooms`] and [`ws`] are the three faces of the contract
//!   (`../shared/spec/chat-protocol.md`): accounts, REST rooms, and the WebSocket protocol.
//! - [`backend`] hides where data lives: in this process, or in Redis for several nodes.
//! - [`health`] answers `/health` and `/ready`; [`events`] holds the activity events that the
//!   connections and the jobs report and the dashboard shows.
//!
//! Dependencies point one way: handlers and services take only the handles they use (axum's
//! `FromRef` substates of [`AppState`]), and [`app`] is the only module that knows every other.

pub mod api_schema;
pub mod app;
pub mod auth;
pub mod backend;
pub mod cache;
pub mod config;
pub mod connections;
pub mod dashboard;
pub mod domain;
pub mod error;
pub mod events;
pub mod health;
pub mod jobs;
pub mod mentions;
pub mod metrics;
pub mod openapi;
pub mod rooms;
pub mod server;
mod supervisor;
pub mod telemetry;
pub mod web;
pub mod ws;

pub use app::{App, AppState};
pub use config::Config;
