//! Presence shared by every node, and robust to a node that crashes without saying goodbye.
//!
//! Each connection in a room is an entry with an expiry time: `{p}:conns:{room}:{user}` holds
//! the user's connections scored by expiry, `{p}:online:{room}` the users scored by their newest
//! expiry. The node that owns a connection pushes its expiry back every [`HEARTBEAT_EVERY`]; if
//! the node dies, its entries simply run out after [`PRESENCE_TTL`] and the scripts drop them.

use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::{StreamExt, stream};
use redis::Script;
use redis::aio::ConnectionManager;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::{Keys, store_error};
use crate::backend::{ConnId, Presence, StoreResult};
use crate::domain::RoomId;

/// How often this node refreshes the expiry of its own connections.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// How long an entry lives without a refresh: three heartbeats, so one slow or lost heartbeat
/// does not make anyone flicker offline, and a crashed node's users are gone within 30 s.
const PRESENCE_TTL: Duration = Duration::from_secs(30);
/// How many refreshes the heartbeat keeps in flight at once.
const HEARTBEAT_CONCURRENCY: usize = 32;

static JOIN: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("presence_join.lua")));
static REFRESH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("presence_refresh.lua")));
static LEAVE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("presence_leave.lua")));
static ONLINE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("presence_online.lua")));
static SESSION_TOUCH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("session_touch.lua")));
static SESSION_LIVE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("session_live.lua")));

/// One live connection of this node in one room.
type Entry = (RoomId, String, ConnId);

/// Presence in Redis plus the list of this node's own connections, which only this node can
/// keep alive.
pub(super) struct RedisPresence {
    conn: ConnectionManager,
    keys: Keys,
    /// The entries this node owns, which the heartbeat refreshes. A `std` mutex, because it is
    /// only held to copy or change the set, never across an `.await`.
    local: Mutex<HashSet<Entry>>,
    /// This node's connections by user, joined to rooms or not (`{p}:sessions:{user}`), which
    /// the heartbeat refreshes too.
    sessions: Mutex<HashSet<(String, ConnId)>>,
}

impl RedisPresence {
    pub(super) fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self {
            conn,
            keys,
            local: Mutex::new(HashSet::new()),
            sessions: Mutex::new(HashSet::new()),
        }
    }

    /// Locks the set of local sessions (see [`Self::local`] for the poisoning).
    fn sessions(&self) -> MutexGuard<'_, HashSet<(String, ConnId)>> {
        self.sessions
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records (`refresh == false`) or refreshes one session; `false` when a refresh found it
    /// gone.
    async fn touch_session(&self, user: &str, conn: ConnId, refresh: bool) -> StoreResult<bool> {
        let answer: u8 = SESSION_TOUCH
            .key(self.keys.sessions(user))
            .arg(conn.to_string())
            .arg(PRESENCE_TTL.as_millis() as u64)
            .arg(if refresh { "refresh" } else { "record" })
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(answer == 1)
    }

    /// Refreshes one session; records it again if Redis lost it while it is still open here.
    async fn refresh_session(&self, (user, conn): &(String, ConnId)) -> StoreResult<()> {
        if !self.touch_session(user, *conn, true).await?
            && self.sessions().contains(&(user.clone(), *conn))
        {
            self.touch_session(user, *conn, false).await?;
        }
        Ok(())
    }

    /// Locks the local set, recovering it if a panicking thread poisoned the lock (inserting or
    /// removing one entry cannot leave the set half-written).
    fn local(&self) -> MutexGuard<'_, HashSet<Entry>> {
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs one presence script on one connection's entry.
    async fn run(&self, script: &Script, (room, user, conn): &Entry) -> StoreResult<bool> {
        let answer: u8 = script
            .key(self.keys.online(room.as_str()))
            .key(self.keys.conns(room.as_str(), user))
            .arg(user)
            .arg(conn.to_string())
            .arg(PRESENCE_TTL.as_millis() as u64)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(answer == 1)
    }

    /// Refreshes every local entry each [`HEARTBEAT_EVERY`] until `shutdown`.
    pub(super) async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let start = tokio::time::Instant::now() + HEARTBEAT_EVERY;
        let mut ticks = tokio::time::interval_at(start, HEARTBEAT_EVERY);
        // After a slow heartbeat, wait a full period again rather than catching up in a burst.
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // `None` means shutdown, whether it came while waiting or in the middle of a heartbeat.
        while shutdown.run_until_cancelled(ticks.tick()).await.is_some() {
            if shutdown
                .run_until_cancelled(self.refresh_all())
                .await
                .is_none()
            {
                return;
            }
        }
    }

    /// One heartbeat: a few refreshes in flight at a time, failures logged and retried next time.
    async fn refresh_all(&self) {
        let entries: Vec<Entry> = self.local().iter().cloned().collect();
        let failures = stream::iter(entries)
            .map(|entry| async move { self.refresh(&entry).await })
            .buffer_unordered(HEARTBEAT_CONCURRENCY)
            .filter(|result| std::future::ready(result.is_err()))
            .count()
            .await;
        let sessions: Vec<(String, ConnId)> = self.sessions().iter().cloned().collect();
        let session_failures = stream::iter(sessions)
            .map(|session| async move { self.refresh_session(&session).await })
            .buffer_unordered(HEARTBEAT_CONCURRENCY)
            .filter(|result| std::future::ready(result.is_err()))
            .count()
            .await;
        let failures = failures + session_failures;
        if failures > 0 {
            tracing::warn!(failures, "no se pudo renovar la presencia en Redis");
        }
    }

    /// Refreshes one entry; if Redis no longer has it although the connection is still here
    /// (Redis restarted, or a heartbeat came too late), records it again.
    async fn refresh(&self, entry: &Entry) -> StoreResult<()> {
        if !self.run(&REFRESH, entry).await? && self.local().contains(entry) {
            self.run(&JOIN, entry).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Presence for RedisPresence {
    async fn join(&self, room: &RoomId, user: &str, conn: ConnId) -> StoreResult<bool> {
        let entry = (room.clone(), user.to_owned(), conn);
        let first = self.run(&JOIN, &entry).await?;
        self.local().insert(entry);
        Ok(first)
    }

    async fn leave(&self, room: &RoomId, user: &str, conn: ConnId) -> StoreResult<bool> {
        let entry = (room.clone(), user.to_owned(), conn);
        // Forget it locally first, so the heartbeat stops refreshing it.
        self.local().remove(&entry);
        self.run(&LEAVE, &entry).await
    }

    async fn online(&self, room: &RoomId) -> StoreResult<Vec<String>> {
        let mut users: Vec<String> = ONLINE
            .key(self.keys.online(room.as_str()))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        // Redis sorts them by expiry; the trait wants them by name.
        users.sort();
        Ok(users)
    }

    async fn connect(&self, user: &str, conn: ConnId) -> StoreResult<()> {
        self.touch_session(user, conn, false).await?;
        self.sessions().insert((user.to_owned(), conn));
        Ok(())
    }

    async fn disconnect(&self, user: &str, conn: ConnId) -> StoreResult<()> {
        // Forget it locally first, so the heartbeat stops refreshing it.
        self.sessions().remove(&(user.to_owned(), conn));
        redis::cmd("ZREM")
            .arg(self.keys.sessions(user))
            .arg(conn.to_string())
            .query_async::<u8>(&mut self.conn.clone())
            .await
            .map(drop)
            .map_err(store_error)
    }

    async fn is_connected(&self, user: &str) -> StoreResult<bool> {
        let live: u64 = SESSION_LIVE
            .key(self.keys.sessions(user))
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(live > 0)
    }
}
