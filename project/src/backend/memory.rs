//! The in-process backend: everything in this process's memory, for one node.
//!
//! The maps are guarded by `std::sync::Mutex`, not Tokio's, because nothing awaits while one is
//! held (the same reasoning as mini-redis's `db.rs`). Each room's log has its own lock, so rooms
//! never wait for each other; the lock covers "assign id, store, deliver", which keeps delivery
//! order equal to id order.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::time::Instant;

use super::{
    Appended, Audience, ConnId, Draft, Fanout, HistoryPage, HistoryQuery, IDEMPOTENCY_WINDOW,
    LOGIN_MAX_FAILURES, LOGIN_WINDOW, LoginLimiter, MessageLog, Presence, RoomEvent, RoomQuota,
    RoomStore, StoreError, StoreResult, StoredFrame, UserStore, message_frame_parts,
};
use crate::domain::{Room, RoomId, UserRecord};
use crate::ws::hub::Hub;

/// Builds the in-process implementation of every backend trait, keeping the default number of
/// messages per room ([`DEFAULT_HISTORY_LIMIT`](crate::config::DEFAULT_HISTORY_LIMIT)).
pub fn backends(hub: Arc<Hub>) -> super::Backends {
    backends_keeping(hub, crate::config::DEFAULT_HISTORY_LIMIT)
}

/// Like [`backends`], keeping the newest `history_limit` messages of each room (at least one).
pub fn backends_keeping(hub: Arc<Hub>, history_limit: usize) -> super::Backends {
    let log = Arc::new(MemoryLog::new(hub.clone(), history_limit));
    super::Backends {
        users: Arc::new(MemoryUsers::default()),
        rooms: Arc::new(MemoryRooms::default()),
        messages: log,
        presence: Arc::new(MemoryPresence::default()),
        fanout: Arc::new(LocalFanout { hub }),
        login_limiter: Arc::new(MemoryLoginLimiter::default()),
        room_quota: Arc::new(MemoryRoomQuota::default()),
        health: None,
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it (the maps stay
/// consistent because no operation leaves them half-written).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default)]
struct MemoryUsers {
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
struct MemoryRooms {
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

/// One room's log: its newest frames in id order (consecutive ids, the oldest dropped first
/// once there are `history_limit`), the last id given, and the recent `client_id`s.
#[derive(Default)]
struct RoomLog {
    frames: VecDeque<StoredFrame>,
    last_id: u64,
    recent: RecentClientIds,
}

/// The `(user, client_id)` pairs stored within [`IDEMPOTENCY_WINDOW`]: a map to look one up,
/// and the same keys in the order they were stored, so that forgetting the expired ones only
/// looks at those (amortized O(1) per append, whatever the size of the room).
#[derive(Default)]
struct RecentClientIds {
    /// `(user, client_id)` → (the id it got, when it was stored).
    by_key: HashMap<(String, String), (u64, Instant)>,
    /// Oldest first: when each key was stored. A key stored again after it expired appears
    /// twice; the older entry then no longer matches the map and is dropped alone.
    stored: VecDeque<(Instant, (String, String))>,
}

impl RecentClientIds {
    /// Forgets what was stored a whole window before `now`.
    fn expire(&mut self, now: Instant) {
        while let Some((stored_at, _)) = self.stored.front() {
            if now.duration_since(*stored_at) < IDEMPOTENCY_WINDOW {
                break;
            }
            if let Some((stored_at, key)) = self.stored.pop_front() {
                if self
                    .by_key
                    .get(&key)
                    .is_some_and(|(_, at)| *at == stored_at)
                {
                    self.by_key.remove(&key);
                }
            }
        }
    }

    fn get(&self, key: &(String, String)) -> Option<u64> {
        self.by_key.get(key).map(|(id, _)| *id)
    }

    fn insert(&mut self, key: (String, String), id: u64, now: Instant) {
        self.stored.push_back((now, key.clone()));
        self.by_key.insert(key, (id, now));
    }
}

impl RoomLog {
    /// How many kept frames have an id up to `id`: the index where the frames above it start.
    fn position_after(&self, id: u64) -> usize {
        let first = self
            .frames
            .front()
            .map_or(self.last_id + 1, |frame| frame.id);
        let count = id.saturating_add(1).saturating_sub(first);
        usize::try_from(count)
            .unwrap_or(usize::MAX)
            .min(self.frames.len())
    }

    /// The kept frame with this id, if it was not dropped.
    fn get(&self, id: u64) -> Option<&StoredFrame> {
        let first = self.frames.front()?.id;
        let index = usize::try_from(id.checked_sub(first)?).ok()?;
        self.frames.get(index)
    }
}

struct MemoryLog {
    hub: Arc<Hub>,
    rooms: DashMap<RoomId, Arc<Mutex<RoomLog>>>,
    /// Every room's epoch: history lives as long as this process, so a new one per process.
    epoch: String,
    history_limit: usize,
}

impl MemoryLog {
    fn new(hub: Arc<Hub>, history_limit: usize) -> Self {
        Self {
            hub,
            rooms: DashMap::new(),
            epoch: uuid::Uuid::new_v4().simple().to_string(),
            history_limit: history_limit.max(1),
        }
    }

    fn room_log(&self, room: &RoomId) -> Arc<Mutex<RoomLog>> {
        self.rooms.entry(room.clone()).or_default().clone()
    }
}

#[async_trait]
impl MessageLog for MemoryLog {
    // ANCHOR: append
    async fn append(&self, draft: Draft) -> StoreResult<Appended> {
        let room_log = self.room_log(&draft.room);
        let mut log = lock(&room_log);
        let now = Instant::now();
        let key = draft.client_id.clone().map(|id| (draft.user.clone(), id));
        if let Some(key) = &key {
            log.recent.expire(now);
            // A repeat of a send whose message was already dropped is stored again, as in Redis.
            if let Some(frame) = log.recent.get(key).and_then(|id| log.get(id)) {
                return Ok(Appended {
                    frame: frame.clone(),
                    duplicate: true,
                });
            }
        }
        log.last_id += 1;
        let id = log.last_id;
        let (prefix, suffix) = message_frame_parts(&draft);
        let frame = StoredFrame {
            id,
            json: format!("{prefix}{id}{suffix}").into(),
        };
        log.frames.push_back(frame.clone());
        while log.frames.len() > self.history_limit {
            log.frames.pop_front();
        }
        if let Some(key) = key {
            log.recent.insert(key, id, now);
        }
        // Delivered while the room's lock is held: the next message of this room cannot be
        // delivered before this one. `deliver` only does `try_send`, it never waits.
        self.hub.deliver(RoomEvent {
            room: draft.room,
            message_id: Some(id),
            audience: Audience::Everyone,
            frame: frame.json.clone(),
        });
        Ok(Appended {
            frame,
            duplicate: false,
        })
    }
    // ANCHOR_END: append

    async fn history(&self, room: &RoomId, query: HistoryQuery) -> StoreResult<HistoryPage> {
        let Some(room_log) = self.rooms.get(room).map(|entry| entry.clone()) else {
            return Ok(HistoryPage::default());
        };
        let log = lock(&room_log);
        // Kept ids are consecutive, so an id's place is an offset from the oldest kept one; an
        // id older than that is place 0, the start of what is kept.
        let len = log.frames.len();
        let index_of = |id: u64| log.position_after(id);
        let (range, newest_first, limit) = match query {
            HistoryQuery::Latest { limit } => (0..len, true, limit),
            HistoryQuery::Before { before, limit } => {
                (0..index_of(before.saturating_sub(1)), true, limit)
            }
            HistoryQuery::After { after, limit } => (index_of(after)..len, false, limit),
            HistoryQuery::Between {
                after,
                before,
                limit,
            } => {
                let end = index_of(before.saturating_sub(1));
                (index_of(after).min(end)..end, false, limit)
            }
        };
        let available = range.len();
        let taken = if newest_first {
            range.end - available.min(limit)..range.end
        } else {
            range.start..range.start + available.min(limit)
        };
        Ok(HistoryPage {
            frames: log.frames.range(taken).cloned().collect(),
            has_more: available > limit,
        })
    }

    async fn epoch(&self, _room: &RoomId) -> StoreResult<String> {
        Ok(self.epoch.clone())
    }
}

/// room → user → that user's connections in the room; and user → all their connections.
#[derive(Default)]
struct MemoryPresence {
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

/// With a single node, fan-out is handing the event to the local hub.
struct LocalFanout {
    hub: Arc<Hub>,
}

#[async_trait]
impl Fanout for LocalFanout {
    async fn publish(&self, event: RoomEvent) -> StoreResult<()> {
        self.hub.deliver(event);
        Ok(())
    }
}

/// username → (failures, when the window started).
#[derive(Default)]
struct MemoryLoginLimiter {
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

/// user → the tickets of the rooms they created, oldest first, with when each was taken.
#[derive(Default)]
struct MemoryRoomQuota {
    users: Mutex<HashMap<String, std::collections::VecDeque<(Instant, String)>>>,
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

    fn draft(text: &str, client_id: Option<&str>) -> Draft {
        Draft {
            room: RoomId::general(),
            user: "ana".into(),
            text: text.into(),
            client_id: client_id.map(Into::into),
            ts: crate::domain::now_rfc3339(),
        }
    }

    async fn log_with(n: u64) -> MemoryLog {
        log_keeping(n, crate::config::DEFAULT_HISTORY_LIMIT).await
    }

    async fn log_keeping(n: u64, history_limit: usize) -> MemoryLog {
        let log = MemoryLog::new(Arc::new(Hub::new()), history_limit);
        for i in 1..=n {
            log.append(draft(&format!("m{i}"), None)).await.unwrap();
        }
        log
    }

    #[tokio::test]
    async fn a_trimmed_history_answers_cursors_from_its_oldest_kept_message() {
        let log = log_keeping(7, 3).await;
        let room = RoomId::general();
        let query = |query| log.history(&room, query);
        let page = query(HistoryQuery::Latest { limit: 50 }).await.unwrap();
        assert_eq!((ids(&page), page.has_more), (vec![5, 6, 7], false));
        let page = query(HistoryQuery::After { after: 2, limit: 2 })
            .await
            .unwrap();
        assert_eq!((ids(&page), page.has_more), (vec![5, 6], true));
        let page = query(HistoryQuery::Before {
            before: 6,
            limit: 5,
        })
        .await
        .unwrap();
        assert_eq!((ids(&page), page.has_more), (vec![5], false));
        let page = query(HistoryQuery::Before {
            before: 4,
            limit: 5,
        })
        .await
        .unwrap();
        assert!(page.frames.is_empty());
        let between = HistoryQuery::Between {
            after: 1,
            before: 7,
            limit: 10,
        };
        let page = query(between).await.unwrap();
        assert_eq!(ids(&page), vec![5, 6]);
        // Ids keep increasing after a trim.
        let next = log.append(draft("m8", None)).await.unwrap();
        assert_eq!(next.frame.id, 8);
    }

    fn ids(page: &HistoryPage) -> Vec<u64> {
        page.frames.iter().map(|f| f.id).collect()
    }

    #[tokio::test]
    async fn history_queries_follow_the_contract() {
        let log = log_with(10).await;
        let room = RoomId::general();
        let page = log
            .history(&room, HistoryQuery::Latest { limit: 3 })
            .await
            .unwrap();
        assert_eq!((ids(&page), page.has_more), (vec![8, 9, 10], true));
        let page = log
            .history(
                &room,
                HistoryQuery::Before {
                    before: 4,
                    limit: 5,
                },
            )
            .await
            .unwrap();
        assert_eq!((ids(&page), page.has_more), (vec![1, 2, 3], false));
        let page = log
            .history(&room, HistoryQuery::After { after: 7, limit: 2 })
            .await
            .unwrap();
        assert_eq!((ids(&page), page.has_more), (vec![8, 9], true));
        let page = log
            .history(
                &room,
                HistoryQuery::Between {
                    after: 2,
                    before: 6,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert_eq!((ids(&page), page.has_more), (vec![3, 4, 5], false));
        let page = log
            .history(
                &room,
                HistoryQuery::Between {
                    after: 8,
                    before: 3,
                    limit: 10,
                },
            )
            .await
            .unwrap();
        assert!(page.frames.is_empty());
        let page = log
            .history(
                &room,
                HistoryQuery::After {
                    after: 99,
                    limit: 2,
                },
            )
            .await
            .unwrap();
        assert!(page.frames.is_empty());
    }

    #[tokio::test]
    async fn a_repeated_client_id_returns_the_original_frame() {
        let log = log_with(0).await;
        let first = log.append(draft("hola", Some("c1"))).await.unwrap();
        let again = log.append(draft("otro texto", Some("c1"))).await.unwrap();
        assert!(!first.duplicate);
        assert!(again.duplicate);
        assert_eq!(again.frame.json, first.frame.json);
        let page = log
            .history(&RoomId::general(), HistoryQuery::Latest { limit: 50 })
            .await
            .unwrap();
        assert_eq!(ids(&page), vec![1]);
    }

    #[tokio::test(start_paused = true)]
    async fn client_ids_expire_after_the_window() {
        let log = log_with(0).await;
        log.append(draft("hola", Some("c1"))).await.unwrap();
        tokio::time::advance(IDEMPOTENCY_WINDOW + Duration::from_secs(1)).await;
        let again = log.append(draft("hola", Some("c1"))).await.unwrap();
        assert!(!again.duplicate);
        assert_eq!(again.frame.id, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_client_ids_are_forgotten_one_by_one_and_a_key_stored_again_is_kept() {
        let log = log_with(0).await;
        log.append(draft("a", Some("c1"))).await.unwrap();
        tokio::time::advance(IDEMPOTENCY_WINDOW / 2).await;
        log.append(draft("b", Some("c2"))).await.unwrap();
        tokio::time::advance(IDEMPOTENCY_WINDOW / 2).await;
        // c1 expired (stored again: id 3); c2 is still remembered.
        let again = log.append(draft("a", Some("c1"))).await.unwrap();
        assert_eq!((again.duplicate, again.frame.id), (false, 3));
        let repeat = log.append(draft("b", Some("c2"))).await.unwrap();
        assert_eq!((repeat.duplicate, repeat.frame.id), (true, 2));
        tokio::time::advance(IDEMPOTENCY_WINDOW / 2 + Duration::from_secs(1)).await;
        // c2 expired now; c1's new id is still remembered.
        let c2 = log.append(draft("b", Some("c2"))).await.unwrap();
        assert_eq!((c2.duplicate, c2.frame.id), (false, 4));
        let c1 = log.append(draft("a", Some("c1"))).await.unwrap();
        assert_eq!((c1.duplicate, c1.frame.id), (true, 3));
        let room_log = log.room_log(&RoomId::general());
        let recent = &lock(&room_log).recent;
        assert_eq!((recent.by_key.len(), recent.stored.len()), (2, 2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_id_stored_again_after_its_message_was_trimmed_outlives_its_first_entry() {
        let log = log_keeping(0, 1).await;
        log.append(draft("a", Some("c1"))).await.unwrap();
        log.append(draft("b", None)).await.unwrap();
        tokio::time::advance(IDEMPOTENCY_WINDOW / 2).await;
        // Message 1 was dropped from the history: the repeat is stored again (id 3).
        let again = log.append(draft("a", Some("c1"))).await.unwrap();
        assert_eq!((again.duplicate, again.frame.id), (false, 3));
        tokio::time::advance(IDEMPOTENCY_WINDOW / 2 + Duration::from_secs(1)).await;
        // The first entry expired; the second, stored later, still counts.
        let repeat = log.append(draft("a", Some("c1"))).await.unwrap();
        assert_eq!((repeat.duplicate, repeat.frame.id), (true, 3));
    }

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
