//! The settings of background jobs (flattened into [`crate::Config`]: each is a flag and an
//! environment variable, documented in the README's table).

use std::path::PathBuf;
use std::time::Duration;

/// How e-mails are sent, how failures are retried, and how often old records are swept.
#[derive(Debug, Clone, clap::Args)]
pub struct JobsConfig {
    /// SMTP server for e-mails, `smtp://host:port` (plain text, no TLS: a relay on loopback or
    /// the local network). When unset, e-mails are written as `.eml` files into the outbox.
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<String>,

    /// Folder where e-mails are written as `.eml` files when `SMTP_URL` is unset.
    #[arg(long, env = "CHAT_OUTBOX", default_value = "./outbox")]
    pub outbox: PathBuf,

    /// The `From` of every e-mail.
    #[arg(
        long,
        env = "CHAT_MAIL_FROM",
        default_value = "Chat <no-responder@chat.local>"
    )]
    pub mail_from: String,

    /// At most one mention e-mail per (user, room) in this many seconds, counted from when the
    /// job is queued, across every node.
    #[arg(long, env = "CHAT_MENTION_EMAIL_WINDOW_SECS", default_value_t = 600)]
    pub mention_email_window_secs: u64,

    /// At most this many mention e-mails per recipient in any sliding hour, across all rooms
    /// and every node; a mention over the cap queues no job. 0: no cap.
    #[arg(long, env = "CHAT_MENTION_EMAILS_PER_HOUR", default_value_t = 10)]
    pub mention_emails_per_hour: u64,

    /// Attempts of a job before it is `dead` (1 = no retries).
    #[arg(
        long = "job-max-attempts",
        env = "CHAT_JOB_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub max_attempts: u32,

    /// Wait before the first retry, in milliseconds; it doubles for each retry after that.
    #[arg(
        long = "job-backoff-ms",
        env = "CHAT_JOB_BACKOFF_MS",
        default_value_t = 1000
    )]
    pub backoff_ms: u64,

    /// Longest one attempt may take, in seconds; a slower one counts as failed.
    #[arg(
        long = "job-timeout-secs",
        env = "CHAT_JOB_TIMEOUT_SECS",
        default_value_t = 30
    )]
    pub attempt_timeout_secs: u64,

    /// Jobs this node runs at once. 0: this node only queues jobs and other nodes run them
    /// (with Redis; in memory nothing would ever run them).
    #[arg(
        long = "job-concurrency",
        env = "CHAT_JOB_CONCURRENCY",
        default_value_t = 4
    )]
    pub concurrency: usize,

    /// Seconds between two runs of the periodic sweep (once per period in the whole cluster).
    #[arg(
        long = "job-sweep-interval-secs",
        env = "CHAT_JOB_SWEEP_INTERVAL_SECS",
        default_value_t = 3600
    )]
    pub sweep_interval_secs: u64,

    /// The sweep deletes the records of jobs that ended (`done`, `dead`) this many seconds ago.
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
