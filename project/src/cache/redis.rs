//! The Redis cache, shared by every node of a cluster: what one node computes, the others read,
//! and an invalidation on one node is seen by all.
//!
//! Unlike moka, Redis gives us no single flight, so we build it in two layers:
//! 1. **Inside the node**: a turn per key ([`Flights`]). Of the node's tasks that miss a key at
//!    once, one goes on; the rest wait for it and then find the body in Redis.
//! 2. **Across nodes**: a short lock in Redis, `SET {lock} {token} NX PX 3000`. `NX` lets only
//!    one node take it; the others poll for the body. `PX` makes it expire by itself, so a node
//!    that dies while computing blocks the key for 3 s at most, not forever.
//!
//! Both layers check twice: after waiting for the turn or taking the lock, look in Redis again,
//! since whoever had it before may have just stored the body ("double-checked locking").
//!
//! The cache is never the source of truth: when Redis fails here, we log it and compute the
//! answer from the backends as if caching were off.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::ConnectionManager;

use crate::backend::StoreResult;
use redis::{RedisError, RedisResult, Script};

use super::CacheStatus;
use super::flight::Flights;

/// Life of a computation lock: a computation taking longer than this may run twice (harmless),
/// and a node that dies while computing makes the others wait this long at most.
const LOCK_TTL: Duration = Duration::from_secs(3);
/// How often a node waiting for another node's computation looks for the body.
const POLL_EVERY: Duration = Duration::from_millis(20);

/// The cache's connection and key names. Keys (see the table in [`super`]):
/// `{prefix}:cache:{key}` for bodies and the generation, `{prefix}:cache-lock:{key}` for locks.
pub(super) struct RedisCache {
    conn: ConnectionManager,
    prefix: Arc<str>,
    flights: Flights,
    unlock: Script,
}

impl RedisCache {
    /// Connects to `url`. Nodes of one cluster must use the same `prefix` to share the cache.
    pub(super) async fn connect(url: &str, prefix: &str) -> StoreResult<Self> {
        let (_, conn) = crate::backend::redis::connect(url).await?;
        Ok(Self {
            conn,
            prefix: prefix.into(),
            flights: Flights::default(),
            unlock: Script::new(include_str!("unlock.lua")),
        })
    }

    fn key(&self, key: &str) -> String {
        format!("{}:cache:{key}", self.prefix)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}:cache-lock:{key}", self.prefix)
    }

    /// The current generation (0 until the first invalidation).
    pub(super) async fn generation(&self) -> RedisResult<u64> {
        let generation: Option<u64> = redis::cmd("GET")
            .arg(self.key("generation"))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(generation.unwrap_or(0))
    }

    /// `INCR`: atomic, so two nodes invalidating at once make two new generations, never one.
    pub(super) async fn invalidate(&self) -> RedisResult<()> {
        redis::cmd("INCR")
            .arg(self.key("generation"))
            .query_async::<u64>(&mut self.conn.clone())
            .await
            .map(drop)
    }

    pub(super) async fn get_or_compute<F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        compute: F,
    ) -> Result<(Bytes, CacheStatus), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
    {
        let (key, lock_key) = (self.key(key), self.lock_key(key));
        // The common case first: the body is there, no locks involved.
        match self.read(&key).await {
            Ok(Some(body)) => return Ok((body, CacheStatus::Hit)),
            Ok(None) => {}
            Err(error) => return bypass(error, compute).await,
        }
        // A miss. Inside this node, one task at a time goes on for this key; across nodes, the
        // one that holds the lock computes.
        let _turn = self.flights.turn(&key).await;
        let lock = match self.body_or_lock(&key, &lock_key).await {
            Ok(Found::Body(body)) => return Ok((body, CacheStatus::Hit)),
            Ok(Found::Lock(lock)) => lock,
            Err(error) => return bypass(error, compute).await,
        };
        let computed = compute().await;
        if let Ok(body) = &computed
            && let Err(error) = self.write(&key, body, ttl).await
        {
            tracing::warn!(%error, "no se pudo guardar en la caché de Redis");
        }
        // Released also after a failed computation, so that the next one need not wait.
        if let Err(error) = self.release(lock).await {
            tracing::warn!(%error, "no se pudo liberar un cerrojo de la caché de Redis");
        }
        Ok((computed?, CacheStatus::Miss))
    }

    /// Waits until the body is in Redis, or until this node holds the lock to compute it.
    async fn body_or_lock(&self, key: &str, lock_key: &str) -> RedisResult<Found> {
        loop {
            // Whoever had the turn or the lock before us may have stored the body meanwhile.
            if let Some(body) = self.read(key).await? {
                return Ok(Found::Body(body));
            }
            let Some(lock) = self.try_lock(lock_key).await? else {
                // Another node is computing it: give it a moment.
                tokio::time::sleep(POLL_EVERY).await;
                continue;
            };
            // Read once more now that the lock is ours: the node that held it may have stored
            // the body and released the lock between our read and our `SET NX`.
            if let Some(body) = self.read(key).await? {
                self.release(lock).await?;
                return Ok(Found::Body(body));
            }
            return Ok(Found::Lock(lock));
        }
    }

    async fn read(&self, key: &str) -> RedisResult<Option<Bytes>> {
        let body: Option<Vec<u8>> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(body.map(Bytes::from))
    }

    /// `SET {key} {body} PX {ttl}`: Redis deletes it when the TTL is over.
    async fn write(&self, key: &str, body: &[u8], ttl: Duration) -> RedisResult<()> {
        redis::cmd("SET")
            .arg(key)
            .arg(body)
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut self.conn.clone())
            .await
    }

    /// `SET {lock} {token} NX PX 3000`: the lock, if no one holds it. The token is ours alone, so
    /// that [`Self::release`] never deletes a lock that another node took after ours expired.
    async fn try_lock(&self, lock_key: &str) -> RedisResult<Option<Lock>> {
        let lock = Lock {
            key: lock_key.to_owned(),
            token: uuid::Uuid::new_v4().to_string(),
        };
        let taken: Option<String> = redis::cmd("SET")
            .arg(&lock.key)
            .arg(&lock.token)
            .arg("NX")
            .arg("PX")
            .arg(millis(LOCK_TTL))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(taken.map(|_| lock))
    }

    async fn release(&self, lock: Lock) -> RedisResult<()> {
        self.unlock
            .key(&lock.key)
            .arg(&lock.token)
            .invoke_async::<u64>(&mut self.conn.clone())
            .await
            .map(drop)
    }
}

/// What [`RedisCache::body_or_lock`] waited for.
enum Found {
    /// The body, stored by another task or node.
    Body(Bytes),
    /// The lock: this node computes.
    Lock(Lock),
}

/// A computation lock this node holds.
struct Lock {
    key: String,
    token: String,
}

/// Redis failed: answer without the cache rather than not at all.
async fn bypass<F, Fut, E>(error: RedisError, compute: F) -> Result<(Bytes, CacheStatus), E>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<Bytes, E>>,
{
    tracing::warn!(%error, "caché de Redis no disponible: se responde sin caché");
    Ok((compute().await?, CacheStatus::Miss))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}
