//! The e-mail queue: apalis's in-process backend by default, `apalis-redis` with `REDIS_URL`.
//!
//! Both are used the same way: [`EmailQueue::push`] a job now or after a delay, and a worker
//! (see `worker.rs`) takes jobs from it. With Redis, jobs live in Redis (the keys start with
//! `{p}:jobs:email`), so any node may run a job another node queued, and a job survives the
//! restart or crash of the node that queued it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_core::backend::dequeue::VecDequeBackend;
use apalis_redis::RedisStorage;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::email::EmailJob;
use crate::backend::{StoreError, StoreResult};

/// The queue of e-mail jobs, on one of apalis's backends.
#[derive(Clone)]
pub enum EmailQueue {
    /// In this process; lost when it exits (like everything else without Redis).
    Memory {
        backend: VecDequeBackend<EmailJob>,
        /// Delayed pushes wait in tasks tracked here, which stop at shutdown.
        tasks: TaskTracker,
        shutdown: CancellationToken,
    },
    /// Boxed: a `RedisStorage` is large, and the enum is moved around by value.
    Redis(Box<RedisStorage<EmailJob>>),
}

impl EmailQueue {
    /// The apalis queue name for a Redis key prefix.
    pub fn redis_queue_name(prefix: &str) -> String {
        format!("{prefix}:jobs:email")
    }

    /// Queues `job` to run after `delay` (at once when zero).
    pub async fn push(&self, job: EmailJob, delay: Duration) -> StoreResult<()> {
        match self {
            Self::Memory {
                backend,
                tasks,
                shutdown,
            } => {
                let mut backend = backend.clone();
                if delay.is_zero() {
                    return backend.push(job).await.map_err(unavailable);
                }
                // `VecDequeBackend` has no schedule (it ignores `run_at`), so the delay is a
                // timer of ours. A shutdown drops the waiting job, as it drops the whole queue.
                let shutdown = shutdown.clone();
                tasks.spawn(async move {
                    let waited = shutdown.run_until_cancelled(tokio::time::sleep(delay));
                    if waited.await.is_none() {
                        return;
                    }
                    if let Err(error) = backend.push(job).await {
                        tracing::error!(%error, "no se pudo reencolar un trabajo");
                    }
                });
                Ok(())
            }
            Self::Redis(storage) => {
                let mut storage: RedisStorage<EmailJob> = (**storage).clone();
                if delay.is_zero() {
                    return storage.push(job).await.map_err(unavailable);
                }
                // apalis-redis keeps the due time in whole Unix seconds, and `run_after` rounds
                // `now + delay` down: a 1 s retry pushed at x.9 s would be due at once. The due
                // second is rounded up instead, so a retry never runs before its backoff.
                let due = due_second(SystemTime::now(), delay);
                let task = TaskBuilder::new(job).run_at_timestamp(due).build();
                storage.push_task(task).await.map_err(unavailable)
            }
        }
    }
}

/// The first whole Unix second at or after `now + delay`: when a job pushed at `now` to run
/// after `delay` may run, in the whole seconds apalis-redis schedules by.
fn due_second(now: SystemTime, delay: Duration) -> u64 {
    let due = (now + delay).duration_since(UNIX_EPOCH).unwrap_or_default();
    due.as_secs() + u64::from(due.subsec_nanos() > 0)
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("cola de trabajos: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_delayed_job_is_never_due_before_its_delay_is_over() {
        for (now_ms, delay_ms) in [
            (100_900, 1_000),
            (100_900, 50),
            (100_000, 1_500),
            (100_999, 1),
        ] {
            let now = UNIX_EPOCH + Duration::from_millis(now_ms);
            let delay = Duration::from_millis(delay_ms);
            let due = UNIX_EPOCH + Duration::from_secs(due_second(now, delay));
            assert!(due >= now + delay, "now {now_ms} ms, delay {delay_ms} ms");
            // And not a whole second later than needed.
            assert!(due < now + delay + Duration::from_secs(1));
        }
        // Exactly on a second: due then, not a second later.
        let now = UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(due_second(now, Duration::from_secs(2)), 102);
    }
}
