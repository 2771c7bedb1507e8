//! Failed logins per username, counted in Redis so that every node applies the same limit.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Keys, store_error};
use crate::backend::{LOGIN_MAX_FAILURES, LOGIN_WINDOW, LoginLimiter, StoreResult};

static RECORD_FAILURE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("login_failure.lua")));

/// `{p}:login:{username}` counts the failures and expires when the window ends, so Redis
/// forgets closed windows by itself.
pub(super) struct RedisLoginLimiter {
    conn: ConnectionManager,
    keys: Keys,
}

impl RedisLoginLimiter {
    pub(super) fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self { conn, keys }
    }
}

#[async_trait]
impl LoginLimiter for RedisLoginLimiter {
    async fn blocked_for(&self, username: &str) -> StoreResult<Option<Duration>> {
        let key = self.keys.login(username);
        // The count and the time left, read together (one transaction, one round trip).
        let (failures, left_ms): (Option<u64>, i64) = redis::pipe()
            .atomic()
            .get(&key)
            .pttl(&key)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        if failures.unwrap_or(0) < LOGIN_MAX_FAILURES || left_ms <= 0 {
            return Ok(None);
        }
        // Whole seconds, rounded up: `Retry-After` must not invite a retry that is refused.
        let left_ms = left_ms.unsigned_abs();
        Ok(Some(Duration::from_secs(left_ms.div_ceil(1000))))
    }

    async fn record_failure(&self, username: &str) -> StoreResult<()> {
        let _failures: u64 = RECORD_FAILURE
            .key(self.keys.login(username))
            .arg(LOGIN_WINDOW.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn reset(&self, username: &str) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("DEL")
            .arg(self.keys.login(username))
            .query_async::<u64>(&mut conn)
            .await
            .map(drop)
            .map_err(store_error)
    }
}
