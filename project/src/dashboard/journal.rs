//! The activity log: every activity event gets an id (1, 2, 3…) and the newest
//! [`KEPT_EVENTS`] are kept, so that a dashboard that reconnects with `Last-Event-ID` receives
//! exactly what it missed.
//!
//! Two implementations, like the chat's backends: [`MemoryActivityLog`] (one node) and the Redis
//! one in [`super::redis_journal`] (every node shares one id sequence). Both hand each stored event to
//! the node's live [`broadcast`] channel, in id order, which every SSE stream reads.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::backend::{StoreError, StoreResult};
use crate::events::Activity;

/// How many activity events are kept for resuming (the contract says 1,000).
pub const KEPT_EVENTS: usize = 1000;

/// An activity event with its id, serialized once for every subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredActivity {
    pub id: u64,
    pub activity: Activity,
    /// `activity` as JSON: the `data` of its SSE event.
    pub json: Arc<str>,
}

impl StoredActivity {
    /// Serializes the activity once; the JSON is shared by every stream that sends it.
    pub fn new(id: u64, activity: Activity) -> StoreResult<Self> {
        let json = serde_json::to_string(&activity)
            .map_err(|error| StoreError::Corrupt(error.to_string()))?;
        Ok(Self {
            id,
            activity,
            json: json.into(),
        })
    }

    /// Reads an event from its JSON, as stored in Redis.
    pub fn from_json(id: u64, json: &str) -> StoreResult<Self> {
        let activity = serde_json::from_str(json)
            .map_err(|error| StoreError::Corrupt(format!("evento de actividad {id}: {error}")))?;
        Ok(Self {
            id,
            activity,
            json: json.into(),
        })
    }
}

/// What a reconnecting dashboard may receive: the kept events after an id.
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    /// The id of the newest event ever stored (0 when there is none).
    pub newest: u64,
    /// The kept events with an id above the one asked for, oldest first.
    pub events: Vec<Arc<StoredActivity>>,
}

/// The node's live feed of stored events, in id order.
pub type LiveFeed = broadcast::Sender<Arc<StoredActivity>>;

/// Where activity events are numbered and kept. One implementation per backend.
#[async_trait]
pub trait ActivityLog: Send + Sync {
    /// Gives each event the next id, keeps it (dropping the oldest beyond [`KEPT_EVENTS`]) and
    /// hands it to the live subscribers of every node. A batch keeps its order.
    async fn append(&self, batch: &[Activity]) -> StoreResult<()>;

    /// The kept events with an id above `after`, and the newest id. Cheap when `after` is the
    /// newest id or above it (nothing to read).
    async fn after(&self, after: u64) -> StoreResult<Backlog>;

    /// Reports this node's number of open WebSocket connections and answers the cluster's.
    async fn connections(&self, local: u64) -> StoreResult<u64>;
}

/// The in-process log: a ring buffer of the newest [`KEPT_EVENTS`].
///
/// A `std` mutex (not Tokio's): nothing awaits while it is held. The live send happens under
/// the lock so that subscribers see the events in id order.
pub struct MemoryActivityLog {
    kept: Mutex<Ring>,
    live: LiveFeed,
}

#[derive(Default)]
struct Ring {
    newest: u64,
    events: VecDeque<Arc<StoredActivity>>,
}

impl MemoryActivityLog {
    /// An empty log that announces each stored event on `live`.
    pub fn new(live: LiveFeed) -> Self {
        Self {
            kept: Mutex::new(Ring::default()),
            live,
        }
    }

    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring inconsistent: keep using it.
        self.kept
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl ActivityLog for MemoryActivityLog {
    async fn append(&self, batch: &[Activity]) -> StoreResult<()> {
        let mut ring = self.ring();
        for activity in batch {
            let stored = Arc::new(StoredActivity::new(ring.newest + 1, activity.clone())?);
            ring.newest = stored.id;
            ring.events.push_back(stored.clone());
            if ring.events.len() > KEPT_EVENTS {
                ring.events.pop_front();
            }
            // No subscriber is not an error: nobody is watching.
            let _ = self.live.send(stored);
        }
        Ok(())
    }

    async fn after(&self, after: u64) -> StoreResult<Backlog> {
        let ring = self.ring();
        // Ids are consecutive, so the first wanted event's position is arithmetic.
        let events = match ring.events.front() {
            Some(oldest) if after < ring.newest => {
                let skip = usize::try_from(after.saturating_sub(oldest.id - 1)).unwrap_or(0);
                ring.events.iter().skip(skip).cloned().collect()
            }
            _ => Vec::new(),
        };
        Ok(Backlog {
            newest: ring.newest,
            events,
        })
    }

    async fn connections(&self, local: u64) -> StoreResult<u64> {
        Ok(local)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ids(backlog: &Backlog) -> Vec<u64> {
        backlog.events.iter().map(|event| event.id).collect()
    }

    #[tokio::test]
    async fn keeps_the_newest_thousand_with_consecutive_ids() {
        let (live, mut receiver) = broadcast::channel(4);
        let log = MemoryActivityLog::new(live);
        let batch: Vec<Activity> = (0..1005)
            .map(|i| Activity::message("general", "ana", i))
            .collect();
        log.append(&batch).await.unwrap();

        let all = log.after(0).await.unwrap();
        assert_eq!(all.newest, 1005);
        assert_eq!(ids(&all), (6..=1005).collect::<Vec<_>>());
        assert_eq!(
            ids(&log.after(1000).await.unwrap()),
            vec![1001, 1002, 1003, 1004, 1005]
        );
        assert!(log.after(1005).await.unwrap().events.is_empty());
        assert!(log.after(u64::MAX).await.unwrap().events.is_empty());
        // The live channel is bounded: a slow receiver lags, it does not grow.
        assert!(matches!(
            receiver.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }

    #[test]
    fn the_json_never_has_a_text_field() {
        let stored = StoredActivity::new(1, Activity::message("general", "ana", 7)).unwrap();
        let value: serde_json::Value = serde_json::from_str(&stored.json).unwrap();
        assert_eq!(value["kind"], "message");
        assert_eq!(value["message_id"], 7);
        assert!(value.get("text").is_none());
        assert_eq!(StoredActivity::from_json(1, &stored.json).unwrap(), stored);
    }
}
