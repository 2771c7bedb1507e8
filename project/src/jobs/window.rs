//! At most one mention e-mail per (user, room) per window, counted from when the job is queued.
//!
//! In Redis the window is a key that expires with it, `{p}:jobs:window:{user}:{room}`, taken
//! with `SET NX PX`: of two nodes queuing an e-mail for the same pair at once, exactly one gets
//! it. In memory it is a map of when each window ends.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::store::redis_error;
use crate::backend::StoreResult;

/// Above this many remembered windows, the expired ones are forgotten.
const MEMORY_PRUNE_AT: usize = 10_000;

/// Who got an e-mail recently.
pub enum EmailWindow {
    /// (user, room) → when the window ends. `tokio`'s clock, so tests can pause and advance it.
    Memory(Mutex<HashMap<(String, String), Instant>>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
}

impl EmailWindow {
    /// Windows in this process (no `REDIS_URL`).
    pub fn memory() -> Self {
        Self::Memory(Mutex::new(HashMap::new()))
    }

    /// Windows in Redis, so they hold across nodes.
    pub fn redis(conn: ConnectionManager, prefix: &str) -> Self {
        Self::Redis {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    /// `true` when no e-mail went to `user` about `room` within `window`; the window then
    /// starts now. `false` means: do not send.
    pub async fn claim(&self, user: &str, room: &str, window: Duration) -> StoreResult<bool> {
        match self {
            Self::Memory(windows) => {
                let now = Instant::now();
                let mut windows = windows
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if windows.len() > MEMORY_PRUNE_AT {
                    windows.retain(|_, ends| *ends > now);
                }
                let key = (user.to_owned(), room.to_owned());
                if windows.get(&key).is_some_and(|ends| *ends > now) {
                    return Ok(false);
                }
                windows.insert(key, now + window);
                Ok(true)
            }
            Self::Redis { conn, prefix } => {
                if window.is_zero() {
                    return Ok(true);
                }
                let taken: Option<String> = redis::cmd("SET")
                    .arg(format!("{prefix}:jobs:window:{user}:{room}"))
                    .arg(1)
                    .arg("NX")
                    .arg("PX")
                    .arg(window.as_millis() as u64)
                    .query_async(&mut conn.clone())
                    .await
                    .map_err(redis_error)?;
                Ok(taken.is_some())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_email_per_user_and_room_per_window() {
        let window = Duration::from_secs(600);
        let windows = EmailWindow::memory();
        assert!(windows.claim("bea", "general", window).await.unwrap());
        assert!(!windows.claim("bea", "general", window).await.unwrap());
        // Other rooms and other users have their own windows.
        assert!(windows.claim("bea", "otra", window).await.unwrap());
        assert!(windows.claim("carl", "general", window).await.unwrap());

        tokio::time::advance(Duration::from_secs(599)).await;
        assert!(!windows.claim("bea", "general", window).await.unwrap());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(windows.claim("bea", "general", window).await.unwrap());
    }
}
