//! Job records: what `/admin/jobs`, the dashboard and the metrics show.
//!
//! The queue (apalis) only knows tasks to run; the life of a job as the contract describes it
//! (`pending → running → done`, or `failed` and again `running`, until `dead`) is ours, so we
//! record it here, in this process or in Redis (shared by every node):
//!
//! | key | type | what |
//! |---|---|---|
//! | `{p}:jobs:records` | hash | job id → [`JobRecord`] as JSON |
//! | `{p}:jobs:status:{status}` | sorted set | the ids in that status, scored by their last change (ms) |
//!
//! The per-status sets make counting (`ZCARD`), listing by status and sweeping old records
//! cheap, and `record.lua` moves an id between them atomically.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, MutexGuard};

use redis::Script;
use redis::aio::ConnectionManager;

use super::{JobCounts, JobRecord, JobStatus};
use crate::backend::{StoreError, StoreResult};

/// Most records one listing returns (the newest).
pub const LIST_LIMIT: usize = 1000;
/// Most records of each final status one sweep deletes.
const SWEEP_BATCH: usize = 10_000;

static RECORD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("record.lua")));
static SWEEP: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("sweep.lua")));

/// Where job records live. An enum rather than a trait: there are exactly two, chosen at
/// start-up with the rest of the backends.
pub enum JobStore {
    /// id → (record, last change in ms). A `std` mutex: never held across an `.await`.
    Memory(Mutex<HashMap<String, (JobRecord, i64)>>),
    Redis {
        conn: ConnectionManager,
        prefix: String,
    },
}

impl JobStore {
    /// Records in this process (no `REDIS_URL`).
    pub fn memory() -> Self {
        Self::Memory(Mutex::new(HashMap::new()))
    }

    /// Records in Redis, under `prefix`, shared by every node.
    pub fn redis(conn: ConnectionManager, prefix: &str) -> Self {
        Self::Redis {
            conn,
            prefix: prefix.to_owned(),
        }
    }

    /// Records a job's new state, at `now_ms`. `false` (and nothing changes) when the job has
    /// already ended: the caller must not act on a job that is `done` or `dead`.
    pub async fn record(&self, record: &JobRecord, now_ms: i64) -> StoreResult<bool> {
        match self {
            Self::Memory(records) => {
                let mut records = lock(records);
                let ended = records
                    .get(&record.id)
                    .is_some_and(|(old, _)| old.status.is_final());
                if !ended {
                    records.insert(record.id.clone(), (record.clone(), now_ms));
                }
                Ok(!ended)
            }
            Self::Redis { conn, prefix } => {
                let json = serde_json::to_string(record)
                    .map_err(|error| StoreError::Corrupt(error.to_string()))?;
                let mut script = RECORD.key(records_key(prefix));
                for status in JobStatus::ALL {
                    script.key(status_key(prefix, status));
                }
                let position = 2 + JobStatus::ALL
                    .iter()
                    .position(|status| *status == record.status)
                    .unwrap_or_default();
                let written: u8 = script
                    .arg(&record.id)
                    .arg(json)
                    .arg(position)
                    .arg(now_ms)
                    .invoke_async(&mut conn.clone())
                    .await
                    .map_err(redis_error)?;
                Ok(written == 1)
            }
        }
    }

    /// The newest records (by last change), all or those in one status, at most [`LIST_LIMIT`].
    pub async fn list(&self, status: Option<JobStatus>) -> StoreResult<Vec<JobRecord>> {
        let wanted = |s: JobStatus| status.is_none_or(|wanted| wanted == s);
        match self {
            Self::Memory(records) => {
                let mut found: Vec<(JobRecord, i64)> = lock(records)
                    .values()
                    .filter(|(record, _)| wanted(record.status))
                    .cloned()
                    .collect();
                found.sort_by_key(|(_, changed)| std::cmp::Reverse(*changed));
                Ok(found
                    .into_iter()
                    .take(LIST_LIMIT)
                    .map(|(record, _)| record)
                    .collect())
            }
            Self::Redis { conn, prefix } => {
                let mut conn = conn.clone();
                // The newest ids of each wanted status, then the newest of those overall.
                let mut pipe = redis::pipe();
                let statuses: Vec<JobStatus> =
                    JobStatus::ALL.into_iter().filter(|s| wanted(*s)).collect();
                for status in &statuses {
                    pipe.cmd("ZREVRANGE")
                        .arg(status_key(prefix, *status))
                        .arg(0)
                        .arg(LIST_LIMIT - 1)
                        .arg("WITHSCORES");
                }
                let per_status: Vec<Vec<(String, f64)>> =
                    pipe.query_async(&mut conn).await.map_err(redis_error)?;
                let mut ids: Vec<(String, f64)> = per_status.into_iter().flatten().collect();
                ids.sort_by(|a, b| b.1.total_cmp(&a.1));
                ids.truncate(LIST_LIMIT);
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let ids: Vec<String> = ids.into_iter().map(|(id, _)| id).collect();
                let jsons: Vec<Option<String>> = redis::cmd("HMGET")
                    .arg(records_key(prefix))
                    .arg(&ids)
                    .query_async(&mut conn)
                    .await
                    .map_err(redis_error)?;
                jsons
                    .into_iter()
                    .flatten()
                    .map(|json| {
                        serde_json::from_str(&json).map_err(|error| {
                            StoreError::Corrupt(format!("registro de trabajo: {error}"))
                        })
                    })
                    .collect()
            }
        }
    }

    /// How many jobs are in each status.
    pub async fn counts(&self) -> StoreResult<JobCounts> {
        let per_status: Vec<u64> = match self {
            Self::Memory(records) => {
                let records = lock(records);
                JobStatus::ALL
                    .iter()
                    .map(|status| {
                        records
                            .values()
                            .filter(|(record, _)| record.status == *status)
                            .count() as u64
                    })
                    .collect()
            }
            Self::Redis { conn, prefix } => {
                let mut pipe = redis::pipe();
                for status in JobStatus::ALL {
                    pipe.zcard(status_key(prefix, status));
                }
                pipe.query_async(&mut conn.clone())
                    .await
                    .map_err(redis_error)?
            }
        };
        let count = |status: JobStatus| {
            JobStatus::ALL
                .iter()
                .position(|s| *s == status)
                .and_then(|at| per_status.get(at).copied())
                .unwrap_or_default()
        };
        Ok(JobCounts {
            pending: count(JobStatus::Pending),
            running: count(JobStatus::Running),
            done: count(JobStatus::Done),
            failed: count(JobStatus::Failed),
            dead: count(JobStatus::Dead),
        })
    }

    /// Deletes the records of jobs that ended (`done`, `dead`) before `cutoff_ms`; returns how
    /// many. Jobs still in flight are never touched, however old.
    pub async fn sweep(&self, cutoff_ms: i64) -> StoreResult<u64> {
        match self {
            Self::Memory(records) => {
                let mut records = lock(records);
                let before = records.len();
                records.retain(|_, (record, changed)| {
                    !(record.status.is_final() && *changed < cutoff_ms)
                });
                Ok((before - records.len()) as u64)
            }
            Self::Redis { conn, prefix } => SWEEP
                .key(records_key(prefix))
                .key(status_key(prefix, JobStatus::Done))
                .key(status_key(prefix, JobStatus::Dead))
                .arg(cutoff_ms)
                .arg(SWEEP_BATCH)
                .invoke_async(&mut conn.clone())
                .await
                .map_err(redis_error),
        }
    }
}

fn records_key(prefix: &str) -> String {
    format!("{prefix}:jobs:records")
}

fn status_key(prefix: &str, status: JobStatus) -> String {
    format!("{prefix}:jobs:status:{}", status.as_str())
}

/// Recovers the map if a panicking thread poisoned the lock (no operation leaves it half-written).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A Redis failure: a reply of the wrong shape is corrupt data, anything else is unavailability.
pub(super) fn redis_error(error: redis::RedisError) -> StoreError {
    match error.kind() {
        redis::ErrorKind::Parse | redis::ErrorKind::UnexpectedReturnType => {
            StoreError::Corrupt(error.to_string())
        }
        _ => StoreError::Unavailable(error.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, status: JobStatus) -> JobRecord {
        JobRecord {
            id: id.into(),
            kind: "email".into(),
            status,
            attempts: 1,
            last_error: None,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            updated_at: "2026-01-01T00:00:00.000Z".into(),
        }
    }

    #[tokio::test]
    async fn a_finished_job_is_never_reopened() {
        let store = JobStore::memory();
        assert!(
            store
                .record(&record("a", JobStatus::Running), 1)
                .await
                .unwrap()
        );
        assert!(
            store
                .record(&record("a", JobStatus::Done), 2)
                .await
                .unwrap()
        );
        assert!(
            !store
                .record(&record("a", JobStatus::Running), 3)
                .await
                .unwrap()
        );
        let counts = store.counts().await.unwrap();
        assert_eq!((counts.done, counts.running), (1, 0));
    }

    #[tokio::test]
    async fn lists_newest_first_and_filters_by_status() {
        let store = JobStore::memory();
        store
            .record(&record("a", JobStatus::Dead), 1)
            .await
            .unwrap();
        store
            .record(&record("b", JobStatus::Done), 2)
            .await
            .unwrap();
        store
            .record(&record("c", JobStatus::Dead), 3)
            .await
            .unwrap();
        let ids = |records: Vec<JobRecord>| -> Vec<String> {
            records.into_iter().map(|r| r.id).collect()
        };
        assert_eq!(ids(store.list(None).await.unwrap()), ["c", "b", "a"]);
        assert_eq!(
            ids(store.list(Some(JobStatus::Dead)).await.unwrap()),
            ["c", "a"]
        );
    }

    #[tokio::test]
    async fn the_sweep_deletes_only_old_finished_jobs() {
        let store = JobStore::memory();
        store
            .record(&record("old-done", JobStatus::Done), 10)
            .await
            .unwrap();
        store
            .record(&record("old-pending", JobStatus::Pending), 10)
            .await
            .unwrap();
        store
            .record(&record("new-dead", JobStatus::Dead), 100)
            .await
            .unwrap();
        assert_eq!(store.sweep(50).await.unwrap(), 1);
        let counts = store.counts().await.unwrap();
        assert_eq!((counts.done, counts.pending, counts.dead), (0, 1, 1));
    }
}
