//! `chat-bench`: a load generator for any server that implements the chat contract
//! (`../shared/spec/chat-protocol.md`), and a bare broadcast server to compare it with.
//!
//! - [`target`]: where the load goes (loopback only) and what kind of server it is.
//! - [`client`]: accounts, tokens, rooms and WebSocket connections, as the contract defines them.
//! - [`scenarios`]: `fanout`, `idle`, `join-storm`, `sse`, `jobs`; each returns a [`report::Run`].
//! - [`baseline`]: the yardstick, a minimal axum broadcast server.
//! - [`report`]: the human summary, the JSON line and the Markdown report.

pub mod baseline;
pub mod client;
pub mod latency;
pub mod procfs;
pub mod progress;
pub mod report;
pub mod scenarios;
pub mod target;
