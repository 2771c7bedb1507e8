//! The live dashboard: activity events, the per-second stats snapshot, and the SSE stream.
//!
//! - [`crate::events`]: what the chat reports (joins, leaves, messages, job transitions); a leaf,
//!   so that the modules that report (the connections, the jobs) need not import the dashboard.
//! - [`journal`]: numbers and keeps the events (in process, or in Redis via [`redis_journal`] so
//!   that a cluster shares one sequence), and announces them on the node's live channel.
//! - [`stats`]: the snapshot, computed once per second per node for every dashboard, and only
//!   while a dashboard watches.
//! - [`sse`]: `GET /dashboard/events`; `GET /dashboard` is the page that reads it.
//!
//! The chat never waits for the dashboard: the hot paths only `try_send` into a bounded queue
//! ([`ActivityFeed`](crate::events::ActivityFeed)), and one recorder task per node stores what
//! it drains.
//!
//! The recorder, the stats task and (with Redis) the activity listener run under the server's
//! [`Supervisor`]: one that panics is started again on the same queue and feeds.

pub mod journal;
pub mod redis_journal;
pub mod sse;
pub mod stats;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::journal::{ActivityLog, LiveFeed, MemoryActivityLog};
use self::stats::{Latest, RateWindow, Sources};
use crate::auth::AdminUser;
use crate::auth::tokens::Tokens;
use crate::backend::{Backends, StoreError};
use crate::cache::{Cache, Cached};
use crate::config::Config;
use crate::error::ApiError;
use crate::events::Activity;
use crate::jobs::Jobs;
use crate::supervisor::Supervisor;

/// Events the live channel holds for its slowest reader before that reader lags (and then
/// catches up from the log): the memory a stalled dashboard can pin, shared by all of them.
pub const LIVE_CAPACITY: usize = 1024;
/// Most events the recorder stores in one round trip.
const RECORD_BATCH: usize = 100;
/// The recorder's name for the supervisor and `/ready`.
pub const RECORD_TASK: &str = "registro de actividad del panel";
/// The stats task's name for the supervisor and `/ready`.
pub const STATS_TASK: &str = "estadísticas del panel";

/// The dashboard's share of the server state. Cheap to clone.
#[derive(Clone)]
pub struct Dashboard {
    log: Arc<dyn ActivityLog>,
    live: LiveFeed,
    latest: Arc<Latest>,
    rates: Arc<Mutex<RateWindow>>,
    connections: Arc<AtomicU64>,
    keep_alive: Duration,
    /// Woken when a dashboard subscribes, so an idle stats task starts computing again.
    watched: Arc<Notify>,
    /// Snapshots the stats task has computed (see [`Dashboard::stats_computed`]).
    computed: Arc<AtomicU64>,
}

impl Dashboard {
    /// The in-process log, or the cluster's in Redis when `config.redis_url` is set (then the
    /// node's activity listener is spawned on `tasks` under `supervisor` and stops with
    /// `shutdown`).
    pub async fn build(
        config: &Config,
        tasks: &TaskTracker,
        shutdown: CancellationToken,
        supervisor: &Supervisor,
    ) -> Result<Self, StoreError> {
        let (live, _) = broadcast::channel(LIVE_CAPACITY);
        let log: Arc<dyn ActivityLog> = match &config.redis_url {
            None => Arc::new(MemoryActivityLog::new(live.clone())),
            Some(url) => {
                let prefix = &config.redis_prefix;
                redis_journal::connect(url, prefix, live.clone(), tasks, shutdown, supervisor)
                    .await?
            }
        };
        Ok(Self {
            log,
            live,
            latest: Arc::new(watch::Sender::new(None)),
            rates: Arc::default(),
            connections: Arc::default(),
            keep_alive: config.sse_keepalive(),
            watched: Arc::default(),
            computed: Arc::default(),
        })
    }

    /// How many stats snapshots the stats task has computed since start-up: it computes none
    /// while no dashboard is open. For tests (`GET /admin/stats` computes its own).
    #[doc(hidden)]
    pub fn stats_computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }

    /// How many SSE streams are open on this node (each one watches the stats snapshot).
    pub fn stats_watchers(&self) -> usize {
        self.latest.receiver_count()
    }

    /// Counts one open WebSocket until the guard is dropped (the `connections` number).
    pub fn connection_opened(&self) -> ConnectionGuard {
        self.connections.fetch_add(1, Ordering::Relaxed);
        ConnectionGuard {
            connections: self.connections.clone(),
        }
    }

    /// This node's open WebSockets.
    pub fn local_connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

/// Keeps a WebSocket counted in the dashboard's `connections` while it lives.
#[derive(Debug)]
pub struct ConnectionGuard {
    connections: Arc<AtomicU64>,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Starts the node's dashboard tasks on `tasks`, under `supervisor`: the recorder that stores
/// what the chat reports in `events`, and the stats task, which reads `sources`. Both stop when
/// `shutdown` is cancelled. A recorder that panics is started again on the same queue (the
/// batch it held is lost); a stats task, on a new subscription to the live feed (the messages
/// of the restart's wait are not counted in `messages_per_min`).
pub fn spawn_workers(
    sources: Sources,
    events: mpsc::Receiver<Activity>,
    tasks: &TaskTracker,
    supervisor: &Supervisor,
    shutdown: CancellationToken,
) {
    let dashboard = &sources.dashboard;
    // Subscribe now, before anything is recorded, so the stats count every message.
    let mut live = Some(dashboard.live.subscribe());
    // Shared, so that a restarted recorder drains the same queue the chat fills.
    let events = Arc::new(tokio::sync::Mutex::new(events));
    let (log, stop) = (dashboard.log.clone(), shutdown.clone());
    supervisor.spawn(tasks, RECORD_TASK, shutdown.clone(), move || {
        record(log.clone(), events.clone(), stop.clone())
    });
    let stop = shutdown.clone();
    supervisor.spawn(tasks, STATS_TASK, shutdown, move || {
        let sources = sources.clone();
        match live.take() {
            Some(live) => stats::run(sources, live, stats::Start::First, stop.clone()),
            None => {
                let live = sources.dashboard.live.subscribe();
                stats::run(sources, live, stats::Start::Again, stop.clone())
            }
        }
    });
}

// ANCHOR: record
/// Drains the activity queue into the log, in batches, until shutdown.
async fn record(
    log: Arc<dyn ActivityLog>,
    events: Arc<tokio::sync::Mutex<mpsc::Receiver<Activity>>>,
    shutdown: CancellationToken,
) {
    // Only one recorder runs at a time; the lock is released if it panics.
    let mut events = events.lock().await;
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = events.recv_many(&mut batch, RECORD_BATCH) => received,
        };
        if received == 0 {
            // Every sender is gone: nothing more will come (not a failure to restart for).
            shutdown.cancelled().await;
            return;
        }
        if let Err(error) = log.append(&batch).await {
            tracing::warn!(%error, lost = batch.len(), "no se pudo guardar la actividad");
        }
        batch.clear();
    }
}
// ANCHOR_END: record

const PAGE_HTML: &str = include_str!("page.html");
const PAGE_JS: &str = include_str!("dashboard.js");
const PAGE_CSS: &str = include_str!("dashboard.css");

/// `/dashboard` (the page and its assets), `/dashboard/events` and `/admin/stats`, on any state
/// that holds the handles they use.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Dashboard: FromRef<S>,
    Backends: FromRef<S>,
    Jobs: FromRef<S>,
    Cache: FromRef<S>,
    CancellationToken: FromRef<S>,
    Arc<Tokens>: FromRef<S>,
{
    Router::new()
        .route(
            "/dashboard",
            get(|| async { asset("text/html; charset=utf-8", PAGE_HTML) }),
        )
        .route(
            "/dashboard/dashboard.js",
            get(|| async { asset("text/javascript; charset=utf-8", PAGE_JS) }),
        )
        .route(
            "/dashboard/dashboard.css",
            get(|| async { asset("text/css; charset=utf-8", PAGE_CSS) }),
        )
        .route("/dashboard/events", get(sse::events))
        .route("/admin/stats", get(admin_stats))
}

/// An embedded asset; `no-cache` makes browsers revalidate, so a new build is seen at once.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, content_type), (CACHE_CONTROL, "no-cache")],
        body,
    )
}

/// `GET /admin/stats` (admin): the current snapshot, the `data` of a `stats` event, served
/// through the cache (2 s by default, `X-Cache: HIT|MISS`). The role is checked ([`AdminUser`]) before the
/// cache is asked, so a cached body never reaches a non-admin.
#[utoipa::path(
    get, path = "/admin/stats", tag = "admin",
    summary = "Estadísticas del sistema",
    description = "Instantánea del sistema (los mismos datos que el evento `stats` del panel). Se sirve desde una caché de unos segundos (5 como mucho).",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "La instantánea", body = crate::api_schema::AdminStats,
            headers(("X-Cache" = String, description = "`HIT` si vino de la caché, `MISS` si se calculó"))),
        (status = 401, description = "Token ausente, inválido o caducado (`unauthorized`)", body = crate::api_schema::ErrorBody),
        (status = 403, description = "Tu cuenta no es admin (`forbidden`)", body = crate::api_schema::ErrorBody),
    ),
)]
pub async fn admin_stats(
    State(dashboard): State<Dashboard>,
    State(backends): State<Backends>,
    State(jobs): State<Jobs>,
    State(cache): State<Cache>,
    _admin: AdminUser,
) -> Result<Cached, ApiError> {
    let sources = Sources {
        dashboard,
        backends,
        jobs,
    };
    cache.admin_stats(|| stats_json(&sources)).await
}

/// Builds the body of `GET /admin/stats`: a fresh snapshot as JSON. A plain function so that
/// a cache can wrap it.
pub async fn stats_json(sources: &Sources) -> Result<serde_json::Value, ApiError> {
    let stats = stats::snapshot(sources).await?;
    serde_json::to_value(stats)
        .map_err(|error| ApiError::Unavailable(format!("estadísticas no serializables: {error}")))
}
