//! Storage and fan-out behind small traits, so the server runs on one machine with no services
//! ([`memory`]) or on many nodes that share Redis ([`redis`]).
//!
//! Each trait is one job: users, rooms, the message log (which also fans messages out, so that
//! storage order and delivery order are the same), presence, fan-out of other events, and the
//! login limiter. [`Backends`] bundles one implementation of each, chosen at start-up.

pub mod memory;
pub mod redis;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use axum::extract::ws::Utf8Bytes;

use crate::domain::{Room, RoomId, UserRecord};
/// The events the backends deliver live in the `events` leaf; re-exported here because every
/// user of a backend names them.
pub use crate::events::{Audience, EventSink, PresenceBatch, PresenceChange, RoomEvent};

/// Failures of a backend. Client mistakes are not here: they are caught before the backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A unique key is taken; the text names which one, in Spanish.
    #[error("{0}")]
    Conflict(String),
    /// The backend did not answer (Redis down, for instance).
    #[error("backend no disponible: {0}")]
    Unavailable(String),
    /// The backend answered something it should never store.
    #[error("dato corrupto en el backend: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Accounts. Usernames and e-mails (case-insensitive) are unique.
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user; `Conflict` when the username or the e-mail is taken.
    async fn create_user(&self, record: UserRecord) -> StoreResult<()>;
    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>>;
}

/// Rooms and their members.
#[async_trait]
pub trait RoomStore: Send + Sync {
    /// Stores a new room (its creator becomes a member); `Conflict` when the id exists.
    async fn create_room(&self, room: Room) -> StoreResult<()>;
    async fn room(&self, id: &RoomId) -> StoreResult<Option<Room>>;
    /// Every room, ordered by id.
    async fn rooms(&self) -> StoreResult<Vec<Room>>;
    /// Adds a member; `true` when the user was not a member before.
    async fn add_member(&self, room: &RoomId, username: &str) -> StoreResult<bool>;
    /// Removes a member; `true` when the user was a member.
    async fn remove_member(&self, room: &RoomId, username: &str) -> StoreResult<bool>;
    async fn is_member(&self, room: &RoomId, username: &str) -> StoreResult<bool>;
    async fn member_count(&self, room: &RoomId) -> StoreResult<u64>;
}

/// A message about to be stored: everything but its id.
#[derive(Debug, Clone)]
pub struct Draft {
    pub room: RoomId,
    pub user: String,
    pub text: String,
    pub client_id: Option<String>,
    pub ts: String,
}

/// A stored message as the exact JSON of its `message` frame, plus its id.
///
/// History is kept as frames so that history items are byte-for-byte the live frames and a
/// broadcast is serialized only once.
#[derive(Debug, Clone)]
pub struct StoredFrame {
    pub id: u64,
    pub json: Utf8Bytes,
}

/// What `append` did.
#[derive(Debug, Clone)]
pub struct Appended {
    pub frame: StoredFrame,
    /// `true` when `client_id` repeated an earlier send: nothing new was stored or broadcast,
    /// and `frame` is the original.
    pub duplicate: bool,
}

/// What [`MessageLog::append_checked`] did: the checks of a `send` that need the stored rooms
/// (in the contract's order: `not_found`, then `not_member`), then the append.
#[derive(Debug, Clone)]
pub enum Checked {
    /// Stored and broadcast: the new message's frame.
    Stored(StoredFrame),
    /// `client_id` repeated an earlier send: nothing new was stored or broadcast, and this is
    /// the original frame.
    Duplicate(StoredFrame),
    /// The room does not exist (a Redis emptied, say): nothing was stored.
    NotFound,
    /// The room is private and the author is not (or no longer) a member: nothing was stored.
    NotMember,
}

/// Which slice of a room's history to read; see the contract's `GET /rooms/{id}/messages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryQuery {
    /// The newest `limit` messages.
    Latest { limit: usize },
    /// The newest `limit` messages with id < `before`.
    Before { before: u64, limit: usize },
    /// The oldest `limit` messages with id > `after`.
    After { after: u64, limit: usize },
    /// The oldest `limit` messages with `after` < id < `before`.
    Between {
        after: u64,
        before: u64,
        limit: usize,
    },
}

/// A page of history, ascending by id.
#[derive(Debug, Clone, Default)]
pub struct HistoryPage {
    pub frames: Vec<StoredFrame>,
    /// More messages exist in the direction the query reads (older for `Latest`/`Before`,
    /// newer for `After`/`Between`).
    pub has_more: bool,
}

/// How long a `client_id` makes a send idempotent.
pub const IDEMPOTENCY_WINDOW: Duration = Duration::from_secs(600);

/// The message log of every room. Appending also broadcasts, atomically with the storage,
/// so every node delivers a room's messages in id order.
#[async_trait]
pub trait MessageLog: Send + Sync {
    /// Gives the draft the room's next id, stores it and broadcasts its frame to every node,
    /// unless `(user, room, client_id)` was seen within [`IDEMPOTENCY_WINDOW`].
    async fn append(&self, draft: Draft) -> StoreResult<Appended>;
    /// [`MessageLog::append`] after the checks of a `send` that read the stored rooms, in the
    /// contract's order: the room exists, then, if it is private, the author is a member. A
    /// `send` is the hot path: the Redis log does checks and append in one script (one round
    /// trip, and no removal can slip in between); this default asks `rooms` first.
    async fn append_checked(&self, rooms: &dyn RoomStore, draft: Draft) -> StoreResult<Checked> {
        let Some(room) = rooms.room(&draft.room).await? else {
            return Ok(Checked::NotFound);
        };
        if room.private && !rooms.is_member(&draft.room, &draft.user).await? {
            return Ok(Checked::NotMember);
        }
        let appended = self.append(draft).await?;
        Ok(if appended.duplicate {
            Checked::Duplicate(appended.frame)
        } else {
            Checked::Stored(appended.frame)
        })
    }
    async fn history(&self, room: &RoomId, query: HistoryQuery) -> StoreResult<HistoryPage>;
    /// The name of the room's history (`epoch` in `joined`, contract 1.1). It changes only when
    /// that history was lost and ids may start again (an in-process server restarted, a Redis
    /// emptied), so that a client's `since` from another epoch is never trusted.
    async fn epoch(&self, room: &RoomId) -> StoreResult<String>;
}

/// Identifies one WebSocket connection across the cluster (a UUID).
pub type ConnId = uuid::Uuid;

/// Who is online in each room, counted per connection so that a user with two tabs goes
/// offline only when the last one leaves.
#[async_trait]
pub trait Presence: Send + Sync {
    /// Records the connection in the room; `true` when it is the user's first one there.
    async fn join(&self, room: &RoomId, user: &str, conn: ConnId) -> StoreResult<bool>;
    /// Forgets the connection; `true` when it was the user's last one in the room.
    async fn leave(&self, room: &RoomId, user: &str, conn: ConnId) -> StoreResult<bool>;
    /// Usernames online in the room, sorted.
    async fn online(&self, room: &RoomId) -> StoreResult<Vec<String>>;
    /// Records one of the user's connections, joined to rooms or not, for as long as it lives:
    /// a mention notifies a connected user with a frame, and e-mails the others.
    async fn connect(&self, user: &str, conn: ConnId) -> StoreResult<()>;
    /// Forgets the connection recorded by [`Presence::connect`].
    async fn disconnect(&self, user: &str, conn: ConnId) -> StoreResult<()>;
    /// Whether the user has a live connection on any node.
    async fn is_connected(&self, user: &str) -> StoreResult<bool>;
}

/// Fan-out of the events that are not stored (presence, typing) to every node.
#[async_trait]
pub trait Fanout: Send + Sync {
    async fn publish(&self, event: RoomEvent) -> StoreResult<()>;
}

/// Login attempts per username, in a one-minute window that starts at the first one counted.
///
/// An attempt is counted *before* its password is checked, in one atomic step with the check of
/// the limit: counting after the (slow, on purpose) Argon2 verification would let many guesses
/// sent at once all see "fewer than 5 so far". A success resets the count, so what blocks is 5
/// attempts in a row that did not succeed.
#[async_trait]
pub trait LoginLimiter: Send + Sync {
    /// Counts one attempt, unless the username already has [`LOGIN_MAX_FAILURES`] in its
    /// current window: then nothing is counted and the answer is `Some(time left)`.
    async fn attempt(&self, username: &str) -> StoreResult<Option<Duration>>;
    /// Takes back an attempt whose password was never checked (no hashing slot was free): it
    /// neither failed nor succeeded.
    async fn refund(&self, username: &str) -> StoreResult<()>;
    /// A successful login: the count starts again.
    async fn reset(&self, username: &str) -> StoreResult<()>;
}

/// Events of one key in a sliding window: the rooms each user created in the last hour.
///
/// Each event is a ticket with its time; the window slides, so a user who created 30 rooms
/// between 10:00 and 10:20 may create the next one at 11:00, when the first leaves the window.
#[async_trait]
pub trait RoomQuota: Send + Sync {
    /// Takes one of the `limit` places of `user` in the `window` ending now: `Ok(ticket)`, or
    /// `Err(wait)` when all are taken (`wait`: until the oldest leaves the window).
    async fn take(
        &self,
        user: &str,
        limit: u64,
        window: Duration,
    ) -> StoreResult<Result<String, Duration>>;
    /// Gives back a place taken for a room that was not created: refused attempts do not count.
    async fn give_back(&self, user: &str, ticket: &str) -> StoreResult<()>;
}

/// Failures allowed per username and window before logins are refused.
pub const LOGIN_MAX_FAILURES: u64 = 5;
/// The login limiter's window.
pub const LOGIN_WINDOW: Duration = Duration::from_secs(60);

/// One implementation of every trait, shared by the whole server.
#[derive(Clone)]
pub struct Backends {
    pub users: Arc<dyn UserStore>,
    pub rooms: Arc<dyn RoomStore>,
    pub messages: Arc<dyn MessageLog>,
    pub presence: Arc<dyn Presence>,
    pub fanout: Arc<dyn Fanout>,
    pub login_limiter: Arc<dyn LoginLimiter>,
    pub room_quota: Arc<dyn RoomQuota>,
    /// Answers `/ready`: `None` for the in-process backend, else a named check.
    pub health: Option<Arc<dyn HealthCheck>>,
}

/// A dependency that `/ready` asks.
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// The name shown in `/ready`'s `checks` (`"redis"`).
    fn name(&self) -> &'static str;
    async fn check(&self) -> StoreResult<()>;
}

/// Builds the frame of a stored message from its parts: `prefix + id + suffix`.
///
/// Both backends use it, the Redis one inside a Lua script where the id is assigned, so a
/// `message` frame always has the same fields in the same order as [`crate::domain::ChatMessage`].
pub fn message_frame_parts(draft: &Draft) -> (String, String) {
    #[derive(serde::Serialize)]
    struct Tail<'a> {
        user: &'a str,
        text: &'a str,
        ts: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_id: Option<&'a str>,
    }
    let room = serde_json::Value::String(draft.room.as_str().to_owned());
    let prefix = format!(r#"{{"type":"message","room":{room},"id":"#);
    let tail = Tail {
        user: &draft.user,
        text: &draft.text,
        ts: &draft.ts,
        client_id: draft.client_id.as_deref(),
    };
    // Serializing plain strings into a String cannot fail.
    let tail = serde_json::to_string(&tail).unwrap_or_else(|_| "{}".into());
    let suffix = format!(",{}", &tail[1..]);
    (prefix, suffix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ChatMessage;

    #[test]
    fn frame_parts_build_the_same_json_as_the_message_type() {
        let draft = Draft {
            room: RoomId::general(),
            user: "ana".into(),
            text: "hola \"mundo\" ñ 🎉".into(),
            client_id: Some("c1".into()),
            ts: "2026-01-01T00:00:00.000Z".into(),
        };
        let (prefix, suffix) = message_frame_parts(&draft);
        let json = format!("{prefix}7{suffix}");
        let parsed: ChatMessage = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed.id, 7);
        assert_eq!(parsed.text, draft.text);
        assert_eq!(parsed.client_id.as_deref(), Some("c1"));
        assert_eq!(serde_json::to_string(&parsed).unwrap(), json);
    }
}
