//! Which mention e-mails may be sent: at most one per (user, room) per window, counted from
//! when the job is queued, and at most N per user in any sliding hour across all rooms
//! (`CHAT_MENTION_EMAILS_PER_HOUR`, 10 by default), so that a user who creates many rooms and
//! mentions someone in each cannot flood their inbox.
//!
//! In Redis the (user, room) window is a key that expires with it,
//! `{p}:jobs:window:{user}:{room}`, and the hour is a sorted set of that user's e-mails,
//! `{p}:jobs:hour:{user}`; one Lua script checks and takes both, so of two nodes queuing an
//! e-mail for the same user at once, only one can take the last place. In memory both are maps
//! behind one lock.

use std::collections::{HashMap, VecDeque};
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use redis::Script;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use super::store::redis_error;
use crate::backend::StoreResult;

/// Above this many remembered windows (or users), the expired ones are forgotten.
const MEMORY_PRUNE_AT: usize = 10_000;
/// The sliding window of the per-user cap.
const HOUR: Duration = Duration::from_secs(3600);

static CLAIM: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("window.lua")));

/// What [`EmailWindow::claim`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Send it: the window and a place in the user's hour are taken.
    Granted,
    /// An e-mail about this room went to this user within the window.
    Recent,
    /// The user already got their e-mails for this hour.
    Capped,
}

/// The in-process state: (user, room) → when its window ends, and user → when each of their
/// e-mails of the last hour was queued (oldest first). `tokio`'s clock, so tests can pause it.
#[derive(Default)]
pub struct MemoryWindows {
    pairs: HashMap<(String, String), Instant>,
    hours: HashMap<String, VecDeque<Instant>>,
}

/// Who got an e-mail recently.
pub enum EmailWindow {
    Memory(Mutex<MemoryWindows>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
}

impl EmailWindow {
    /// Windows in this process (no `REDIS_URL`).
    pub fn memory() -> Self {
        Self::Memory(Mutex::new(MemoryWindows::default()))
    }

    /// Windows in Redis, so they hold across nodes.
    pub fn redis(conn: ConnectionManager, prefix: &str) -> Self {
        Self::Redis {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    /// Whether an e-mail to `user` about `room` may be queued now: none within `window` for
    /// that room, and fewer than `per_hour` (0: no cap) in the last hour for any room. When
    /// it may, both are taken at once.
    pub async fn claim(
        &self,
        user: &str,
        room: &str,
        window: Duration,
        per_hour: u64,
    ) -> StoreResult<Claim> {
        match self {
            Self::Memory(windows) => {
                let now = Instant::now();
                let mut windows = windows
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let MemoryWindows { pairs, hours } = &mut *windows;
                if pairs.len() > MEMORY_PRUNE_AT {
                    pairs.retain(|_, ends| *ends > now);
                }
                if hours.len() > MEMORY_PRUNE_AT {
                    hours.retain(|_, sent| sent.back().is_some_and(|at| now - *at < HOUR));
                }
                let key = (user.to_owned(), room.to_owned());
                if pairs.get(&key).is_some_and(|ends| *ends > now) {
                    return Ok(Claim::Recent);
                }
                let sent = hours.entry(user.to_owned()).or_default();
                while sent.front().is_some_and(|at| now - *at >= HOUR) {
                    sent.pop_front();
                }
                if per_hour > 0 && sent.len() as u64 >= per_hour {
                    return Ok(Claim::Capped);
                }
                if per_hour > 0 {
                    sent.push_back(now);
                }
                pairs.insert(key, now + window);
                Ok(Claim::Granted)
            }
            Self::Redis { conn, prefix } => {
                let decision: u8 = CLAIM
                    .key(format!("{prefix}:jobs:window:{user}:{room}"))
                    .key(format!("{prefix}:jobs:hour:{user}"))
                    .arg(window.as_millis() as u64)
                    .arg(per_hour)
                    .arg(uuid::Uuid::new_v4().to_string())
                    .invoke_async(&mut conn.clone())
                    .await
                    .map_err(redis_error)?;
                Ok(match decision {
                    1 => Claim::Granted,
                    2 => Claim::Capped,
                    _ => Claim::Recent,
                })
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
        let claim = |user, room| windows.claim(user, room, window, 0);
        assert_eq!(claim("bea", "general").await.unwrap(), Claim::Granted);
        assert_eq!(claim("bea", "general").await.unwrap(), Claim::Recent);
        // Other rooms and other users have their own windows.
        assert_eq!(claim("bea", "otra").await.unwrap(), Claim::Granted);
        assert_eq!(claim("carl", "general").await.unwrap(), Claim::Granted);

        tokio::time::advance(Duration::from_secs(599)).await;
        assert_eq!(claim("bea", "general").await.unwrap(), Claim::Recent);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(claim("bea", "general").await.unwrap(), Claim::Granted);
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_n_emails_per_user_in_any_sliding_hour_across_rooms() {
        let window = Duration::from_secs(600);
        let windows = EmailWindow::memory();
        let windows = &windows;
        let claim = |user, room: &'static str| windows.claim(user, room, window, 3);
        assert_eq!(claim("bea", "r0").await.unwrap(), Claim::Granted);
        tokio::time::advance(Duration::from_secs(1200)).await;
        assert_eq!(claim("bea", "r1").await.unwrap(), Claim::Granted);
        assert_eq!(claim("bea", "r2").await.unwrap(), Claim::Granted);
        assert_eq!(claim("bea", "r3").await.unwrap(), Claim::Capped);
        assert_eq!(
            claim("carl", "r3").await.unwrap(),
            Claim::Granted,
            "per user"
        );
        // A refused claim takes nothing: r3's window is still free once the hour slides.
        tokio::time::advance(Duration::from_secs(2400)).await;
        assert_eq!(claim("bea", "r3").await.unwrap(), Claim::Granted);
        assert_eq!(claim("bea", "r4").await.unwrap(), Claim::Capped);
    }
}
