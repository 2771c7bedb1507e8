//! The settings of background jobs (flattened into [`crate::Config`]: each is a flag and an
//! environment variable, documented in the README's table). The fields' doc comments are
//! Spanish: clap prints them as `chat --help`, which learners read.
//!
//! Part of the configuration, not of `jobs/`: the jobs read these settings, and the
//! configuration does not depend on the jobs. It imports nothing of the crate.

use std::path::PathBuf;
use std::time::Duration;

/// How e-mails are sent, how failures are retried, and how often old records are swept.
#[derive(Debug, Clone, clap::Args)]
pub struct JobsConfig {
    /// Servidor SMTP para los e-mails, smtp://host:puerto (sin TLS: un relé local o de la red
    /// interna); sin ella, los e-mails se escriben como ficheros .eml en CHAT_OUTBOX.
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<String>,

    /// Carpeta donde se escriben los e-mails como ficheros .eml cuando no hay SMTP_URL.
    #[arg(long, env = "CHAT_OUTBOX", default_value = "./outbox")]
    pub outbox: PathBuf,

    /// Remitente (From) de cada e-mail.
    #[arg(
        long,
        env = "CHAT_MAIL_FROM",
        default_value = "Chat <no-responder@chat.local>"
    )]
    pub mail_from: String,

    /// Como mucho un e-mail de mención por usuario y sala en estos segundos, contados desde que
    /// se encola, en todo el clúster (0: sin ventana).
    #[arg(long, env = "CHAT_MENTION_EMAIL_WINDOW_SECS", default_value_t = 600)]
    pub mention_email_window_secs: u64,

    /// Como mucho estos e-mails de mención por destinatario en cualquier hora deslizante,
    /// sumando salas y nodos; una mención por encima no encola nada. 0: sin tope.
    #[arg(long, env = "CHAT_MENTION_EMAILS_PER_HOUR", default_value_t = 10)]
    pub mention_emails_per_hour: u64,

    /// Intentos de un trabajo antes de quedar dead (1 o más; 1 = sin reintentos).
    #[arg(
        long = "job-max-attempts",
        env = "CHAT_JOB_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub max_attempts: u32,

    /// Espera antes del primer reintento, en ms (1 o más); se duplica en cada uno.
    #[arg(
        long = "job-backoff-ms",
        env = "CHAT_JOB_BACKOFF_MS",
        default_value_t = 1000
    )]
    pub backoff_ms: u64,

    /// Tiempo máximo de un intento, en segundos; si se supera, cuenta como fallido.
    #[arg(
        long = "job-timeout-secs",
        env = "CHAT_JOB_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub attempt_timeout_secs: u64,

    /// Trabajos que este nodo ejecuta a la vez; 0: solo encola y otros nodos los ejecutan (solo
    /// con REDIS_URL).
    #[arg(
        long = "job-concurrency",
        env = "CHAT_JOB_CONCURRENCY",
        default_value_t = 4
    )]
    pub concurrency: usize,

    /// Segundos entre dos barridos periódicos (uno por periodo en todo el clúster).
    #[arg(
        long = "job-sweep-interval-secs",
        env = "CHAT_JOB_SWEEP_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub sweep_interval_secs: u64,

    /// El barrido borra los registros de trabajos terminados (done, dead) hace más de estos
    /// segundos.
    #[arg(
        long = "job-retention-secs",
        env = "CHAT_JOB_RETENTION_SECS",
        default_value_t = 7 * 24 * 3600
    )]
    pub retention_secs: u64,
}

impl JobsConfig {
    /// The e-mail window as a `Duration`.
    pub fn mention_email_window(&self) -> Duration {
        Duration::from_secs(self.mention_email_window_secs)
    }

    /// The wait before the first retry.
    pub fn backoff_base(&self) -> Duration {
        Duration::from_millis(self.backoff_ms)
    }

    /// The time limit of one attempt (at least a second).
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_secs(self.attempt_timeout_secs.max(1))
    }

    /// The sweep's period (at least a second).
    pub fn sweep_interval(&self) -> Duration {
        Duration::from_secs(self.sweep_interval_secs.max(1))
    }

    /// How long the records of finished jobs are kept.
    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_secs)
    }

    /// At least one attempt, whatever the configuration says.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts.max(1)
    }
}
