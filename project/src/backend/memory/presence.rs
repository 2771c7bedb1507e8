//! Who is online: per room and user, the set of their connections; and per user, all of them.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::backend::{ConnId, Presence, StoreResult};
use crate::domain::RoomId;

/// room → user → that user's connections in the room; and user → all their connections.
#[derive(Default)]
pub(super) struct MemoryPresence {
    rooms: Mutex<HashMap<RoomId, HashMap<String, HashSet<ConnId>>>>,
    users: Mutex<HashMap<String, HashSet<ConnId>>>,
}

#[async_trait]
impl Presence for MemoryPresence {
    async fn join(&self, room: &RoomId, user: &str, conn: ConnId) -> StoreResult<bool> {
        let mut rooms = lock(&self.rooms);
        let connections = rooms
            .entry(room.clone())
            .or_default()
            .entry(user.to_owned())
            .or_default();
        Ok(connections.insert(conn) && connections.len() == 1)
    }

    async fn leave(&self, room: &RoomId, user: &str, conn: ConnId) -> StoreResult<bool> {
        let mut rooms = lock(&self.rooms);
        let Some(users) = rooms.get_mut(room) else {
            return Ok(false);
        };
        let Some(connections) = users.get_mut(user) else {
            return Ok(false);
        };
        let last = connections.remove(&conn) && connections.is_empty();
        if connections.is_empty() {
            users.remove(user);
        }
        if users.is_empty() {
            rooms.remove(room);
        }
        Ok(last)
    }

    async fn online(&self, room: &RoomId) -> StoreResult<Vec<String>> {
        let mut users: Vec<String> = lock(&self.rooms)
            .get(room)
            .map(|users| users.keys().cloned().collect())
            .unwrap_or_default();
        users.sort();
        Ok(users)
    }

    async fn connect(&self, user: &str, conn: ConnId) -> StoreResult<()> {
        lock(&self.users)
            .entry(user.to_owned())
            .or_default()
            .insert(conn);
        Ok(())
    }

    async fn disconnect(&self, user: &str, conn: ConnId) -> StoreResult<()> {
        let mut users = lock(&self.users);
        if let Some(connections) = users.get_mut(user) {
            connections.remove(&conn);
            if connections.is_empty() {
                users.remove(user);
            }
        }
        Ok(())
    }

    async fn is_connected(&self, user: &str) -> StoreResult<bool> {
        Ok(lock(&self.users).contains_key(user))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn presence_counts_connections_per_user() {
        let presence = MemoryPresence::default();
        let room = RoomId::general();
        let (tab1, tab2) = (ConnId::new_v4(), ConnId::new_v4());
        assert!(presence.join(&room, "ana", tab1).await.unwrap());
        assert!(!presence.join(&room, "ana", tab2).await.unwrap());
        assert_eq!(presence.online(&room).await.unwrap(), vec!["ana"]);
        assert!(!presence.leave(&room, "ana", tab1).await.unwrap());
        assert!(presence.leave(&room, "ana", tab2).await.unwrap());
        assert!(presence.online(&room).await.unwrap().is_empty());
    }
}
