//! Users and rooms, each in one map behind one lock, so "check, then write" is one step.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;

use super::lock;
use crate::backend::{RoomStore, StoreError, StoreResult, UserStore};
use crate::domain::{Room, RoomId, UserRecord};

#[derive(Default)]
pub(super) struct MemoryUsers {
    inner: Mutex<Users>,
}

#[derive(Default)]
struct Users {
    by_name: HashMap<String, UserRecord>,
    emails: HashSet<String>,
}

#[async_trait]
impl UserStore for MemoryUsers {
    async fn create_user(&self, record: UserRecord) -> StoreResult<()> {
        let mut users = lock(&self.inner);
        let email_key = record.user.email.to_lowercase();
        if users.by_name.contains_key(&record.user.username) {
            return Err(StoreError::Conflict(
                "el nombre de usuario ya existe".into(),
            ));
        }
        if users.emails.contains(&email_key) {
            return Err(StoreError::Conflict("el e-mail ya está registrado".into()));
        }
        users.emails.insert(email_key);
        users.by_name.insert(record.user.username.clone(), record);
        Ok(())
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        Ok(lock(&self.inner).by_name.get(username).cloned())
    }
}

#[derive(Default)]
pub(super) struct MemoryRooms {
    inner: Mutex<HashMap<String, (Room, BTreeSet<String>)>>,
}

#[async_trait]
impl RoomStore for MemoryRooms {
    async fn create_room(&self, room: Room) -> StoreResult<()> {
        let mut rooms = lock(&self.inner);
        if rooms.contains_key(&room.id) {
            return Err(StoreError::Conflict("la sala ya existe".into()));
        }
        let members = room.created_by.iter().cloned().collect();
        rooms.insert(room.id.clone(), (room, members));
        Ok(())
    }

    async fn room(&self, id: &RoomId) -> StoreResult<Option<Room>> {
        Ok(lock(&self.inner)
            .get(id.as_str())
            .map(|(room, _)| room.clone()))
    }

    async fn rooms(&self) -> StoreResult<Vec<Room>> {
        let mut rooms: Vec<Room> = lock(&self.inner)
            .values()
            .map(|(room, _)| room.clone())
            .collect();
        rooms.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(rooms)
    }

    async fn add_member(&self, room: &RoomId, username: &str) -> StoreResult<bool> {
        Ok(lock(&self.inner)
            .get_mut(room.as_str())
            .is_some_and(|(_, members)| members.insert(username.to_owned())))
    }

    async fn remove_member(&self, room: &RoomId, username: &str) -> StoreResult<bool> {
        Ok(lock(&self.inner)
            .get_mut(room.as_str())
            .is_some_and(|(_, members)| members.remove(username)))
    }

    async fn is_member(&self, room: &RoomId, username: &str) -> StoreResult<bool> {
        Ok(lock(&self.inner)
            .get(room.as_str())
            .is_some_and(|(_, members)| members.contains(username)))
    }

    async fn member_count(&self, room: &RoomId) -> StoreResult<u64> {
        Ok(lock(&self.inner)
            .get(room.as_str())
            .map_or(0, |(_, members)| members.len() as u64))
    }
}
