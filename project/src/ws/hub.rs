//! The local hub: which connections of this process joined which room, and which connections
//! each user has here (for the events addressed to a user, such as a mention's `notification`).
//!
//! Every node has one. Backends hand it each room event once (already serialized, behind an
//! `Arc`), and the hub offers it to the room's local connections with `try_send`: a full queue
//! never makes the room wait; it cancels that connection's token, and the connection closes
//! itself with 1013.

use std::collections::HashMap;
use std::sync::Arc;

use dashmap::DashMap;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{Audience, ConnId, RoomEvent};
use crate::domain::RoomId;

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
#[derive(Debug, Default)]
pub struct Hub {
    rooms: DashMap<RoomId, HashMap<ConnId, Subscriber>>,
    /// Username → every local connection of that user, from connect to disconnect.
    users: DashMap<String, HashMap<ConnId, Subscriber>>,
}
// ANCHOR_END: hub

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn subscribe(&self, room: &RoomId, conn: ConnId, subscriber: Subscriber) {
        self.rooms
            .entry(room.clone())
            .or_default()
            .insert(conn, subscriber);
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
            for subscriber in room.values() {
                subscriber.overflow.cancel();
            }
        }
    }

    // ANCHOR: deliver
    /// Offers the event to every local subscriber of its room (or, for [`Audience::User`], to
    /// every local connection of that user): one `Arc` clone each.
    pub fn deliver(&self, event: RoomEvent) {
        if let Audience::User(user) = &event.audience {
            let Some(connections) = self.users.get(user.as_str()) else {
                return;
            };
            let event = Arc::new(event);
            for subscriber in connections.values() {
                offer(subscriber, &event);
            }
            return;
        }
        let Some(subscribers) = self.rooms.get(&event.room) else {
            return;
        };
        let event = Arc::new(event);
        for subscriber in subscribers.values() {
            let wanted = match &event.audience {
                Audience::Everyone => true,
                Audience::AllBut(user) => **user != *subscriber.user,
                Audience::Revoked(user) => **user == *subscriber.user,
                Audience::User(_) => false,
            };
            if wanted {
                offer(subscriber, &event);
            }
        }
    }
    // ANCHOR_END: deliver
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
