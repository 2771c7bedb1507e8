//! The stats snapshot: computed once per second per node and shared by every SSE stream
//! through a `watch` channel, so a hundred dashboards cost one computation, not a hundred; and
//! none while no dashboard is open on the node (`GET /admin/stats` computes its own, cached).
//!
//! Where each number comes from (with Redis, every number is the cluster's):
//! - `connections`: every node counts its open WebSockets and, with Redis, reports the count
//!   each second with a 5 s expiry; the snapshot is the sum of the live reports.
//! - `users_online` and each room's `online`: presence, which is already cluster-wide (a user
//!   is online once however many tabs or nodes).
//! - `messages_total`: the sum over rooms of the newest message id (ids are consecutive per
//!   room, so this counts every stored message, even those stored before this node started).
//! - `messages_per_min`: message events of the activity feed, which every node receives from
//!   every node, counted in 60 one-second buckets; at start-up the kept events prime them.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::sync::{broadcast, watch};
use tokio::time::MissedTickBehavior;

use super::Dashboard;
use super::journal::StoredActivity;
use crate::backend::{Backends, HistoryQuery, StoreError};
use crate::domain::{RoomId, now_rfc3339};
use crate::events::ActivityKind;
use crate::jobs::{JobCounts, Jobs};
use tokio_util::sync::CancellationToken;

/// How often the snapshot is computed and sent (the contract says every second).
pub const STATS_EVERY: Duration = Duration::from_secs(1);
/// How many rooms are asked about at once while computing a snapshot.
const ROOMS_AT_ONCE: usize = 8;

/// The `data` of a `stats` event and the body of `GET /admin/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub connections: u64,
    pub users_online: u64,
    pub rooms: Vec<RoomStats>,
    pub messages_total: u64,
    pub jobs: JobCounts,
    pub ts: String,
}

/// One room's line in [`Stats`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoomStats {
    pub room: String,
    pub online: u64,
    pub messages_per_min: u64,
}

/// The latest snapshot as JSON, serialized once for every stream (`None` before the first).
pub type Latest = watch::Sender<Option<Arc<str>>>;

/// Messages per room over the last minute, in one-second buckets (wall-clock seconds, so that
/// events from other nodes and from the kept log land in the right second).
#[derive(Debug, Default)]
pub struct RateWindow {
    rooms: HashMap<String, Buckets>,
}

#[derive(Debug)]
struct Buckets {
    counts: [u64; 60],
    /// The newest second the buckets describe; older seconds are reused as time moves on.
    newest: u64,
}

impl Buckets {
    fn new(second: u64) -> Self {
        Self {
            counts: [0; 60],
            newest: second,
        }
    }

    fn advance(&mut self, second: u64) {
        if second <= self.newest {
            return;
        }
        if second - self.newest >= 60 {
            self.counts = [0; 60];
        } else {
            for passed in self.newest + 1..=second {
                self.counts[bucket(passed)] = 0;
            }
        }
        self.newest = second;
    }
}

fn bucket(second: u64) -> usize {
    // Always below 60, so the cast is exact.
    (second % 60) as usize
}

impl RateWindow {
    /// Counts one message of `room` at `second` (Unix time); older than a minute is ignored.
    pub fn record(&mut self, room: &str, second: u64) {
        let buckets = self
            .rooms
            .entry(room.to_owned())
            .or_insert_with(|| Buckets::new(second));
        buckets.advance(second);
        if second + 60 > buckets.newest {
            buckets.counts[bucket(second)] += 1;
        }
    }

    /// Messages per room in the minute that ends at `second`; forgets rooms that went quiet.
    pub fn per_minute(&mut self, second: u64) -> HashMap<String, u64> {
        let mut rates = HashMap::new();
        self.rooms.retain(|room, buckets| {
            buckets.advance(second);
            let total: u64 = buckets.counts.iter().sum();
            if total > 0 {
                rates.insert(room.clone(), total);
            }
            total > 0
        });
        rates
    }
}

/// The current Unix second.
fn unix_second() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp()).unwrap_or(0)
}

/// Counts a stored event in the window when it is a message.
fn count(rates: &Mutex<RateWindow>, event: &StoredActivity, second: u64) {
    if event.activity.kind != ActivityKind::Message {
        return;
    }
    if let Some(room) = &event.activity.room {
        lock(rates).record(room, second);
    }
}

/// A `std` mutex: held only to add or sum a few numbers, never across an `.await`.
fn lock(rates: &Mutex<RateWindow>) -> std::sync::MutexGuard<'_, RateWindow> {
    rates
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where the numbers of a snapshot come from. Cheap to clone: each field is a handle.
#[derive(Clone)]
pub struct Sources {
    pub dashboard: Dashboard,
    pub backends: Backends,
    pub jobs: Jobs,
}

/// Computes a snapshot now. Used each second by [`run`] and by `GET /admin/stats`.
pub async fn snapshot(sources: &Sources) -> Result<Stats, StoreError> {
    let dashboard = &sources.dashboard;
    let backends = &sources.backends;
    let rooms = backends.rooms.rooms().await?;
    let per_room: Vec<(String, Vec<String>, u64)> = futures_util::stream::iter(rooms)
        .filter_map(|room| async move { RoomId::parse(&room.id).ok() })
        .map(|room| async move {
            let online = backends.presence.online(&room).await?;
            let newest = backends
                .messages
                .history(&room, HistoryQuery::Latest { limit: 1 })
                .await?
                .frames
                .last()
                .map_or(0, |frame| frame.id);
            Ok::<_, StoreError>((room.as_str().to_owned(), online, newest))
        })
        .buffered(ROOMS_AT_ONCE)
        .try_collect()
        .await?;
    let connections = dashboard
        .log
        .connections(dashboard.local_connections())
        .await?;
    let jobs = sources.jobs.counts().await?;

    let mut rates = lock(&dashboard.rates).per_minute(unix_second());
    let mut users = BTreeSet::new();
    let mut messages_total = 0;
    let rooms = per_room
        .into_iter()
        .map(|(room, online, newest)| {
            messages_total += newest;
            let online_count = online.len() as u64;
            users.extend(online);
            RoomStats {
                messages_per_min: rates.remove(&room).unwrap_or(0),
                room,
                online: online_count,
            }
        })
        .collect();
    Ok(Stats {
        connections,
        users_online: users.len() as u64,
        rooms,
        messages_total,
        jobs,
        ts: now_rfc3339(),
    })
}

/// Whether [`run`] is the node's first stats task or one started again after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Counts the kept messages of the last minute first.
    First,
    /// The window already holds them: counting them again would double them.
    Again,
}

/// The node's stats task: counts message events as they come and, while at least one
/// dashboard watches, publishes a snapshot every [`STATS_EVERY`], until shutdown. With nobody
/// watching it computes nothing and forgets the last snapshot (a new dashboard must not start
/// with old numbers); the first subscriber wakes it and gets a fresh one at once.
pub async fn run(
    sources: Sources,
    mut live: broadcast::Receiver<Arc<StoredActivity>>,
    start: Start,
    shutdown: CancellationToken,
) {
    let dashboard = sources.dashboard.clone();
    if start == Start::First {
        prime(&dashboard).await;
    }
    let mut ticks = tokio::time::interval(STATS_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut failing = false;
    loop {
        let watched = dashboard.stats_watchers() > 0;
        if !watched && dashboard.latest.borrow().is_some() {
            dashboard.latest.send_replace(None);
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            event = live.recv() => match event {
                Ok(event) => count(&dashboard.rates, &event, unix_second()),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "estadísticas: eventos de actividad sin contar");
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The feed lives as long as the dashboard: only at the very end.
                    shutdown.cancelled().await;
                    return;
                }
            },
            () = dashboard.watched.notified(), if !watched => ticks.reset_immediately(),
            _ = ticks.tick(), if watched => {
                // The last dashboard may have closed since the loop began.
                if dashboard.stats_watchers() == 0 {
                    continue;
                }
                dashboard.computed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                match snapshot(&sources).await {
                    Ok(stats) => {
                        failing = false;
                        match serde_json::to_string(&stats) {
                            Ok(json) => {
                                dashboard.latest.send_replace(Some(json.into()));
                            }
                            Err(error) => tracing::error!(%error, "estadísticas no serializables"),
                        }
                    }
                    Err(error) => {
                        // Once per outage, not once per second.
                        if !failing {
                            tracing::warn!(%error, "no se pudieron calcular las estadísticas");
                        }
                        failing = true;
                    }
                }
            },
        }
    }
}

/// Counts the messages of the last minute that the log still keeps, so that a node that just
/// started does not show a quiet cluster.
async fn prime(dashboard: &Dashboard) {
    let Ok(backlog) = dashboard.log.after(0).await else {
        return;
    };
    let now = unix_second();
    for event in backlog.events {
        let second = chrono::DateTime::parse_from_rfc3339(&event.activity.ts)
            .ok()
            .and_then(|ts| u64::try_from(ts.timestamp()).ok());
        if let Some(second) = second.filter(|second| second + 60 > now && *second <= now) {
            count(&dashboard.rates, &event, second);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_last_minute_per_room() {
        let mut window = RateWindow::default();
        window.record("general", 1000);
        window.record("general", 1030);
        window.record("general", 1059);
        window.record("otra", 1059);
        assert_eq!(window.per_minute(1059)["general"], 3);
        assert_eq!(window.per_minute(1059)["otra"], 1);
        // At 1060 the message of second 1000 is more than a minute old.
        assert_eq!(window.per_minute(1060)["general"], 2);
        assert_eq!(window.per_minute(1089)["general"], 2);
        assert_eq!(window.per_minute(1090)["general"], 1);
        assert!(window.per_minute(2000).is_empty());
        assert!(window.rooms.is_empty(), "quiet rooms are forgotten");
    }

    #[test]
    fn late_events_land_in_their_second_or_are_ignored() {
        let mut window = RateWindow::default();
        window.record("general", 1100);
        window.record("general", 1090);
        window.record("general", 1000);
        assert_eq!(window.per_minute(1100)["general"], 2);
        assert_eq!(window.per_minute(1150)["general"], 1);
    }
}
