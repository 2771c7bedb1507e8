//! Events that cross layers, kept in a leaf so that the modules that report them (the
//! connections, the jobs) and the one that shows them (the dashboard) need not import each
//! other.
//!
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
            tracing::warn!(kind = ?dropped.kind, "cola de actividad llena: se descarta un evento");
        }
    }
}

// Room events: what the backends hand to the local hub, which offers them to this node's
// WebSocket connections. They are here, and not in `ws`, so that the backends (one layer below
// `ws`) can deliver them through [`EventSink`] without importing the hub.

/// One event for the connections that joined a room, already serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    pub room: crate::domain::RoomId,
    /// The message id when the frame is a `message` (connections use it to skip what their
    /// `joined` history already contained).
    pub message_id: Option<u64>,
    /// Which of the room's connections get it.
    pub audience: Audience,
    pub frame: axum::extract::ws::Utf8Bytes,
}

/// The `rooms_changed` frame (an extension of this implementation, see `PROTOCOL.md`): the list
/// of rooms its user can see changed, so the client asks `GET /rooms` again.
pub const ROOMS_CHANGED_FRAME: &str = r#"{"type":"rooms_changed"}"#;

impl RoomEvent {
    /// A `rooms_changed` frame about `room` for `audience`: [`Audience::AllUsers`] when a
    /// public room was created, [`Audience::User`] when someone gained or lost a private one.
    pub fn rooms_changed(room: crate::domain::RoomId, audience: Audience) -> Self {
        Self {
            room,
            message_id: None,
            audience,
            frame: ROOMS_CHANGED_FRAME.into(),
        }
    }
}

/// Who, among a room's connections, receives a [`RoomEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience {
    Everyone,
    /// All but this user's connections (the author of `typing`, or of a presence change).
    AllBut(String),
    /// Only this user's connections, which lose access to the room: they leave it and receive
    /// the frame (a `left`). This is how a removal from a private room reaches every node.
    Revoked(String),
    /// Every connection of this user, on any node, whether it joined the room or not: a
    /// `notification` about the room (a mention), or a `rooms_changed`.
    User(String),
    /// Every connection of every user, on every node, joined to rooms or not: the
    /// `rooms_changed` of a new public room, which everyone may see.
    AllUsers,
    /// The connections that get a batch of presence changes (`frame` is unused; the batch
    /// holds one frame per user): see the hub's presence windows (`ws::hub::window`).
    Presence(std::sync::Arc<PresenceBatch>),
}

/// The presence changes of one window, as every recipient gets them: one `presence` frame per
/// user, serialized once and shared by every connection (an `Arc` in the queue item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceBatch {
    /// The hub (node) that made the batch.
    pub origin: uuid::Uuid,
    /// Its number on that node.
    pub seq: u64,
    pub changes: Vec<PresenceChange>,
}

/// One user's new status in a [`PresenceBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceChange {
    /// Whose status changed; their own connections do not get the frame.
    pub user: String,
    /// The `presence` frame.
    pub frame: axum::extract::ws::Utf8Bytes,
}

/// Where a backend delivers the room events it stores or receives: the local hub
/// (`ws::hub::Hub` implements it).
///
/// Why a trait: the backends sit a layer below `ws`. They must hand each message to this
/// node's connections in the same step that stores it (the in-process log) or as it arrives
/// from Redis (the pub/sub listener), but importing the hub would make the storage layer depend
/// on the WebSocket layer above it. With this trait they know only what they call.
pub trait EventSink: Send + Sync {
    /// Offers the event to this node's connections in its audience. Never waits (a full
    /// connection queue closes that connection instead), so it may be called with a lock held.
    fn deliver(&self, event: RoomEvent);
    /// Tells every local connection that it may have missed events (this node's subscription
    /// was lost for a while), so that its client rejoins with `since`.
    fn resync_everyone(&self);
}
