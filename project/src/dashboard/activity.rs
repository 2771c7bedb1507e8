//! The activity events the dashboard shows. They live in [`crate::events`], a leaf that the
//! modules reporting them import too; re-exported here for the WebSocket connection, which
//! still names them by this path.

pub use crate::events::{ACTIVITY_QUEUE, Activity, ActivityFeed, ActivityKind};
