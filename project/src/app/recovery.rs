//! Notices a Redis that came back empty and bootstraps it again.
//!
//! A Redis restarted without persistence, or emptied with `FLUSHALL`, keeps answering: nothing
//! fails, but the admin account and `general` are gone and room ids start again under the `since`
//! of connected clients. Bootstrap writes a sentinel key, `{prefix}:bootstrapped`, whose value
//! names that bootstrap; every node reads it every few seconds. When it is missing, the node runs
//! the bootstrap again (idempotent: several nodes may notice at once) and writes a new name with
//! `SET NX`, so all nodes agree on one. When the name differs from the one a node saw last
//! (it re-bootstrapped, or another node did), it closes its clients with 1013: they rejoin with
//! `since` and `epoch`, and since every epoch key went with the data, a new epoch is made on the
//! first read and they get `reset` with the new history.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::auth::passwords::HashPool;
use crate::backend::{Backends, StoreResult};
use crate::cache::Cache;
use crate::config::Config;
use crate::ws::hub::Hub;

/// The most one sentinel command may take (the connection has its own, shorter, limits).
const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// The most a re-bootstrap may take: it hashes the admin's password (a queue may be ahead).
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);

/// The watcher's name for the supervisor and `/ready`.
pub const TASK: &str = "vigilancia de la inicialización de Redis";

/// The sentinel key of one cluster and a connection to its Redis. Cheap to clone (the
/// connection multiplexes), so a restarted watcher gets one.
#[derive(Clone)]
pub(super) struct Sentinel {
    key: String,
    conn: ConnectionManager,
}

impl Sentinel {
    pub(super) async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        let (_, conn) = crate::backend::redis::connect(url).await?;
        Ok(Self {
            key: format!("{prefix}:bootstrapped"),
            conn,
        })
    }

    /// Writes a new name unless there is one, and returns the name now in Redis.
    pub(super) async fn mark(&self) -> anyhow::Result<String> {
        let fresh = uuid::Uuid::new_v4().simple().to_string();
        let mut conn = self.conn.clone();
        let _: Option<String> = bounded(
            redis::cmd("SET")
                .arg(&self.key)
                .arg(&fresh)
                .arg("NX")
                .query_async(&mut conn),
        )
        .await?;
        // Ours, or the one another node wrote first (or, were Redis emptied again in between,
        // none: the next round bootstraps once more).
        Ok(self.read().await?.unwrap_or(fresh))
    }

    /// The name in Redis, or `None` when the sentinel is gone.
    async fn read(&self) -> anyhow::Result<Option<String>> {
        let mut conn = self.conn.clone();
        bounded(redis::cmd("GET").arg(&self.key).query_async(&mut conn)).await
    }
}

/// Runs [`CALL_TIMEOUT`]-bounded.
async fn bounded<T>(call: impl Future<Output = redis::RedisResult<T>>) -> anyhow::Result<T> {
    Ok(tokio::time::timeout(CALL_TIMEOUT, call).await??)
}

/// What the watcher uses: the bootstrap's handles, the cache and the hub it refreshes after a
/// repair, and the server's shutdown. Cheap to clone, so a restarted watcher gets its own.
#[derive(Clone)]
pub(super) struct Watched {
    pub backends: Backends,
    pub passwords: Arc<HashPool>,
    pub config: Arc<Config>,
    pub cache: Cache,
    pub hub: Arc<Hub>,
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// Checks the sentinel every `every` until shutdown; `seen` is the name this node bootstrapped
/// under, shared with the watcher that replaces this one if it panics (so a restart alone does
/// not resync anyone). Never fails: a Redis that does not answer is `/ready`'s business, and is
/// checked again on the next round.
pub(super) async fn watch(
    state: Watched,
    sentinel: Sentinel,
    seen: Arc<Mutex<String>>,
    every: Duration,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            () = state.shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let name = tokio::select! {
            () = state.shutdown.cancelled() => return,
            name = check(&state, &sentinel) => name,
        };
        let known = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match name {
            Ok(name) if name != known => {
                tracing::warn!(
                    "Redis volvió vacío y se inicializó de nuevo: se reconectan los clientes de este nodo"
                );
                // A list computed while `general` was missing must not outlive the repair.
                state.cache.invalidate_rooms().await;
                state.hub.resync_everyone();
                *seen.lock().unwrap_or_else(PoisonError::into_inner) = name;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, "no se pudo comprobar si Redis sigue inicializado")
            }
        }
    }
}

/// The sentinel's name, after bootstrapping again if it was gone.
async fn check(state: &Watched, sentinel: &Sentinel) -> anyhow::Result<String> {
    if let Some(name) = sentinel.read().await? {
        return Ok(name);
    }
    tracing::warn!("Redis no tiene la marca de inicialización: se crean de nuevo admin y general");
    let generated = tokio::time::timeout(
        BOOTSTRAP_TIMEOUT,
        super::bootstrap(&state.backends, &state.passwords, &state.config),
    )
    .await??;
    if let Some(password) = generated {
        // The only chance to learn it, as at start-up (see `main`).
        tracing::warn!(
            "cuenta de administración creada de nuevo: usuario «{}», contraseña «{password}» (define CHAT_ADMIN_PASSWORD para fijarla)",
            state.config.admin_username
        );
    }
    // Only now: a node that sees the new name resyncs its clients, and they must find `general`.
    sentinel.mark().await
}
