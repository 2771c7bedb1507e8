//! Users and rooms: JSON records under plain keys, with Lua scripts where "check, then write"
//! must be one step.

use std::sync::LazyLock;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Keys, from_json, store_error, to_json};
use crate::backend::{RoomStore, StoreError, StoreResult, UserStore};
use crate::domain::{Room, RoomId, UserRecord};

static CREATE_USER: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("create_user.lua")));
static CREATE_ROOM: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("create_room.lua")));

/// Accounts: `{p}:user:{name}` holds the record, `{p}:email:{address}` reserves the address.
pub(super) struct RedisUsers {
    conn: ConnectionManager,
    keys: Keys,
}

impl RedisUsers {
    pub(super) fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }
}

#[async_trait]
impl UserStore for RedisUsers {
    async fn create_user(&self, record: UserRecord) -> StoreResult<()> {
        let username = &record.user.username;
        // Same rule as `Email::key`: the lowercased address is the identity.
        let email_key = record.user.email.to_lowercase();
        let outcome: u8 = CREATE_USER
            .key(self.keys.user(username))
            .key(self.keys.email(&email_key))
            .arg(to_json(&record)?)
            .arg(username)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        // The same Spanish texts as the in-process backend.
        match outcome {
            0 => Ok(()),
            1 => Err(StoreError::Conflict(
                "el nombre de usuario ya existe".into(),
            )),
            _ => Err(StoreError::Conflict("el e-mail ya está registrado".into())),
        }
    }

    async fn user_by_name(&self, username: &str) -> StoreResult<Option<UserRecord>> {
        let json: Option<String> = self
            .conn
            .clone()
            .get(self.keys.user(username))
            .await
            .map_err(store_error)?;
        json.map(|json| from_json("usuario", &json)).transpose()
    }
}

/// Rooms: one hash of JSON records (so listing them is one `HVALS`) and one set of members each.
pub(super) struct RedisRooms {
    conn: ConnectionManager,
    keys: Keys,
}

impl RedisRooms {
    pub(super) fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }
}

#[async_trait]
impl RoomStore for RedisRooms {
    async fn create_room(&self, room: Room) -> StoreResult<()> {
        let created: u8 = CREATE_ROOM
            .key(self.keys.rooms())
            .key(self.keys.members(&room.id))
            .arg(&room.id)
            .arg(to_json(&room)?)
            .arg(room.created_by.as_deref().unwrap_or(""))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        if created == 1 {
            Ok(())
        } else {
            Err(StoreError::Conflict("la sala ya existe".into()))
        }
    }

    async fn room(&self, id: &RoomId) -> StoreResult<Option<Room>> {
        let json: Option<String> = self
            .conn
            .clone()
            .hget(self.keys.rooms(), id.as_str())
            .await
            .map_err(store_error)?;
        json.map(|json| from_json("sala", &json)).transpose()
    }

    async fn rooms(&self) -> StoreResult<Vec<Room>> {
        let all: Vec<String> = self
            .conn
            .clone()
            .hvals(self.keys.rooms())
            .await
            .map_err(store_error)?;
        let mut rooms = all
            .iter()
            .map(|json| from_json::<Room>("sala", json))
            .collect::<StoreResult<Vec<_>>>()?;
        rooms.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(rooms)
    }

    async fn add_member(&self, room: &RoomId, username: &str) -> StoreResult<bool> {
        let mut conn = self.conn.clone();
        // Like the in-process backend, an unknown room gets no members. Rooms are never
        // deleted, so checking first and adding second cannot race with anything.
        let exists: bool = conn
            .hexists(self.keys.rooms(), room.as_str())
            .await
            .map_err(store_error)?;
        if !exists {
            return Ok(false);
        }
        let added: u64 = conn
            .sadd(self.keys.members(room.as_str()), username)
            .await
            .map_err(store_error)?;
        Ok(added == 1)
    }

    async fn remove_member(&self, room: &RoomId, username: &str) -> StoreResult<bool> {
        let removed: u64 = self
            .conn
            .clone()
            .srem(self.keys.members(room.as_str()), username)
            .await
            .map_err(store_error)?;
        Ok(removed == 1)
    }

    async fn is_member(&self, room: &RoomId, username: &str) -> StoreResult<bool> {
        self.conn
            .clone()
            .sismember(self.keys.members(room.as_str()), username)
            .await
            .map_err(store_error)
    }

    async fn member_count(&self, room: &RoomId) -> StoreResult<u64> {
        self.conn
            .clone()
            .scard(self.keys.members(room.as_str()))
            .await
            .map_err(store_error)
    }
}
