//! The live dashboard: activity events, the per-second stats snapshot, and the SSE stream.

pub mod activity;
