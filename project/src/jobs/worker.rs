//! The apalis workers of this process, under one `Monitor` that stops with the server.
//!
//! # Retries: ours, on both backends
//! apalis-redis 1.0 has a retry policy of its own: when a handler returns `Err`, its
//! `handle_results.lua` re-schedules the task `attempt` seconds later, up to a hard-coded 25
//! attempts, ignoring any `max_attempts`, and only then moves it to its dead set. That is not
//! the contract's policy (5 attempts, exponential backoff, then `dead`). So the handler never
//! returns `Err` for a failed e-mail: it records the failure itself and pushes the job again,
//! with `attempt + 1` in the payload, to run after `base × 2^(attempt−1)`; after the last
//! attempt it records `dead`. apalis only ever sees successes, on both backends alike, and the
//! attempt count survives restarts because it travels in the payload. (`Err` is returned only
//! when that re-push fails, Redis being down: then apalis keeps the task and runs it again.)
//!
//! # Nodes that crash
//! Each worker has a name unique to this process (`chat-email-<uuid>`). apalis-redis keeps
//! the jobs a worker took in that worker's in-flight set, and every worker's heartbeat
//! re-queues the jobs of workers that stopped beating for `HEARTBEAT × MISSED_HEARTBEATS`.
//! Two workers with the same name would hide each other's death, hence the uuid.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::backend::dequeue::VecDequeBackend;
use apalis_redis::{Config as RedisQueueConfig, RedisStorage};
use lettre::message::Mailbox;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::email::{self, EmailJob, Mailer};
use super::queue::EmailQueue;
use super::schedule::{self, Sweeper};
use super::{JobStatus, Jobs, JobsConfig};
use crate::supervisor::Supervisor;

/// How often a Redis worker says it is alive.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// Heartbeats a worker may miss before its jobs are given to others: a crashed node's jobs run
/// again elsewhere after about 6 s (apalis's default, 30 s × 10, would wait 5 minutes).
const MISSED_HEARTBEATS: usize = 3;
/// How often an idle Redis worker looks for due jobs. Retries are scheduled in Redis, and an
/// idle worker would otherwise only notice them on its next heartbeat.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// How often the kicker wakes the Redis worker (see [`spawn_monitor`]).
const WAKE_EVERY: Duration = Duration::from_millis(500);
/// Longest wait before a retry, whatever the attempt.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);

/// The apalis-redis settings of the e-mail queue.
pub(super) fn redis_queue_config(prefix: &str, config: &JobsConfig) -> RedisQueueConfig {
    RedisQueueConfig::default()
        .queue(EmailQueue::redis_queue_name(prefix))
        .heartbeat_interval(HEARTBEAT)
        .missed_heartbeats(MISSED_HEARTBEATS)
        // A worker takes only as many jobs as it runs at once: jobs it buffered would wait for
        // it even when another node is idle.
        .batch_size(config.concurrency.max(1))
}

// ANCHOR: backoff
/// The wait before attempt `failed_attempt + 1`: `base`, `2 × base`, `4 × base`…
pub fn backoff(base: Duration, failed_attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(failed_attempt.saturating_sub(1));
    base.saturating_mul(factor).min(MAX_BACKOFF)
}
// ANCHOR_END: backoff

/// What runs an e-mail job: the jobs handle (records, queue) and the mailer.
pub(super) struct Runner {
    jobs: Jobs,
    mailer: Mailer,
    from: Mailbox,
}

impl Runner {
    // ANCHOR: attempt
    /// One attempt of one job (see the module docs for the retry policy).
    async fn run(&self, job: EmailJob) -> Result<(), BoxDynError> {
        let config = &self.jobs.shared.config;
        if !self
            .jobs
            .transition(&job, JobStatus::Running, job.last_error.clone())
            .await
        {
            tracing::info!("el trabajo ya había terminado: no se repite");
            return Ok(());
        }
        let email = email::render(&job.mention, config.mention_email_window());
        let send = self.mailer.send(&self.from, &job.mention.to, email);
        let outcome = match tokio::time::timeout(config.attempt_timeout(), send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!(
                "el intento superó el límite de {} s",
                config.attempt_timeout().as_secs()
            )),
        };
        match outcome {
            Ok(()) => {
                tracing::info!("e-mail enviado");
                self.jobs
                    .transition(&job, JobStatus::Done, job.last_error.clone())
                    .await;
            }
            Err(error) if job.attempt < config.max_attempts() => {
                let delay = backoff(config.backoff_base(), job.attempt);
                tracing::warn!(%error, retry_in = ?delay, "falló el envío; se reintentará");
                self.jobs
                    .transition(&job, JobStatus::Failed, Some(error.clone()))
                    .await;
                let next = EmailJob {
                    attempt: job.attempt + 1,
                    last_error: Some(error),
                    ..job
                };
                self.jobs.shared.queue.push(next, delay).await?;
            }
            Err(error) => {
                tracing::error!(%error, "falló el último intento: el trabajo queda dead");
                self.jobs
                    .transition(&job, JobStatus::Dead, Some(error))
                    .await;
            }
        }
        Ok(())
    }
    // ANCHOR_END: attempt
}

// ANCHOR: handler
/// The apalis handler: one span per job, with its id, then [`Runner::run`].
async fn email_handler(
    job: EmailJob,
    runner: Data<Arc<Runner>>,
    worker: WorkerContext,
) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", id = %job.id, kind = "email", attempt = job.attempt, worker = worker.name());
    runner.run(job).instrument(span).await
}
// ANCHOR_END: handler

/// Where the monitor runs: the server's tasks and supervisor, its shutdown, and the grace that
/// running jobs get to finish.
pub(super) struct Context<'a> {
    pub tasks: &'a TaskTracker,
    pub supervisor: &'a Supervisor,
    pub shutdown: CancellationToken,
    pub grace: Duration,
}

/// The monitor's name for the supervisor and `/ready`.
pub const MONITOR_TASK: &str = "trabajadores de la cola";

/// Registers the e-mail worker (unless `CHAT_JOB_CONCURRENCY` is 0) and the periodic sweep on
/// one monitor, and runs it as a task of the server: on shutdown the workers stop taking jobs,
/// running ones get the shutdown grace to finish, and (with Redis) jobs still in flight after
/// that are recovered by another node as a dead worker's.
///
/// The monitor runs under the server's supervisor: if it panics or ends before shutdown, a new
/// one is built with new worker names, so (with Redis) the jobs the old workers held are
/// recovered as a dead worker's, and the new workers take the queue where it is.
pub(super) fn spawn_monitor(
    jobs: &Jobs,
    context: Context<'_>,
    mailer: Mailer,
    from: Mailbox,
    redis: Option<(ConnectionManager, String)>,
) {
    let jobs = jobs.clone();
    let config = &jobs.shared.config;
    if config.concurrency == 0 {
        tracing::warn!("CHAT_JOB_CONCURRENCY=0: este nodo encola trabajos pero no los ejecuta");
    }
    let runner = Arc::new(Runner {
        jobs: jobs.clone(),
        mailer,
        from,
    });
    let sweeper = Arc::new(Sweeper::new(jobs.clone(), redis, config));
    let Context {
        tasks,
        supervisor,
        shutdown,
        grace,
    } = context;
    let stop = shutdown.clone();
    supervisor.spawn(tasks, MONITOR_TASK, shutdown, move || {
        let (jobs, runner, sweeper) = (jobs.clone(), runner.clone(), sweeper.clone());
        run_monitor(jobs, runner, sweeper, grace, stop.clone())
    });
}

/// Builds a monitor with fresh workers and runs it until `shutdown`.
async fn run_monitor(
    jobs: Jobs,
    runner: Arc<Runner>,
    sweeper: Arc<Sweeper>,
    grace: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let config = &jobs.shared.config;
    let concurrency = config.concurrency;
    let email_worker = format!("chat-email-{}", uuid::Uuid::new_v4());
    let mut monitor = Monitor::new();
    let mut kick = false;
    if concurrency > 0 {
        let name = email_worker.clone();
        monitor = match &jobs.shared.queue {
            EmailQueue::Memory { backend, .. } => {
                let backend: VecDequeBackend<EmailJob> = backend.clone();
                monitor.register(move |_restarts| {
                    WorkerBuilder::new(name.clone())
                        .backend(backend.clone())
                        .data(runner.clone())
                        .concurrency(concurrency)
                        .build(email_handler)
                })
            }
            EmailQueue::Redis(storage) => {
                kick = true;
                let storage: RedisStorage<EmailJob> = (**storage).clone();
                monitor.register(move |_restarts| {
                    WorkerBuilder::new(name.clone())
                        .backend(storage.clone().poll_with_interval(POLL_EVERY))
                        .data(runner.clone())
                        .concurrency(concurrency)
                        .build(email_handler)
                })
            }
        };
    }
    let sweep_worker = format!("chat-sweep-{}", uuid::Uuid::new_v4());
    let period = config.sweep_interval();
    let monitor = monitor
        .register(move |_restarts| {
            WorkerBuilder::new(sweep_worker.clone())
                .backend(schedule::ticks(period))
                .data(sweeper.clone())
                .concurrency(1)
                .build(schedule::sweep_handler)
        })
        .shutdown_timeout(grace)
        // A worker whose backend fails (Redis restarting, a dropped connection) ends with an
        // error; without this it would stay stopped until the process restarts. Each restart
        // first reconnects, which waits while Redis is away, so this cannot spin.
        .should_restart(|worker, error| {
            tracing::warn!(worker = %worker.name(), %error, restarts = worker.restarts(), "trabajador caído: se reinicia");
            true
        });

    // An idle apalis-redis worker can miss a retry that became due until its next heartbeat;
    // waking it twice a second makes retries run on time. Part of this run: a new monitor
    // gets a new kicker.
    let context = monitor.context();
    let kicker = async move {
        if !kick {
            return std::future::pending().await;
        }
        let mut ticks = tokio::time::interval(WAKE_EVERY);
        loop {
            ticks.tick().await;
            let _ = context.wake_worker(&email_worker);
        }
    };
    let stop = async move {
        shutdown.cancelled().await;
        Ok(())
    };
    let outcome = tokio::select! {
        outcome = monitor.run_with_signal(stop) => outcome,
        () = kicker => return,
    };
    match outcome {
        Ok(()) => tracing::info!("trabajadores detenidos"),
        Err(error) => tracing::error!(%error, "los trabajadores se detuvieron con un error"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_base_and_is_capped() {
        let base = Duration::from_secs(1);
        let waits: Vec<u64> = (1..=4).map(|n| backoff(base, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8]);
        assert_eq!(backoff(base, 40), MAX_BACKOFF);
    }
}
