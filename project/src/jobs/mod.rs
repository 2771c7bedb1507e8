//! Background jobs: mention e-mails and scheduled work, with apalis.
//!
//! The pieces, one file each:
//! - `queue.rs`: where jobs wait, apalis's in-process backend or `apalis-redis` (with
//!   `REDIS_URL`, shared by every node and surviving restarts);
//! - `store.rs`: our record of each job's life (`pending`, `running`, `done`, `failed`,
//!   `dead`), which `GET /admin/jobs`, the dashboard and the metrics read;
//! - `email.rs`: the Spanish templates and the mailer (SMTP, or `.eml` files in an outbox);
//! - `worker.rs`: the apalis workers: run a job, retry it with exponential backoff, give up;
//! - `schedule.rs`: the periodic sweep of old records, once per period in the whole cluster;
//! - `window.rs`: at most one mention e-mail per (user, room) per window, and a few per user
//!   per hour;
//! - `routes.rs`: `GET /admin/jobs`.
//!
//! The mention logic (`mentions.rs`) decides who gets a `notification` frame and who gets an
//! e-mail job: it drains the [`SentMessages`] that [`Jobs::message_sent`] fills, and queues
//! e-mails with [`Jobs::queue_mention_email`] (mentions use jobs, never the other way round).
//! The chat never waits for any of this: a sent message is handed over with a `try_send`, and
//! e-mails are sent by workers, each attempt with a time limit.

pub mod email;
mod queue;
pub(crate) mod routes;
mod schedule;
mod store;
mod window;
mod worker;

use std::sync::Arc;
use std::time::Duration;

use apalis_core::backend::dequeue::VecDequeBackend;
use apalis_redis::RedisStorage;
use lettre::message::Mailbox;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use crate::config::JobsConfig;
pub use routes::router;
pub use worker::MONITOR_TASK;

use self::email::{EmailJob, Mailer, Mention};
use self::queue::EmailQueue;
use self::store::JobStore;
use self::window::{Claim, EmailWindow};
use crate::backend::{StoreError, StoreResult};
use crate::domain::{RoomId, now_rfc3339};
use crate::events::{Activity, ActivityFeed};
use crate::metrics::{JOBS_QUEUE_DEPTH, JOBS_TOTAL};
use crate::supervisor::Supervisor;

/// Where a job is in its life. `failed` means the last attempt failed and another is scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Done,
    Failed,
    Dead,
}

impl JobStatus {
    /// Every status, in the contract's order.
    pub const ALL: [JobStatus; 5] = [
        Self::Pending,
        Self::Running,
        Self::Done,
        Self::Failed,
        Self::Dead,
    ];

    /// The contract's word for it (`?status=` and the JSON).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    /// `done` and `dead` are final: nothing happens to such a job any more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Dead)
    }

    /// Parses the contract's word; `None` for anything else.
    pub fn parse(word: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == word)
    }
}

/// How many jobs are in each status (the dashboard's `jobs` object).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCounts {
    pub pending: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub dead: u64,
}

/// One job as `GET /admin/jobs` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    /// What the job does: `email`.
    pub kind: String,
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A stored message, as the mention logic needs it.
#[derive(Debug, Clone)]
pub struct SentMessage {
    pub room: RoomId,
    pub message_id: u64,
    pub author: String,
    pub text: String,
}

/// The receiving end of [`Jobs::message_sent`], which the mention logic drains
/// (`mentions::run`).
pub type SentMessages = mpsc::Receiver<SentMessage>;

/// Messages waiting for the mention logic; beyond this, new ones are dropped (and logged)
/// rather than making the chat wait.
const MENTION_QUEUE: usize = 1024;
/// Jobs that may wait (`pending` or `failed`) before new e-mails are refused: a mail server
/// that is down for hours must not grow the queue without bound.
const MAX_WAITING_JOBS: u64 = 10_000;

/// The handle the rest of the server uses: queue work, read job records. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    shared: Arc<Shared>,
}

struct Shared {
    config: JobsConfig,
    store: JobStore,
    queue: EmailQueue,
    window: EmailWindow,
    mentions: mpsc::Sender<SentMessage>,
    activity: ActivityFeed,
}

/// The e-mail workers and the periodic sweep, started by [`Workers::start`] once the server
/// is ready to run tasks.
pub struct Workers {
    mailer: Mailer,
    from: Mailbox,
    redis: Option<(ConnectionManager, String)>,
}

impl Jobs {
    /// Connects the queue and the records (Redis when `config.redis_url` is set) and prepares
    /// the mailer; nothing runs until [`Workers::start`]. Also returns the messages handed to
    /// [`Jobs::message_sent`], for the mention logic.
    pub async fn build(
        config: &crate::Config,
        activity: ActivityFeed,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
    ) -> anyhow::Result<(Self, Workers, SentMessages)> {
        let mailer = Mailer::from_config(&config.jobs)?;
        let from: Mailbox = config.jobs.mail_from.parse().map_err(|error| {
            anyhow::anyhow!("CHAT_MAIL_FROM no es una dirección válida: {error}")
        })?;
        let (store, queue, window, redis) = match &config.redis_url {
            None => (
                JobStore::memory(),
                EmailQueue::Memory {
                    backend: VecDequeBackend::new(),
                    tasks: tasks.clone(),
                    shutdown,
                },
                EmailWindow::memory(),
                None,
            ),
            Some(url) => {
                let (_, conn) = crate::backend::redis::connect(url).await?;
                let prefix = &config.redis_prefix;
                let storage = RedisStorage::<EmailJob>::new(conn.clone())
                    .with_config(worker::redis_queue_config(prefix, &config.jobs));
                (
                    JobStore::redis(conn.clone(), prefix),
                    EmailQueue::Redis(Box::new(storage)),
                    EmailWindow::redis(conn.clone(), prefix),
                    Some((conn, prefix.clone())),
                )
            }
        };
        let (mentions, mentions_rx) = mpsc::channel(MENTION_QUEUE);
        let jobs = Self {
            shared: Arc::new(Shared {
                config: config.jobs.clone(),
                store,
                queue,
                window,
                mentions,
                activity,
            }),
        };
        let workers = Workers {
            mailer,
            from,
            redis,
        };
        Ok((jobs, workers, mentions_rx))
    }

    /// How many jobs are in each status (the dashboard's `jobs`).
    pub async fn counts(&self) -> Result<JobCounts, StoreError> {
        self.shared.store.counts().await
    }

    /// The newest job records, all or those in one status.
    pub async fn list(&self, status: Option<JobStatus>) -> StoreResult<Vec<JobRecord>> {
        self.shared.store.list(status).await
    }

    /// `/ready`'s `queue` check: the job records answer.
    pub async fn check(&self) -> StoreResult<()> {
        self.counts().await.map(drop)
    }

    // ANCHOR: message_sent
    /// Hands a freshly stored message to the mention logic. Never waits: called on the
    /// connection's path, so when the mention queue is full the message's mentions are dropped.
    pub fn message_sent(&self, room: RoomId, message_id: u64, author: &str, text: String) {
        let message = SentMessage {
            room,
            message_id,
            author: author.to_owned(),
            text,
        };
        if let Err(mpsc::error::TrySendError::Full(message)) =
            self.shared.mentions.try_send(message)
        {
            tracing::warn!(room = %message.room, message_id = message.message_id,
                "cola de menciones llena: se ignoran las menciones de un mensaje");
        }
    }
    // ANCHOR_END: message_sent

    /// Queues the e-mail for a mention, unless that user got one about that room within the
    /// window, or their e-mails of the last hour reached the cap (then `None`). Returns the job
    /// id.
    pub async fn queue_mention_email(&self, mention: Mention) -> StoreResult<Option<String>> {
        let shared = &self.shared;
        let waiting = self.counts().await?;
        if waiting.pending + waiting.failed >= MAX_WAITING_JOBS {
            tracing::warn!(user = %mention.user, "demasiados trabajos en espera: no se envía el e-mail");
            return Ok(None);
        }
        let window = shared.config.mention_email_window();
        let per_hour = shared.config.mention_emails_per_hour;
        match (shared.window)
            .claim(&mention.user, &mention.room, window, per_hour)
            .await?
        {
            Claim::Granted => {}
            Claim::Recent => {
                tracing::debug!(user = %mention.user, room = %mention.room, "e-mail reciente: no se repite");
                return Ok(None);
            }
            Claim::Capped => {
                tracing::info!(user = %mention.user, room = %mention.room, "tope de e-mails de mención por hora: no se envía");
                return Ok(None);
            }
        }
        let job = EmailJob {
            id: uuid::Uuid::new_v4().to_string(),
            attempt: 1,
            created_at: now_rfc3339(),
            last_error: None,
            mention,
        };
        self.transition(&job, JobStatus::Pending, None).await;
        if let Err(error) = shared.queue.push(job.clone(), Duration::ZERO).await {
            // Not queued, so it would stay `pending` for ever: say what happened.
            let reason = Some(error.to_string());
            self.transition(&job, JobStatus::Dead, reason).await;
            return Err(error);
        }
        tracing::info!(job = %job.id, user = %job.mention.user, room = %job.mention.room, "e-mail de mención encolado");
        Ok(Some(job.id))
    }

    /// Records that `job` is now in `status` and reports it (metrics, dashboard, queue depth).
    /// `false` when the job had already ended, so the caller must leave it alone. A failure
    /// to record is logged and does not stop the job: records are for watching, the job's
    /// payload is what runs.
    async fn transition(
        &self,
        job: &EmailJob,
        status: JobStatus,
        last_error: Option<String>,
    ) -> bool {
        let now = chrono::Utc::now();
        let record = JobRecord {
            id: job.id.clone(),
            kind: "email".into(),
            status,
            attempts: if status == JobStatus::Pending {
                0
            } else {
                job.attempt
            },
            last_error,
            created_at: job.created_at.clone(),
            updated_at: now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        };
        let store = &self.shared.store;
        let recorded = match store.record(&record, now.timestamp_millis()).await {
            Ok(recorded) => recorded,
            Err(error) => {
                tracing::warn!(%error, job = %job.id, status = status.as_str(), "no se pudo registrar el estado de un trabajo");
                true
            }
        };
        if !recorded {
            return false;
        }
        if matches!(
            status,
            JobStatus::Done | JobStatus::Failed | JobStatus::Dead
        ) {
            metrics::counter!(JOBS_TOTAL, "status" => status.as_str()).increment(1);
        }
        self.shared
            .activity
            .record(Activity::job(&job.id, status.as_str()));
        if let Ok(counts) = store.counts().await {
            metrics::gauge!(JOBS_QUEUE_DEPTH).set((counts.pending + counts.failed) as f64);
        }
        true
    }
}

impl Workers {
    /// Starts the e-mail workers and the periodic sweep for `jobs`, as a task of `tasks` under
    /// `supervisor`. Running jobs get `grace` to finish once `shutdown` is cancelled.
    pub fn start(
        self,
        jobs: &Jobs,
        tasks: &TaskTracker,
        supervisor: &Supervisor,
        shutdown: CancellationToken,
        grace: Duration,
    ) {
        tracing::info!(destino = %self.mailer.describe(), "trabajos en segundo plano en marcha");
        let context = worker::Context {
            tasks,
            supervisor,
            shutdown,
            grace,
        };
        worker::spawn_monitor(jobs, context, self.mailer, self.from, self.redis);
    }
}
