//! Login attempts per username, counted in Redis so that every node applies the same limit.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;

use super::{Keys, store_error};
use crate::backend::{LOGIN_MAX_FAILURES, LOGIN_WINDOW, LoginLimiter, StoreResult};

static ATTEMPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("login_attempt.lua")));
static REFUND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("login_refund.lua")));

/// `{p}:login:{username}` counts the attempts and expires when the window ends, so Redis
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
    async fn attempt(&self, username: &str) -> StoreResult<Option<Duration>> {
        // A counter that is not a number comes back as a string, which does not convert into
        // this pair: a type error, reported as corrupt data.
        let (refused, value): (u8, i64) = ATTEMPT
            .key(self.keys.login(username))
            .arg(LOGIN_MAX_FAILURES)
            .arg(LOGIN_WINDOW.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        if refused == 0 {
            return Ok(None);
        }
        // Whole seconds, rounded up: `Retry-After` must not invite a retry that is refused.
        Ok(Some(Duration::from_secs(
            value.unsigned_abs().div_ceil(1000),
        )))
    }

    async fn refund(&self, username: &str) -> StoreResult<()> {
        let _: i64 = REFUND
            .key(self.keys.login(username))
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
