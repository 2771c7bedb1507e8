//! The in-process cache, for a single node: a [`moka`] cache of JSON bodies.
//!
//! moka does the hard parts for us: every entry expires after its own TTL, the cache never holds
//! more than [`MAX_ENTRIES`], and `entry(key).or_try_insert_with(compute)` is single flight:
//! of many tasks that miss one key at once, one runs `compute` and the others wait for its
//! result. Compare with `redis.rs`, where we must build that ourselves.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache;

use super::CacheStatus;

/// Most entries kept at once (one per user for `GET /rooms`, plus old generations until they
/// expire); past it moka evicts the least useful ones.
const MAX_ENTRIES: u64 = 10_000;

/// A cached body and how long it may live.
#[derive(Clone)]
struct Entry {
    body: Bytes,
    ttl: Duration,
}

/// Tells moka that each entry lives as long as the TTL it was stored with.
struct EntryTtl;

impl Expiry<String, Entry> for EntryTtl {
    fn expire_after_create(&self, _key: &String, entry: &Entry, _at: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Bodies by key, plus the generation number (see the module docs of [`super`]).
pub(super) struct MemoryCache {
    entries: Cache<String, Entry>,
    generation: AtomicU64,
}

impl MemoryCache {
    pub(super) fn new() -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(MAX_ENTRIES)
                .expire_after(EntryTtl)
                .build(),
            generation: AtomicU64::new(0),
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// A new generation: every key built from the old one is never read again.
    pub(super) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
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
        E: Clone + Send + Sync + 'static,
    {
        let entry = self
            .entries
            .entry(key.to_owned())
            .or_try_insert_with(async {
                Ok(Entry {
                    body: compute().await?,
                    ttl,
                })
            })
            .await
            // A failed computation is not cached; the tasks that waited for it share its error.
            .map_err(Arc::unwrap_or_clone)?;
        // Fresh: this task ran `compute`. Otherwise the body was cached, or computed by the
        // task this one waited for.
        let status = if entry.is_fresh() {
            CacheStatus::Miss
        } else {
            CacheStatus::Hit
        };
        Ok((entry.into_value().body, status))
    }
}
