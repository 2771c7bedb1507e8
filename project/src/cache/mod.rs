//! The cache of `GET /rooms` and `GET /admin/stats`: cache-aside, with a TTL, invalidation on
//! the writes that change them, and protection against stampedes.
//!
//! # Cache-aside
//! The handler asks the cache for a key and hands it the way to compute the answer:
//! 1. The key is cached: answer the stored JSON body, `X-Cache: HIT`.
//! 2. It is not: compute the answer from the backends, store it with a TTL, answer it,
//!    `X-Cache: MISS`.
//!
//! The cache is never the source of truth, only a copy that is at most a TTL old (5 s for the
//! rooms, 2 s for the stats; the contract allows up to 5 s). That is why the online counts
//! may lag. When a Redis cache fails, the answer is computed as if there were no cache.
//!
//! # Invalidation by generation
//! `GET /rooms` differs per caller (a private room is listed to its members only), so there is
//! one entry per user. When someone creates a room, every user's entry is out of date, but the
//! writer cannot delete them: it does not know which users have one (and `KEYS`/`SCAN` over
//! Redis is slow, and racy). Instead every key carries a **generation number**:
//!
//! ```text
//! rooms:v7:ana      rooms:v7:bea      admin_stats:v7
//! ```
//!
//! A write that changes the rooms increments the generation (`INCR` in Redis, an `AtomicU64` in
//! memory). From then on every reader builds `...:v8:...` keys, misses, and computes fresh
//! data; the `v7` entries are never read again and simply expire with their TTL. One `INCR`
//! invalidates any number of entries, on every node.
//!
//! It also closes the classic cache-aside race. With "delete the key on write", a reader that
//! computed from the old data just before the write can store it just after the delete, and
//! the stale entry lives a whole TTL. Here that reader stores it under the old generation,
//! where nobody looks any more.
//!
//! The writes that change the rooms ([`Cache::invalidate_rooms`]): creating a room, inviting
//! someone, a user's first join of a public room (the member count grows) and removing a
//! member. The stats list the rooms too, so their key carries the same generation.
//!
//! # Stampede
//! When a popular key expires, a hundred requests may miss it at once; without care all hundred
//! compute the same answer at once, and the backends suffer exactly when they are busiest. Here
//! one computes and the rest wait for its result ("single flight"): moka does it for us in
//! memory (`memory.rs`); with Redis, a per-key turn inside the node plus a short `SET NX PX` lock
//! across nodes (`redis.rs`).
//!
//! # Redis keys
//! | key | type | what |
//! |---|---|---|
//! | `{p}:cache:generation` | string | the generation number (missing = 0) |
//! | `{p}:cache:rooms:v{gen}:{user}` | string | `GET /rooms` of `user`, JSON; expires after the TTL |
//! | `{p}:cache:admin_stats:v{gen}` | string | `GET /admin/stats`, JSON; expires after the TTL |
//! | `{p}:cache-lock:{key}` | string | a node is computing `{key}`; expires after 3 s |

mod flight;
mod memory;
mod redis;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Serialize;

use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::{CACHE_HITS_TOTAL, CACHE_MISSES_TOTAL};
use memory::MemoryCache;
use redis::RedisCache;

/// The cache's settings and TTLs live in [`crate::config`], which must not depend on the cache.
pub use crate::config::{CacheConfig, MAX_TTL, ROOMS_TTL, STATS_TTL};

/// The response header that tells whether an answer came from the cache.
pub const X_CACHE: &str = "x-cache";

/// Whether an answer came from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Found in the cache (or computed by another request that this one waited for).
    Hit,
    /// Computed by this request.
    Miss,
}

impl CacheStatus {
    /// The value of the `X-Cache` header.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
        }
    }
}

/// A JSON body served through the cache; as a response it carries `X-Cache`.
#[derive(Debug, Clone)]
pub struct Cached {
    pub body: Bytes,
    pub status: CacheStatus,
}

impl IntoResponse for Cached {
    fn into_response(self) -> Response {
        let headers = [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::HeaderName::from_static(X_CACHE),
                self.status.as_str(),
            ),
        ];
        (headers, self.body).into_response()
    }
}

/// Where cached bodies live. An enum rather than a trait object: there are exactly two, and
/// [`Cache::get_or_compute`] is generic, which a trait object's method cannot be.
enum Store {
    Memory(MemoryCache),
    Redis(RedisCache),
}

/// The cache handle, one per server (handlers take it as `State<Cache>`). Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    store: Arc<Store>,
    rooms_ttl: Duration,
    stats_ttl: Duration,
}

/// The cache could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("no se pudo conectar con Redis para la caché: {0}")]
    Redis(#[from] crate::backend::StoreError),
}

impl Cache {
    /// In Redis when `REDIS_URL` is set (shared by the nodes that share `CHAT_REDIS_PREFIX`),
    /// in this process otherwise; with the configured TTLs.
    pub async fn from_config(config: &Config) -> Result<Self, CacheError> {
        let cache = match &config.redis_url {
            Some(url) => Self::redis(url, &config.redis_prefix).await?,
            None => Self::in_memory(),
        };
        Ok(cache.with_ttls(config.cache.rooms_ttl(), config.cache.stats_ttl()))
    }

    /// An in-process cache with the default TTLs.
    pub fn in_memory() -> Self {
        Self::new(Store::Memory(MemoryCache::new()))
    }

    /// A Redis cache with the default TTLs; keys start with `{prefix}:cache`.
    pub async fn redis(url: &str, prefix: &str) -> Result<Self, CacheError> {
        Ok(Self::new(Store::Redis(
            RedisCache::connect(url, prefix).await?,
        )))
    }

    fn new(store: Store) -> Self {
        Self {
            store: Arc::new(store),
            rooms_ttl: ROOMS_TTL,
            stats_ttl: STATS_TTL,
        }
    }

    /// The same cache with other TTLs, each capped at [`MAX_TTL`].
    pub fn with_ttls(self, rooms: Duration, stats: Duration) -> Self {
        Self {
            rooms_ttl: rooms.min(MAX_TTL),
            stats_ttl: stats.min(MAX_TTL),
            ..self
        }
    }

    // ------------------------------------------------------------------------------------------
    // What we cache
    // ------------------------------------------------------------------------------------------

    // ANCHOR: cache_rooms
    /// `GET /rooms` as `user` sees it, from the cache or from `compute`.
    pub async fn rooms<T, Fut>(
        &self,
        user: &str,
        compute: impl FnOnce() -> Fut,
    ) -> Result<Cached, ApiError>
    where
        T: Serialize,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let key = |generation| format!("rooms:v{generation}:{user}");
        self.serve("rooms", key, self.rooms_ttl, compute).await
    }
    // ANCHOR_END: cache_rooms

    /// `GET /admin/stats`, from the cache or from `compute`.
    pub async fn admin_stats<T, Fut>(
        &self,
        compute: impl FnOnce() -> Fut,
    ) -> Result<Cached, ApiError>
    where
        T: Serialize,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let key = |generation| format!("admin_stats:v{generation}");
        self.serve("admin_stats", key, self.stats_ttl, compute)
            .await
    }

    // ANCHOR: invalidate
    /// Call after a write that changes what `GET /rooms` shows, once the write is stored: every
    /// user's cached list (and the stats) is out of date from now on, on every node.
    ///
    /// Never fails: if Redis cannot be told, the lists are stale for one TTL at most, which is
    /// better than failing a write that did happen.
    pub async fn invalidate_rooms(&self) {
        match &*self.store {
            Store::Memory(memory) => memory.invalidate(),
            Store::Redis(redis) => {
                if let Err(error) = redis.invalidate().await {
                    tracing::warn!(%error, "no se pudo invalidar la caché de salas");
                }
            }
        }
    }
    // ANCHOR_END: invalidate

    // ANCHOR: serve
    /// Looks `key` up under the current generation, computes on a miss, serializes, and counts
    /// the hit or miss in `chat_cache_{hits,misses}_total{cache=name}`.
    async fn serve<T, Fut>(
        &self,
        name: &'static str,
        key: impl FnOnce(u64) -> String,
        ttl: Duration,
        compute: impl FnOnce() -> Fut,
    ) -> Result<Cached, ApiError>
    where
        T: Serialize,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let compute = || async { to_json(&compute().await?) };
        let (body, status) = match self.generation().await {
            Some(generation) => self.get_or_compute(&key(generation), ttl, compute).await?,
            // Without the generation we cannot tell current entries from stale ones.
            None => (compute().await?, CacheStatus::Miss),
        };
        let counter = match status {
            CacheStatus::Hit => CACHE_HITS_TOTAL,
            CacheStatus::Miss => CACHE_MISSES_TOTAL,
        };
        metrics::counter!(counter, "cache" => name).increment(1);
        Ok(Cached { body, status })
    }
    // ANCHOR_END: serve

    async fn generation(&self) -> Option<u64> {
        match &*self.store {
            Store::Memory(memory) => Some(memory.generation()),
            Store::Redis(redis) => match redis.generation().await {
                Ok(generation) => Some(generation),
                Err(error) => {
                    tracing::warn!(%error, "caché de Redis no disponible: se responde sin caché");
                    None
                }
            },
        }
    }

    // ------------------------------------------------------------------------------------------
    // How we cache
    // ------------------------------------------------------------------------------------------

    /// The cache-aside step: the body stored under `key`, or else the one `compute` returns,
    /// stored for `ttl`. Concurrent misses of one key run `compute` once (on Redis: once in
    /// the whole cluster) and the others get its body as a [`CacheStatus::Hit`]. A failed
    /// computation is not stored.
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: &str,
        ttl: Duration,
        compute: F,
    ) -> Result<(Bytes, CacheStatus), E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
        E: Clone + Send + Sync + 'static,
    {
        match &*self.store {
            Store::Memory(memory) => memory.get_or_compute(key, ttl, compute).await,
            Store::Redis(redis) => redis.get_or_compute(key, ttl, compute).await,
        }
    }
}

/// Our responses are plain structs: serializing them cannot fail in practice.
fn to_json<T: Serialize>(value: &T) -> Result<Bytes, ApiError> {
    serde_json::to_vec(value).map(Bytes::from).map_err(|error| {
        tracing::error!(%error, "no se pudo serializar una respuesta");
        ApiError::Unavailable("no se pudo preparar la respuesta".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_are_capped_at_the_contracts_five_seconds() {
        let cache = Cache::in_memory().with_ttls(Duration::from_secs(60), Duration::from_secs(6));

        assert_eq!(cache.rooms_ttl, MAX_TTL);
        assert_eq!(cache.stats_ttl, MAX_TTL);
    }
}
