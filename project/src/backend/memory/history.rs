//! The message log: ids, history and the delivery of each message, under one lock per room.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use dashmap::DashMap;
use tokio::time::Instant;

use super::lock;
use crate::backend::{
    Appended, Audience, Draft, EventSink, HistoryPage, HistoryQuery, IDEMPOTENCY_WINDOW,
    MessageLog, RoomEvent, StoreResult, StoredFrame, message_frame_parts,
};
use crate::domain::RoomId;

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

pub(super) struct MemoryLog {
    /// This node's hub.
    sink: Arc<dyn EventSink>,
    rooms: DashMap<RoomId, Arc<Mutex<RoomLog>>>,
    /// Every room's epoch: history lives as long as this process, so a new one per process.
    epoch: String,
    history_limit: usize,
}

impl MemoryLog {
    pub(super) fn new(sink: Arc<dyn EventSink>, history_limit: usize) -> Self {
        Self {
            sink,
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
        self.sink.deliver(RoomEvent {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// The log's messages go nowhere: these tests read the history.
    struct Discard;

    impl EventSink for Discard {
        fn deliver(&self, _event: RoomEvent) {}
        fn resync_everyone(&self) {}
    }

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
        let log = MemoryLog::new(Arc::new(Discard), history_limit);
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
}
