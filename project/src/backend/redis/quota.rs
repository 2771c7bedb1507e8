//! Rooms each user created in the last hour, in Redis so that the limit holds across nodes.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Keys, store_error};
use crate::backend::{RoomQuota, StoreResult};

static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("room_quota.lua")));

/// `{p}:room_quota:{user}` holds the user's tickets scored by when they were taken (ms, Redis's
/// clock); the script drops those older than the window, and the key expires with the newest.
pub(super) struct RedisRoomQuota {
    conn: ConnectionManager,
    keys: Keys,
}

impl RedisRoomQuota {
    pub(super) fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }
}

#[async_trait]
impl RoomQuota for RedisRoomQuota {
    async fn take(
        &self,
        user: &str,
        limit: u64,
        window: Duration,
    ) -> StoreResult<Result<String, Duration>> {
        let ticket = uuid::Uuid::new_v4().to_string();
        let wait_ms: u64 = TAKE
            .key(self.keys.room_quota(user))
            .arg(limit)
            .arg(window.as_millis().max(1) as u64)
            .arg(&ticket)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        if wait_ms == 0 {
            Ok(Ok(ticket))
        } else {
            Ok(Err(Duration::from_millis(wait_ms)))
        }
    }

    async fn give_back(&self, user: &str, ticket: &str) -> StoreResult<()> {
        redis::cmd("ZREM")
            .arg(self.keys.room_quota(user))
            .arg(ticket)
            .query_async::<u64>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(store_error)
    }
}
