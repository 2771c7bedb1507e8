//! The in-process backend: everything in this process's memory, for one node.
//!
//! One file per job, like the traits and like the Redis backend: `store` (users and rooms),
//! `history` (the message log, which also delivers each message), `presence`, `fanout` (handing
//! events to the local hub), `limiter` (login attempts) and `quota` (rooms created per user).
//!
//! The maps are guarded by `std::sync::Mutex`, not Tokio's, because nothing awaits while one is
//! held (the same reasoning as mini-redis's `db.rs`). Each room's log has its own lock, so rooms
//! never wait for each other; the lock covers "assign id, store, deliver", which keeps delivery
//! order equal to id order.

mod fanout;
mod history;
mod limiter;
mod presence;
mod quota;
mod store;

use std::sync::{Arc, Mutex, MutexGuard};

use super::EventSink;

/// Builds the in-process implementation of every backend trait, keeping the default number of
/// messages per room ([`DEFAULT_HISTORY_LIMIT`](crate::config::DEFAULT_HISTORY_LIMIT)). Messages
/// and events are delivered to `sink`, this node's hub.
pub fn backends(sink: Arc<dyn EventSink>) -> super::Backends {
    backends_keeping(sink, crate::config::DEFAULT_HISTORY_LIMIT)
}

/// Like [`backends`], keeping the newest `history_limit` messages of each room (at least one).
pub fn backends_keeping(sink: Arc<dyn EventSink>, history_limit: usize) -> super::Backends {
    let log = Arc::new(history::MemoryLog::new(sink.clone(), history_limit));
    super::Backends {
        users: Arc::new(store::MemoryUsers::default()),
        rooms: Arc::new(store::MemoryRooms::default()),
        messages: log,
        presence: Arc::new(presence::MemoryPresence::default()),
        fanout: Arc::new(fanout::LocalFanout::new(sink)),
        login_limiter: Arc::new(limiter::MemoryLoginLimiter::default()),
        room_quota: Arc::new(quota::MemoryRoomQuota::default()),
        health: None,
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the maps stay
/// consistent because no operation leaves them half-written).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
