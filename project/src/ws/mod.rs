//! The WebSocket endpoint `/ws`: protocol frames, the per-connection loop and the local hub.

pub mod hub;
