//! Metric names, in one place, so that every module reports under the names the contract and
//! the dashboards expect. Recording goes through the `metrics` facade macros.

/// Gauge: open WebSocket connections on this node.
pub const CONNECTIONS: &str = "chat_connections";
/// Counter: messages stored (not counting idempotent repeats).
pub const MESSAGES_TOTAL: &str = "chat_messages_total";
/// Counter with label `status`: every job transition into `done`, `failed` or `dead`.
pub const JOBS_TOTAL: &str = "chat_jobs_total";
/// Gauge: jobs waiting to run.
pub const JOBS_QUEUE_DEPTH: &str = "chat_jobs_queue_depth";
/// Histogram with labels `method`, `path` (the matched route) and `status`.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Gauge: open SSE dashboard streams on this node.
pub const SSE_SUBSCRIBERS: &str = "chat_sse_subscribers";
/// Counters with label `cache` (`rooms`, `admin_stats`).
pub const CACHE_HITS_TOTAL: &str = "chat_cache_hits_total";
pub const CACHE_MISSES_TOTAL: &str = "chat_cache_misses_total";
