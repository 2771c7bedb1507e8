//! The local hub: which connections of this process joined which room, and which connections
//! each user has here (for the events addressed to a user, such as a mention's `notification`).
//!
//! Every node has one. Backends hand it each room event once (already serialized, behind an
//! `Arc`), and the hub offers it to the room's local connections with `try_send`: a full queue
//! never makes the room wait; it cancels that connection's token, and the connection closes
//! itself with 1013.
//!
//! The hub also coalesces each room's presence changes into windows ([`window`]): a storm of
//! joins into one room is announced as one batch per window, not one frame per join.

mod window;

pub use crate::events::{PresenceBatch, PresenceChange};
pub use window::{Flush, LONGEST, Online, QUIET};

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use dashmap::DashMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::ConnId;
use crate::domain::RoomId;
use crate::events::{Audience, EventSink, RoomEvent};

// ANCHOR: subscriber
/// How one connection receives room events.
#[derive(Debug, Clone)]
pub struct Subscriber {
    pub user: Arc<str>,
    pub queue: mpsc::Sender<Arc<RoomEvent>>,
    /// Cancelled when the queue overflows.
    pub overflow: CancellationToken,
}
// ANCHOR_END: subscriber

// ANCHOR: hub
/// Room id → the local connections that joined it.
///
/// A `DashMap` shards the rooms, so there is no global lock on the message path: delivering to
/// one room only read-locks the shard that holds it, and nothing awaits while it is held.
pub struct Hub {
    rooms: DashMap<RoomId, HashMap<ConnId, Member>>,
    /// Username → every local connection of that user, from connect to disconnect.
    users: DashMap<String, HashMap<ConnId, Subscriber>>,
    /// Room id → its open presence window ([`window`]).
    windows: DashMap<RoomId, window::RoomWindow>,
    /// This node, in the presence batches it makes.
    node: uuid::Uuid,
    /// The number of the last presence batch this node made (in any room).
    batches: AtomicU64,
}
// ANCHOR_END: hub

/// A connection in a room.
#[derive(Debug)]
struct Member {
    subscriber: Subscriber,
    /// The presence batch whose window answered its `join`: `None` while it waits for it (it
    /// gets no presence then, see [`window`]).
    answered: Option<u64>,
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("rooms", &self.rooms.len())
            .field("users", &self.users.len())
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Hub {
    pub fn new() -> Self {
        Self {
            rooms: DashMap::new(),
            users: DashMap::new(),
            windows: DashMap::new(),
            node: uuid::Uuid::new_v4(),
            batches: AtomicU64::new(0),
        }
    }

    /// Adds the connection to the room, waiting for its `join` to be answered (see
    /// [`Hub::join_window`]): until then it gets the room's messages but no presence.
    pub fn subscribe(&self, room: &RoomId, conn: ConnId, subscriber: Subscriber) {
        let member = Member {
            subscriber,
            answered: None,
        };
        self.rooms
            .entry(room.clone())
            .or_default()
            .insert(conn, member);
    }

    /// Marks these connections as answered by presence batch `seq`.
    fn answered(&self, room: &RoomId, conns: impl Iterator<Item = ConnId>, seq: u64) {
        if let Some(mut members) = self.rooms.get_mut(room) {
            for conn in conns {
                if let Some(member) = members.get_mut(&conn) {
                    member.answered = Some(seq);
                }
            }
        }
    }

    pub fn unsubscribe(&self, room: &RoomId, conn: ConnId) {
        self.rooms.remove_if_mut(room, |_, subscribers| {
            subscribers.remove(&conn);
            subscribers.is_empty()
        });
    }

    /// Registers a connection under its user, from its start, joined to rooms or not.
    pub fn connect(&self, conn: ConnId, subscriber: Subscriber) {
        self.users
            .entry(subscriber.user.to_string())
            .or_default()
            .insert(conn, subscriber);
    }

    /// Forgets what [`Hub::connect`] registered.
    pub fn disconnect(&self, user: &str, conn: ConnId) {
        self.users.remove_if_mut(user, |_, connections| {
            connections.remove(&conn);
            connections.is_empty()
        });
    }

    /// Asks every local connection to close with 1013 so that its client rejoins with `since`.
    ///
    /// For when this node may have missed events (its Redis subscription was lost for a while):
    /// the history has them, and a rejoin with `since` delivers exactly the missing ones.
    pub fn resync_everyone(&self) {
        for room in self.rooms.iter() {
            for member in room.values() {
                member.subscriber.overflow.cancel();
            }
        }
    }

    // ANCHOR: deliver
    /// Offers the event to every local subscriber of its room (or, for [`Audience::User`], to
    /// every local connection of that user; for [`Audience::AllUsers`], to every local
    /// connection): one `Arc` clone each.
    pub fn deliver(&self, event: RoomEvent) {
        match &event.audience {
            Audience::User(user) => {
                let Some(connections) = self.users.get(user.as_str()) else {
                    return;
                };
                let event = Arc::new(event);
                for subscriber in connections.values() {
                    offer(subscriber, &event);
                }
                return;
            }
            Audience::AllUsers => {
                self.deliver_to_all_users(&event);
                return;
            }
            _ => {}
        }
        let Some(members) = self.rooms.get(&event.room) else {
            return;
        };
        let event = Arc::new(event);
        for member in members.values() {
            let subscriber = &member.subscriber;
            let wanted = match &event.audience {
                Audience::Everyone => true,
                Audience::AllBut(user) => **user != *subscriber.user,
                Audience::Revoked(user) => **user == *subscriber.user,
                Audience::User(_) | Audience::AllUsers => false,
                Audience::Presence(batch) => self.wants(member, batch),
            };
            if wanted {
                offer(subscriber, &event);
            }
        }
    }

    /// Whether a connection gets a presence batch: not while it waits for its `joined` (whose
    /// list will count the batch), not if this node's batch is one its `joined` already counted,
    /// and not if the batch only speaks of its own user.
    fn wants(&self, member: &Member, batch: &PresenceBatch) -> bool {
        let Some(answered) = member.answered else {
            return false;
        };
        if batch.origin == self.node && batch.seq <= answered {
            return false;
        }
        let user = &*member.subscriber.user;
        batch.changes.iter().any(|change| change.user != user)
    }
    // ANCHOR_END: deliver

    /// Offers an [`Audience::AllUsers`] event to every local connection, each user's as an
    /// event addressed to that user ([`Audience::User`], which a connection forwards whether it
    /// joined the room or not). One `Arc` per user: such events are rare (a new public room).
    fn deliver_to_all_users(&self, event: &RoomEvent) {
        for connections in self.users.iter() {
            let addressed = Arc::new(RoomEvent {
                audience: Audience::User(connections.key().clone()),
                ..event.clone()
            });
            for subscriber in connections.values() {
                offer(subscriber, &addressed);
            }
        }
    }
}

/// The backends deliver to the hub through this trait, so they never import `ws`.
impl EventSink for Hub {
    fn deliver(&self, event: RoomEvent) {
        Hub::deliver(self, event);
    }

    fn resync_everyone(&self) {
        Hub::resync_everyone(self);
    }
}

// ANCHOR: offer
/// Queues the event for one connection without waiting; a full queue cancels the connection.
fn offer(subscriber: &Subscriber, event: &Arc<RoomEvent>) {
    if let Err(mpsc::error::TrySendError::Full(_)) = subscriber.queue.try_send(event.clone()) {
        subscriber.overflow.cancel();
    }
}
// ANCHOR_END: offer

#[cfg(test)]
mod tests {
    use super::*;

    fn event(room: &str, skip: Option<&str>) -> RoomEvent {
        RoomEvent {
            room: RoomId::parse(room).unwrap(),
            message_id: None,
            audience: skip.map_or(Audience::Everyone, |user| Audience::AllBut(user.into())),
            frame: "{}".into(),
        }
    }

    #[test]
    fn delivers_to_the_room_only_and_skips_the_named_user() {
        let hub = Hub::new();
        let (ana_tx, mut ana_rx) = mpsc::channel(4);
        let (bea_tx, mut bea_rx) = mpsc::channel(4);
        let room = RoomId::general();
        for (user, queue) in [("ana", ana_tx), ("bea", bea_tx)] {
            let subscriber = Subscriber {
                user: user.into(),
                queue,
                overflow: CancellationToken::new(),
            };
            hub.subscribe(&room, ConnId::new_v4(), subscriber);
        }
        hub.deliver(event("general", Some("ana")));
        hub.deliver(event("otra", None));
        assert!(ana_rx.try_recv().is_err());
        assert_eq!(bea_rx.try_recv().unwrap().room, room);
        assert!(bea_rx.try_recv().is_err());
    }

    #[test]
    fn a_full_queue_cancels_the_subscriber_instead_of_waiting() {
        let hub = Hub::new();
        let (tx, _rx) = mpsc::channel(1);
        let overflow = CancellationToken::new();
        let subscriber = Subscriber {
            user: "ana".into(),
            queue: tx,
            overflow: overflow.clone(),
        };
        hub.subscribe(&RoomId::general(), ConnId::new_v4(), subscriber);
        hub.deliver(event("general", None));
        assert!(!overflow.is_cancelled());
        hub.deliver(event("general", None));
        assert!(overflow.is_cancelled());
    }

    #[test]
    fn an_event_for_all_users_reaches_every_connection_each_addressed_to_its_user() {
        let hub = Hub::new();
        let mut queues = Vec::new();
        for user in ["ana", "ana", "bea"] {
            let (queue, events) = mpsc::channel(4);
            let subscriber = Subscriber {
                user: user.into(),
                queue,
                overflow: CancellationToken::new(),
            };
            hub.connect(ConnId::new_v4(), subscriber);
            queues.push((user, events));
        }
        let room = RoomId::parse("nueva").unwrap();
        hub.deliver(RoomEvent::rooms_changed(room.clone(), Audience::AllUsers));
        for (user, events) in &mut queues {
            let event = events.try_recv().unwrap();
            assert_eq!(event.audience, Audience::User((*user).into()));
            assert_eq!(event.frame.as_str(), crate::events::ROOMS_CHANGED_FRAME);
            assert_eq!(event.room, room);
            assert!(events.try_recv().is_err());
        }
    }

    #[test]
    fn unsubscribing_the_last_connection_forgets_the_room() {
        let hub = Hub::new();
        let (tx, _rx) = mpsc::channel(1);
        let conn = ConnId::new_v4();
        let subscriber = Subscriber {
            user: "ana".into(),
            queue: tx,
            overflow: CancellationToken::new(),
        };
        hub.subscribe(&RoomId::general(), conn, subscriber);
        hub.unsubscribe(&RoomId::general(), conn);
        assert!(hub.rooms.is_empty());
    }
}
