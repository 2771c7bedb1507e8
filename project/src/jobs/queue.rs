//! The e-mail queue: apalis's in-process backend by default, `apalis-redis` with `REDIS_URL`.
//!
//! Both are used the same way: [`EmailQueue::push`] a job now or after a delay, and a worker
//! (see `worker.rs`) takes jobs from it. With Redis, jobs live in Redis (the keys start with
//! `{p}:jobs:email`), so any node may run a job another node queued, and a job survives the
//! restart or crash of the node that queued it.

use std::time::Duration;

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
                // apalis-redis schedules in whole seconds and rounds down; round up instead,
                // so a retry never runs before its backoff is over.
                let delay =
                    Duration::from_secs(delay.as_secs() + u64::from(delay.subsec_nanos() > 0));
                let task = TaskBuilder::new(job).run_after(delay).build();
                storage.push_task(task).await.map_err(unavailable)
            }
        }
    }
}

fn unavailable(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("cola de trabajos: {error}"))
}
