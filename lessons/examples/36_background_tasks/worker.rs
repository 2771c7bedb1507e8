//! Pasos 2, 3 y 6 · El worker de apalis: toma un e-mail de la cola, lo envía y, si falla, lo
//! reintenta con espera exponencial hasta rendirse. Cada trabajo corre dentro de su `span` de
//! `tracing`, así que cada línea del log dice de qué trabajo y de qué intento es.
//!
//! # Por qué la política de reintentos es nuestra
//! apalis-redis 1.0 trae la suya: si el handler devuelve `Err`, reprograma la tarea `attempt`
//! segundos después, hasta 25 intentos fijos, ignorando `max_attempts`. Esa no es la política
//! que queremos enseñar (ni la del proyecto). Así que el handler nunca devuelve `Err` por un
//! e-mail fallido: anota el fallo y vuelve a encolar el trabajo con `attempt + 1`, para dentro de
//! `base × 2^(intento−1)`; tras el último intento, lo marca `dead`. Los dos backends se portan
//! igual, y el número de intento viaja en el propio trabajo.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::*;
use apalis_core::backend::dequeue::VecDequeBackend;
use apalis_redis::RedisStorage;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::mailer::{EmailJob, Mailer};
use super::queue::EmailQueue;
use super::schedule::{self, Schedule};
use super::status::{Counters, JobStatus, JobStore};

/// Lo más que puede durar un intento de envío.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// E-mails que un worker envía a la vez.
const CONCURRENCY: usize = 4;
/// Cada cuánto un worker de Redis mira si hay trabajos (y reintentos que ya tocan).
const REDIS_POLL: Duration = Duration::from_millis(200);

// ANCHOR: retry
/// La política de reintentos, visible y configurable (los tests la acortan).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Intentos en total, contando el primero.
    pub max_attempts: u32,
    /// La espera tras el primer fallo; se dobla en cada fallo siguiente.
    pub base: Duration,
    /// La espera más larga, por muchos fallos que haya.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    /// 4 intentos: esperas de 1 s, 2 s y 4 s entre ellos.
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// La espera antes del intento siguiente a `failed_attempt`, o `None` si no quedan intentos.
    pub fn delay_after(&self, failed_attempt: u32) -> Option<Duration> {
        if failed_attempt >= self.max_attempts {
            return None;
        }
        let factor = 2u32.saturating_pow(failed_attempt.saturating_sub(1));
        Some(self.base.saturating_mul(factor).min(self.max_delay))
    }
}
// ANCHOR_END: retry

/// Lo que necesita el worker: dónde anotar, a qué cola devolver los reintentos y el mailer.
pub struct Runner {
    pub store: Arc<JobStore>,
    pub queue: EmailQueue,
    pub mailer: Mailer,
    pub retry: RetryPolicy,
}

// ANCHOR: worker
impl Runner {
    /// Un intento de un trabajo: `running`, y después `done`, `failed` (+ reintento) o `dead`.
    async fn run(&self, job: EmailJob) -> Result<(), BoxDynError> {
        let counters = &self.store.counters;
        Counters::add(&counters.attempts);
        self.store.adopt(&job.id, &job.to, &job.subject);
        self.store
            .transition(&job.id, JobStatus::Running, job.attempt, None, None);
        tracing::info!("intento de envío");
        // Un intento nunca espera para siempre: si el "servidor de correo" se cuelga, es un fallo.
        let outcome = match tokio::time::timeout(ATTEMPT_TIMEOUT, self.mailer.send(&job)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(format!("el intento superó {} s", ATTEMPT_TIMEOUT.as_secs())),
        };
        let error = match outcome {
            Ok(file) => {
                let file = file.display().to_string();
                tracing::info!(%file, "e-mail escrito");
                Counters::add(&counters.sent);
                self.store
                    .transition(&job.id, JobStatus::Done, job.attempt, None, Some(file));
                return Ok(());
            }
            Err(error) => error,
        };
        match self.retry.delay_after(job.attempt) {
            Some(delay) => {
                tracing::warn!(%error, retry_in = ?delay, "falló el envío: se reintentará");
                Counters::add(&counters.retries);
                self.store
                    .transition(&job.id, JobStatus::Failed, job.attempt, Some(error), None);
                let next = EmailJob {
                    attempt: job.attempt + 1,
                    ..job
                };
                // Solo si no podemos reencolar (Redis caído) devolvemos `Err`: apalis lo guarda.
                self.queue.push(next, delay).await?;
            }
            None => {
                tracing::error!(%error, "falló el último intento: el trabajo queda dead");
                Counters::add(&counters.dead);
                self.store
                    .transition(&job.id, JobStatus::Dead, job.attempt, Some(error), None);
            }
        }
        Ok(())
    }
}

/// El handler de apalis: abre el `span` del trabajo y llama a [`Runner::run`].
async fn send_email(job: EmailJob, runner: Data<Arc<Runner>>) -> Result<(), BoxDynError> {
    let span = tracing::info_span!("job", id = %job.id, attempt = job.attempt, to = %job.to);
    runner.run(job).instrument(span).await
}
// ANCHOR_END: worker

// ANCHOR: monitor
/// Registra el worker de e-mails y la tarea periódica en un `Monitor` y lo arranca en segundo
/// plano; se para cuando se cancela `stop`.
pub fn spawn_monitor(runner: Arc<Runner>, schedule: Arc<Schedule>, stop: CancellationToken) {
    let worker_name = format!("lesson36-email-{}", uuid::Uuid::new_v4());
    let mut monitor = Monitor::new();
    let mut wake_redis_worker = false;
    let name = worker_name.clone();
    monitor = match &runner.queue {
        EmailQueue::Memory { backend, .. } => {
            let backend: VecDequeBackend<EmailJob> = backend.clone();
            let runner = runner.clone();
            monitor.register(move |_restarts| {
                WorkerBuilder::new(name.clone())
                    .backend(backend.clone())
                    .data(runner.clone())
                    .concurrency(CONCURRENCY)
                    .build(send_email)
            })
        }
        EmailQueue::Redis { storage, .. } => {
            wake_redis_worker = true;
            let storage: RedisStorage<EmailJob> = (**storage).clone();
            let runner = runner.clone();
            monitor.register(move |_restarts| {
                WorkerBuilder::new(name.clone())
                    .backend(storage.clone().poll_with_interval(REDIS_POLL))
                    .data(runner.clone())
                    .concurrency(CONCURRENCY)
                    .build(send_email)
            })
        }
    };
    let every = schedule.every;
    let monitor = monitor
        .register(move |_restarts| {
            WorkerBuilder::new("lesson36-schedule")
                .backend(schedule::ticks(every))
                .data(schedule.clone())
                .concurrency(1)
                .build(schedule::report)
        })
        .shutdown_timeout(Duration::from_secs(5))
        // Un worker cuyo backend falla (Redis reiniciándose) se reinicia en vez de quedarse parado.
        .should_restart(|worker, error| {
            tracing::warn!(worker = %worker.name(), %error, "worker caído: se reinicia");
            true
        });
    if wake_redis_worker {
        // Un worker de Redis inactivo puede no ver un reintento programado hasta su siguiente
        // latido: lo despertamos dos veces por segundo para que los reintentos salgan a su hora.
        let context = monitor.context();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(Duration::from_millis(500));
            while stop.run_until_cancelled(ticks.tick()).await.is_some() {
                let _ = context.wake_worker(&worker_name);
            }
        });
    }
    tokio::spawn(async move {
        let signal = async move {
            stop.cancelled().await;
            Ok(())
        };
        match monitor.run_with_signal(signal).await {
            Ok(()) => tracing::info!("workers detenidos"),
            Err(error) => tracing::error!(%error, "los workers se detuvieron con un error"),
        }
    });
}
// ANCHOR_END: monitor
