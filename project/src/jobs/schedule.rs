//! Scheduled work: the sweep that deletes the records of jobs that ended long ago (and, with
//! Redis, apalis's own data of finished tasks), every `CHAT_JOB_SWEEP_INTERVAL_SECS`.
//!
//! It runs as an apalis worker under the same monitor as the e-mail workers, so it stops with
//! them. Its "backend" is a stream of ticks from a `tokio` interval. Every node has such a
//! worker, but with Redis only one node sweeps in each period: the one that takes the period's
//! lease, `SET {p}:jobs:lease:sweep:<period number> <node> NX PX <2 periods>`. The key names
//! the period (unix time ÷ period), so the nodes' ticks need not be in phase.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use apalis_core::backend::Vacuum;
use apalis_redis::RedisStorage;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use redis::aio::ConnectionManager;
use tracing::Instrument;

use super::email::EmailJob;
use super::queue::EmailQueue;
use super::{Jobs, JobsConfig};

/// One tick of the schedule: the job of the sweep worker.
#[derive(Debug, Clone)]
pub struct Tick;

/// A tick now and then every `period`, as an apalis backend. A late tick is skipped, not
/// caught up: one sweep does the work of any number of missed ones.
pub(super) fn ticks(period: Duration) -> BoxStream<'static, Result<Tick, std::io::Error>> {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    futures_util::stream::unfold(interval, |mut interval| async move {
        interval.tick().await;
        Some((Ok(Tick), interval))
    })
    .boxed()
}

/// What the sweep needs.
pub(super) struct Sweeper {
    jobs: Jobs,
    /// The lease's connection and key prefix; `None` in memory (a single node).
    redis: Option<(ConnectionManager, String)>,
    /// A name for this node in the lease (who swept, for whoever looks at Redis).
    node: String,
    period: Duration,
    retention: Duration,
}

impl Sweeper {
    pub(super) fn new(
        jobs: Jobs,
        redis: Option<(ConnectionManager, String)>,
        config: &JobsConfig,
    ) -> Self {
        Self {
            jobs,
            redis,
            node: uuid::Uuid::new_v4().to_string(),
            period: config.sweep_interval(),
            retention: config.retention(),
        }
    }

    /// Whether this node sweeps in the current period (always, without Redis).
    async fn take_lease(&self) -> Result<bool, redis::RedisError> {
        let Some((conn, prefix)) = &self.redis else {
            return Ok(true);
        };
        let period_ms = self.period.as_millis().max(1) as i64;
        let number = chrono::Utc::now().timestamp_millis() / period_ms;
        let taken: Option<String> = redis::cmd("SET")
            .arg(format!("{prefix}:jobs:lease:sweep:{number}"))
            .arg(&self.node)
            .arg("NX")
            .arg("PX")
            .arg(period_ms * 2)
            .query_async(&mut conn.clone())
            .await?;
        Ok(taken.is_some())
    }

    async fn sweep(&self) -> Result<(), BoxDynError> {
        if !self.take_lease().await? {
            tracing::debug!("otro nodo tiene el barrido de este periodo");
            return Ok(());
        }
        let retention_ms = i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = chrono::Utc::now()
            .timestamp_millis()
            .saturating_sub(retention_ms);
        let records = self.jobs.shared.store.sweep(cutoff).await?;
        // apalis-redis keeps each finished task's payload and metadata until vacuumed.
        let tasks = match &self.jobs.shared.queue {
            EmailQueue::Redis(storage) => {
                let mut storage: RedisStorage<EmailJob> = (**storage).clone();
                storage.vacuum_before(self.retention).await?
            }
            EmailQueue::Memory { .. } => 0,
        };
        tracing::info!(records, tasks, "barrido de trabajos terminados");
        Ok(())
    }
}

/// The apalis handler of a tick. A failed sweep is logged; the next period tries again.
pub(super) async fn sweep_handler(
    _tick: Tick,
    sweeper: Data<Arc<Sweeper>>,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", kind = "sweep");
    if let Err(error) = sweeper.sweep().instrument(span).await {
        tracing::warn!(%error, "falló el barrido de trabajos");
    }
    Ok(())
}
