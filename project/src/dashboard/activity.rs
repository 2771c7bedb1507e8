//! Activity events: what happens in the chat (joins, leaves, messages, job transitions), as
//! the dashboard shows it. Never the text of a message.

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::domain::now_rfc3339;

/// What kind of thing happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActivityKind {
    Join,
    Leave,
    Message,
    Job,
}

/// One activity event, as the `data` of an SSE `activity` event (its `id:` is assigned when it
/// is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub kind: ActivityKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    pub ts: String,
}

impl Activity {
    fn new(kind: ActivityKind) -> Self {
        Self {
            kind,
            room: None,
            user: None,
            message_id: None,
            job_id: None,
            status: None,
            ts: now_rfc3339(),
        }
    }

    /// A connection joined a room it was not in (a repeated join is not reported).
    pub fn join(room: &str, user: &str) -> Self {
        Self {
            room: Some(room.into()),
            user: Some(user.into()),
            ..Self::new(ActivityKind::Join)
        }
    }

    /// A connection left a room: by `leave`, by disconnecting, or by losing access to it.
    pub fn leave(room: &str, user: &str) -> Self {
        Self {
            room: Some(room.into()),
            user: Some(user.into()),
            ..Self::new(ActivityKind::Leave)
        }
    }

    /// A message was stored; the text is deliberately not part of it.
    pub fn message(room: &str, user: &str, message_id: u64) -> Self {
        Self {
            room: Some(room.into()),
            user: Some(user.into()),
            message_id: Some(message_id),
            ..Self::new(ActivityKind::Message)
        }
    }

    /// A background job moved to `status` (`pending`, `running`, `done`, `failed`, `dead`).
    pub fn job(job_id: &str, status: &str) -> Self {
        Self {
            job_id: Some(job_id.into()),
            status: Some(status.into()),
            ..Self::new(ActivityKind::Job)
        }
    }
}

/// How many activity events may wait to be stored before new ones are dropped (and counted in
/// the logs): the chat never waits for the dashboard.
pub const ACTIVITY_QUEUE: usize = 4096;

/// The hot paths' handle: `record` never awaits and never fails.
#[derive(Debug, Clone)]
pub struct ActivityFeed {
    queue: mpsc::Sender<Activity>,
}

impl ActivityFeed {
    /// A feed and the receiving end that the dashboard's recorder task drains.
    pub fn channel() -> (Self, mpsc::Receiver<Activity>) {
        let (queue, events) = mpsc::channel(ACTIVITY_QUEUE);
        (Self { queue }, events)
    }

    /// Hands an event to the recorder; if the recorder is behind, the event is dropped.
    pub fn record(&self, activity: Activity) {
        if let Err(mpsc::error::TrySendError::Full(dropped)) = self.queue.try_send(activity) {
            tracing::warn!(kind = ?dropped.kind, "activity queue full: event dropped");
        }
    }
}
