//! Rooms created per user in a sliding window: each user's tickets, oldest first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::lock;
use crate::backend::{RoomQuota, StoreResult};

/// user → the tickets of the rooms they created, oldest first, with when each was taken.
#[derive(Default)]
pub(super) struct MemoryRoomQuota {
    users: Mutex<HashMap<String, VecDeque<(Instant, String)>>>,
}

#[async_trait]
impl RoomQuota for MemoryRoomQuota {
    async fn take(
        &self,
        user: &str,
        limit: u64,
        window: Duration,
    ) -> StoreResult<Result<String, Duration>> {
        let now = Instant::now();
        let mut users = lock(&self.users);
        // Forget users whose every ticket left the window, so the map cannot grow forever.
        if users.len() > 10_000 {
            users.retain(|_, taken| taken.back().is_some_and(|(at, _)| now - *at < window));
        }
        let taken = users.entry(user.to_owned()).or_default();
        while taken.front().is_some_and(|(at, _)| now - *at >= window) {
            taken.pop_front();
        }
        if taken.len() as u64 >= limit {
            let wait = taken
                .front()
                .map_or(window, |(oldest, _)| window.saturating_sub(now - *oldest));
            return Ok(Err(wait));
        }
        let ticket = uuid::Uuid::new_v4().to_string();
        taken.push_back((now, ticket.clone()));
        Ok(Ok(ticket))
    }

    async fn give_back(&self, user: &str, ticket: &str) -> StoreResult<()> {
        if let Some(taken) = lock(&self.users).get_mut(user) {
            taken.retain(|(_, t)| t != ticket);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_room_quota_slides_with_the_window_and_takes_back_what_is_given_back() {
        let quota = MemoryRoomQuota::default();
        let hour = Duration::from_secs(3600);
        let first = quota.take("ana", 3, hour).await.unwrap().unwrap();
        tokio::time::advance(Duration::from_secs(600)).await;
        quota.take("ana", 3, hour).await.unwrap().unwrap();
        let third = quota.take("ana", 3, hour).await.unwrap().unwrap();
        let wait = quota.take("ana", 3, hour).await.unwrap().unwrap_err();
        assert_eq!(
            wait,
            Duration::from_secs(3000),
            "until the first leaves the window"
        );
        assert!(
            quota.take("bea", 3, hour).await.unwrap().is_ok(),
            "per user"
        );

        quota.give_back("ana", &third).await.unwrap();
        quota.take("ana", 3, hour).await.unwrap().unwrap();
        assert!(quota.take("ana", 3, hour).await.unwrap().is_err());

        tokio::time::advance(Duration::from_secs(3000)).await;
        assert!(
            quota.take("ana", 3, hour).await.unwrap().is_ok(),
            "the first left"
        );
        assert!(quota.take("ana", 3, hour).await.unwrap().is_err());
        let _ = first;
    }
}
