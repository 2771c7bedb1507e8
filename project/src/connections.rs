//! The cap on WebSocket connections per user (`CHAT_MAX_CONNECTIONS_PER_USER`, 100 by default),
//! counted across every node of a cluster.
//!
//! A connection takes a [`Slot`] before the upgrade and gives it back when it ends (the slot is
//! dropped with the connection's task). Without Redis the count is a map in this process. With
//! Redis each user has a sorted set `{p}:wsconns:{user}` of slot ids scored by when they expire
//! (ms, Redis's clock): taking a slot is one script (drop the expired ids, count, add), the node
//! that owns a connection pushes its expiry back every third of the lease, and the ids of a node
//! that died without giving them back simply expire. So a crashed node never locks its users out
//! for longer than one lease.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::time::Duration;

use dashmap::DashMap;
use futures_util::{StreamExt, stream};
use redis::Script;
use redis::aio::ConnectionManager;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::StoreResult;
use crate::backend::redis::store_error;
use crate::error::ApiError;
use crate::supervisor::Supervisor;

/// The supervised task that refreshes this node's connection slots in Redis.
pub const HEARTBEAT_TASK: &str = "latido de las plazas de conexión";

/// What a refused client is told to wait: a slot frees only when one of the user's other
/// connections closes, which nobody can predict; a few seconds keeps retries calm.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// How many users' refreshes the heartbeat keeps in flight at once.
const HEARTBEAT_CONCURRENCY: usize = 16;

static ACQUIRE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("connections/acquire.lua")));
static REFRESH: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("connections/refresh.lua")));

/// The per-user counts. Cheap to clone.
#[derive(Clone)]
pub struct UserConnections {
    max: usize,
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Memory(Arc<DashMap<String, usize>>),
    Redis(Arc<RedisSlots>),
}

impl UserConnections {
    /// Counts in this process (a single node).
    pub fn memory(max: usize) -> Self {
        Self {
            max,
            inner: Inner::Memory(Arc::new(DashMap::new())),
        }
    }

    /// Counts in Redis, shared by every node with the same `prefix`. Each slot lives `lease`
    /// without a refresh; the heartbeat (spawned on `tasks` under the app's `supervisor`, stopped
    /// by `shutdown`) refreshes this node's slots every third of it.
    pub async fn redis(
        url: &str,
        prefix: &str,
        max: usize,
        lease: Duration,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
        supervisor: &Supervisor,
    ) -> StoreResult<Self> {
        let (_, conn) = crate::backend::redis::connect(url).await?;
        let slots = Arc::new(RedisSlots {
            conn,
            prefix: prefix.to_owned(),
            lease,
            local: Mutex::new(HashMap::new()),
        });
        let heartbeat = slots.clone();
        let stop = shutdown.clone();
        supervisor.spawn(tasks, HEARTBEAT_TASK, shutdown, move || {
            heartbeat.clone().heartbeat(stop.clone())
        });
        Ok(Self {
            max,
            inner: Inner::Redis(slots),
        })
    }

    /// Takes one of `user`'s slots, or answers why not: 429 `rate_limited` when the user
    /// already has the maximum, 503 when Redis cannot say.
    pub async fn acquire(&self, user: &str) -> Result<Slot, ApiError> {
        let refused = || {
            tracing::info!(
                user,
                max = self.max,
                "WebSocket rechazado: demasiadas conexiones"
            );
            ApiError::RateLimited(RETRY_AFTER)
        };
        match &self.inner {
            Inner::Memory(counts) => {
                let mut count = counts.entry(user.to_owned()).or_insert(0);
                if *count >= self.max {
                    return Err(refused());
                }
                *count += 1;
                Ok(Slot(Some(Release::Memory(counts.clone(), user.to_owned()))))
            }
            Inner::Redis(slots) => {
                let id = uuid::Uuid::new_v4().simple().to_string();
                if !slots.acquire(user, &id, self.max).await? {
                    return Err(refused());
                }
                Ok(Slot(Some(Release::Redis(
                    slots.clone(),
                    user.to_owned(),
                    id,
                ))))
            }
        }
    }
}

/// One connection's place in its user's count; dropping it gives the place back.
pub struct Slot(Option<Release>);

enum Release {
    Memory(Arc<DashMap<String, usize>>, String),
    Redis(Arc<RedisSlots>, String, String),
}

impl Drop for Slot {
    fn drop(&mut self) {
        match self.0.take() {
            None => {}
            Some(Release::Memory(counts, user)) => {
                // Remove the entry at zero, so the map does not keep every user who ever
                // connected.
                counts.remove_if_mut(&user, |_, count| {
                    *count = count.saturating_sub(1);
                    *count == 0
                });
            }
            Some(Release::Redis(slots, user, id)) => {
                slots.forget(&user, &id);
                // Dropped from a connection's task, so a runtime is there; if it is not (the
                // runtime is going away), the id expires with its lease.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        if let Err(error) = slots.release(&user, &id).await {
                            tracing::warn!(%error, "no se pudo devolver una plaza de conexión; caducará con su concesión");
                        }
                    });
                }
            }
        }
    }
}

/// The Redis side: the scripts, and this node's own slots, which only this node can keep alive.
struct RedisSlots {
    conn: ConnectionManager,
    prefix: String,
    lease: Duration,
    /// User → the ids of this node's slots. A `std` mutex, never held across an `.await`.
    local: Mutex<HashMap<String, HashSet<String>>>,
}

impl RedisSlots {
    fn key(&self, user: &str) -> String {
        format!("{}:wsconns:{user}", self.prefix)
    }

    fn local(&self) -> MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lease_ms(&self) -> u64 {
        u64::try_from(self.lease.as_millis()).unwrap_or(u64::MAX)
    }

    async fn acquire(&self, user: &str, id: &str, max: usize) -> StoreResult<bool> {
        // Recorded locally first, so that a heartbeat running meanwhile refreshes it.
        self.local()
            .entry(user.to_owned())
            .or_default()
            .insert(id.to_owned());
        let mut script = ACQUIRE.key(self.key(user));
        script.arg(id).arg(self.lease_ms()).arg(max);
        let mut conn = self.conn.clone();
        let mut taken = script.invoke_async::<u8>(&mut conn).await;
        // The first command after Redis dropped the connection (a restart) fails while the
        // manager reconnects; one more try is safe, since the same id is added at most once.
        // A timeout is not retried: a frozen Redis must not make the upgrade wait twice.
        if let Err(error) = &taken {
            if !error.is_timeout() && (error.is_connection_dropped() || error.is_io_error()) {
                taken = script.invoke_async::<u8>(&mut conn).await;
            }
        }
        let taken = taken.map_err(store_error);
        if !matches!(taken, Ok(1)) {
            self.forget(user, id);
        }
        taken.map(|taken| taken == 1)
    }

    fn forget(&self, user: &str, id: &str) {
        let mut local = self.local();
        if let Some(ids) = local.get_mut(user) {
            ids.remove(id);
            if ids.is_empty() {
                local.remove(user);
            }
        }
    }

    async fn release(&self, user: &str, id: &str) -> StoreResult<()> {
        redis::cmd("ZREM")
            .arg(self.key(user))
            .arg(id)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(store_error)
    }

    /// Pushes back the expiry of this node's slots every third of the lease until shutdown.
    async fn heartbeat(self: Arc<Self>, shutdown: CancellationToken) {
        let every = (self.lease / 3).max(Duration::from_millis(100));
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while shutdown.run_until_cancelled(ticks.tick()).await.is_some() {
            let users: Vec<(String, Vec<String>)> = self
                .local()
                .iter()
                .map(|(user, ids)| (user.clone(), ids.iter().cloned().collect()))
                .collect();
            let refreshes = stream::iter(users)
                .map(|(user, ids)| {
                    let this = &self;
                    async move {
                        let mut script = REFRESH.key(this.key(&user));
                        script.arg(this.lease_ms());
                        for id in &ids {
                            script.arg(id);
                        }
                        script
                            .invoke_async::<()>(&mut this.conn.clone())
                            .await
                            .map_err(store_error)
                    }
                })
                .buffer_unordered(HEARTBEAT_CONCURRENCY)
                .filter_map(|result| async move { result.err() });
            let failures: Vec<_> = shutdown
                .run_until_cancelled(refreshes.collect())
                .await
                .unwrap_or_default();
            if let Some(error) = failures.first() {
                tracing::warn!(%error, failed = failures.len(), "no se pudieron renovar las plazas de conexión; se reintenta en el próximo latido");
            }
        }
    }
}
