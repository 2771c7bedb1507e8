//! Login attempts per username, in one map: the check and the count take one lock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::lock;
use crate::backend::{LOGIN_MAX_FAILURES, LOGIN_WINDOW, LoginLimiter, StoreResult};

/// username → (failures, when the window started).
#[derive(Default)]
pub(super) struct MemoryLoginLimiter {
    windows: Mutex<HashMap<String, (u64, Instant)>>,
}

impl MemoryLoginLimiter {
    /// The time left in the username's window, if it is still open.
    fn remaining(started: Instant) -> Option<Duration> {
        LOGIN_WINDOW
            .checked_sub(started.elapsed())
            .filter(|left| !left.is_zero())
    }
}

#[async_trait]
impl LoginLimiter for MemoryLoginLimiter {
    async fn attempt(&self, username: &str) -> StoreResult<Option<Duration>> {
        // One lock for the check and the count: two attempts cannot both see the same count.
        let mut windows = lock(&self.windows);
        // Forget closed windows so that guessing many usernames cannot grow the map forever.
        if windows.len() > 10_000 {
            windows.retain(|_, (_, started)| Self::remaining(*started).is_some());
        }
        let now = Instant::now();
        let window = windows.entry(username.to_owned()).or_insert((0, now));
        if Self::remaining(window.1).is_none() {
            *window = (0, now);
        }
        if window.0 >= LOGIN_MAX_FAILURES {
            return Ok(Self::remaining(window.1));
        }
        window.0 += 1;
        Ok(None)
    }

    async fn refund(&self, username: &str) -> StoreResult<()> {
        if let Some((attempts, _)) = lock(&self.windows).get_mut(username) {
            *attempts = attempts.saturating_sub(1);
        }
        Ok(())
    }

    async fn reset(&self, username: &str) -> StoreResult<()> {
        lock(&self.windows).remove(username);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn login_limiter_blocks_after_five_attempts_until_the_window_ends() {
        let limiter = MemoryLoginLimiter::default();
        for _ in 0..4 {
            assert_eq!(limiter.attempt("ana").await.unwrap(), None);
        }
        tokio::time::advance(Duration::from_secs(20)).await;
        assert_eq!(limiter.attempt("ana").await.unwrap(), None, "the 5th");
        let wait = limiter.attempt("ana").await.unwrap().unwrap();
        assert_eq!(wait.as_secs(), 40);
        // A refused attempt is not counted, and does not move the window.
        tokio::time::advance(Duration::from_secs(41)).await;
        assert_eq!(limiter.attempt("ana").await.unwrap(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refunded_attempt_frees_its_place() {
        let limiter = MemoryLoginLimiter::default();
        for _ in 0..5 {
            limiter.attempt("ana").await.unwrap();
        }
        limiter.refund("ana").await.unwrap();
        assert_eq!(limiter.attempt("ana").await.unwrap(), None);
        assert!(limiter.attempt("ana").await.unwrap().is_some());
    }
}
