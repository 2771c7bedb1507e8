//! Assembly: the shared state, the router, and `serve`, which runs until a shutdown future
//! resolves (the binary passes Ctrl-C/SIGTERM; tests pass whatever they like).

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

use crate::auth::passwords::HashPool;
use crate::auth::tokens::Tokens;
use crate::backend::{self, Backends};
use crate::cache::Cache;
use crate::config::Config;
use crate::connections::UserConnections;
use crate::dashboard::Dashboard;
use crate::domain::{Email, Password, Role, Room, Username};
use crate::error::ApiError;
use crate::events::{Activity, ActivityFeed};
use crate::jobs::{Jobs, SentMessages, Workers};
use crate::mentions::Mentions;
use crate::server::OpenFiles;
use crate::supervisor::Supervisor;
use crate::ws::hub::Hub;
use crate::ws::origin::OriginPolicy;
use crate::{auth, dashboard, health, jobs, mentions, metrics, openapi, rooms, web, ws};

mod recovery;

/// Largest request body accepted: 64 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

// ANCHOR: app_state
/// Every handle the server has. Cheap to clone: each field is an `Arc` or a handle.
///
/// Handlers never take the whole of it: `FromRef` lets each one take only the fields it uses
/// (`State<Backends>`, `State<Cache>`, `State<Arc<Config>>`…), which is why every field has a
/// type of its own. Only this module knows them all.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub config: Arc<Config>,
    pub backends: Backends,
    pub hub: Arc<Hub>,
    pub tokens: Arc<Tokens>,
    pub origins: Arc<OriginPolicy>,
    /// Cancelled when the server starts shutting down; every long-lived task watches it.
    pub shutdown: CancellationToken,
    /// Every WebSocket connection and background task, so that shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Where joins, leaves, messages and job transitions are reported for the dashboard.
    pub activity: ActivityFeed,
    /// The live dashboard: activity journal, stats snapshot and SSE subscribers.
    pub dashboard: Dashboard,
    /// The cache of `GET /rooms` and `GET /admin/stats` (Redis when configured, else in process).
    pub cache: Cache,
    /// Background jobs: mention e-mails and their records (see [`crate::jobs`]).
    pub jobs: Jobs,
    /// The Argon2 hashing pool: K threads with one memory block each (see
    /// [`crate::auth::passwords`]).
    pub passwords: Arc<HashPool>,
    /// WebSockets per user, across every node (`CHAT_MAX_CONNECTIONS_PER_USER`).
    pub connections: UserConnections,
    /// Open client sockets, and whether the process is near its open-file limit.
    pub open_files: OpenFiles,
    /// Restarts the background tasks that panic, and tells `/ready` about those that keep
    /// failing (see [`crate::supervisor`]).
    pub supervisor: Supervisor,
}
// ANCHOR_END: app_state

/// A server ready to serve: backends connected, admin and `general` in place.
pub struct App {
    state: AppState,
    admin_password: Option<String>,
    /// The activity events recorded by the chat, for the dashboard's recorder task.
    activity_events: Option<mpsc::Receiver<Activity>>,
    /// The job workers, started by `serve`.
    job_workers: Option<Workers>,
    /// The messages handed to the mention logic, which `serve` starts.
    sent_messages: Option<SentMessages>,
    /// With Redis: the bootstrap's sentinel and its name, watched by `serve` (see [`recovery`]).
    sentinel: Option<(recovery::Sentinel, String)>,
}

impl App {
    /// Connects the backends chosen by `config` and bootstraps the admin account and `general`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Before anything can record: the recorder is process-wide and shared by every app.
        metrics::install();
        let hub = Arc::new(Hub::new());
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let supervisor = Supervisor::new();
        let backends = match &config.redis_url {
            None => backend::memory::backends_keeping(hub.clone(), config.history_limit()),
            Some(url) => {
                backend::redis::backends_keeping(
                    url,
                    &config.redis_prefix,
                    config.history_limit(),
                    hub.clone(),
                    &tasks,
                    shutdown.clone(),
                    &supervisor,
                )
                .await?
            }
        };
        let cache = Cache::from_config(&config).await?;
        let secret = match &config.jwt_secret {
            Some(secret) => secret.clone().into_bytes(),
            None => {
                tracing::warn!(
                    "JWT_SECRET no está definido: se genera uno aleatorio (los tokens caducan al reiniciar)"
                );
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        let connections = match &config.redis_url {
            None => UserConnections::memory(config.max_connections_per_user),
            Some(url) => {
                UserConnections::redis(
                    url,
                    &config.redis_prefix,
                    config.max_connections_per_user,
                    config.connection_lease(),
                    &tasks,
                    shutdown.clone(),
                    &supervisor,
                )
                .await?
            }
        };
        let open_files = OpenFiles::measure(config.fd_reserve);
        let (activity, activity_events) = ActivityFeed::channel();
        let dashboard = Dashboard::build(&config, &tasks, shutdown.clone(), &supervisor).await?;
        let (jobs, job_workers, sent_messages) =
            Jobs::build(&config, activity.clone(), &tasks, shutdown.clone()).await?;
        let state = AppState {
            activity,
            dashboard,
            tokens: Arc::new(Tokens::new(&secret, config.token_ttl())),
            passwords: Arc::new(HashPool::new(config.hash_wait())),
            origins: Arc::new(OriginPolicy::from_config(config.allowed_origins.as_deref())),
            config: Arc::new(config),
            backends,
            cache,
            connections,
            open_files,
            hub,
            jobs,
            shutdown,
            tasks,
            supervisor,
        };
        let admin_password = bootstrap(&state.backends, &state.passwords, &state.config).await?;
        let sentinel = match &state.config.redis_url {
            None => None,
            Some(url) => {
                let sentinel = recovery::Sentinel::connect(url, &state.config.redis_prefix).await?;
                let name = sentinel.mark().await?;
                Some((sentinel, name))
            }
        };
        Ok(Self {
            state,
            admin_password,
            activity_events: Some(activity_events),
            job_workers: Some(job_workers),
            sent_messages: Some(sent_messages),
            sentinel,
        })
    }

    /// The admin password when it was generated at start-up (to print it once).
    pub fn generated_admin_password(&self) -> Option<&str> {
        self.admin_password.as_deref()
    }

    /// Every handle of the server (tests reach the supervisor, the dashboard, the jobs…).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    // ANCHOR: serve
    /// Serves on `listener` until `shutdown` resolves, then closes every WebSocket with 1001
    /// and waits (at most the configured grace) for connections and tasks to finish.
    ///
    /// The accept loop and each connection's limits (header-read timeout, head size, JSON
    /// answers to malformed requests, `accept` errors) are in [`crate::server`].
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let state = self.state;
        let (tasks, supervisor) = (&state.tasks, &state.supervisor);
        let grace = state.config.shutdown_grace();
        if let Some(events) = self.activity_events {
            let sources = dashboard::stats::Sources {
                dashboard: state.dashboard.clone(),
                backends: state.backends.clone(),
                jobs: state.jobs.clone(),
            };
            dashboard::spawn_workers(sources, events, tasks, supervisor, state.shutdown.clone());
        }
        if let Some(messages) = self.sent_messages {
            let handles = Mentions {
                backends: state.backends.clone(),
                jobs: state.jobs.clone(),
            };
            mentions::spawn(handles, messages, tasks, supervisor, state.shutdown.clone());
        }
        if let Some(workers) = self.job_workers {
            workers.start(
                &state.jobs,
                tasks,
                supervisor,
                state.shutdown.clone(),
                grace,
            );
        }
        if let Some((sentinel, name)) = self.sentinel {
            let every = state.config.bootstrap_check();
            let seen = Arc::new(std::sync::Mutex::new(name));
            let watched = recovery::Watched {
                backends: state.backends.clone(),
                passwords: state.passwords.clone(),
                config: state.config.clone(),
                cache: state.cache.clone(),
                hub: state.hub.clone(),
                shutdown: state.shutdown.clone(),
            };
            supervisor.spawn(tasks, recovery::TASK, state.shutdown.clone(), move || {
                let (watched, sentinel) = (watched.clone(), sentinel.clone());
                recovery::watch(watched, sentinel, seen.clone(), every)
            });
        }
        metrics::spawn_upkeep(tasks, supervisor, state.shutdown.clone());
        let token = state.shutdown.clone();
        let router = router(state.clone());
        let stop = async move {
            shutdown.await;
            tracing::info!("apagando: se cierran las conexiones");
            token.cancel();
        };
        let limits = crate::server::EdgeLimits {
            header_timeout: state.config.header_timeout(),
        };
        let accepting = crate::server::run(
            listener,
            router,
            limits,
            state.open_files.clone(),
            state.shutdown.clone(),
        );
        // `stop` cancels the token, which ends the accept loop.
        let (connections, ()) = tokio::join!(accepting, stop);
        state.tasks.close();
        let finished = async {
            connections.wait().await;
            state.tasks.wait().await;
        };
        if tokio::time::timeout(grace, finished).await.is_err() {
            tracing::warn!("algunas conexiones no se cerraron en {grace:?}");
        }
        Ok(())
    }
    // ANCHOR_END: serve
}

/// Creates `general` and the admin account when they do not exist yet. Returns the admin
/// password when it had to be generated. Idempotent, so that [`recovery`] may run it again on a
/// Redis that came back empty, on several nodes at once.
async fn bootstrap(
    backends: &Backends,
    passwords: &HashPool,
    config: &Config,
) -> anyhow::Result<Option<String>> {
    let general = Room {
        id: "general".into(),
        name: "General".into(),
        private: false,
        created_by: None,
    };
    match backends.rooms.create_room(general).await {
        Ok(()) | Err(backend::StoreError::Conflict(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let username = Username::parse(&config.admin_username)?;
    if backends
        .users
        .user_by_name(username.as_str())
        .await?
        .is_some()
    {
        return Ok(None);
    }
    let (password, generated) = match &config.admin_password {
        Some(password) => (password.clone(), None),
        None => {
            let password: String = uuid::Uuid::new_v4().simple().to_string();
            (password.clone(), Some(password))
        }
    };
    let email = Email::parse(&config.admin_email)?;
    match auth::routes::create_user(
        backends,
        passwords,
        username,
        Password::parse(&password)?,
        email,
        Role::Admin,
    )
    .await
    {
        // Another node created it at the same moment: theirs is as good as ours.
        Ok(_) | Err(ApiError::Conflict(_)) => Ok(generated),
        Err(error) => Err(anyhow::anyhow!(
            "could not create the admin account: {error}"
        )),
    }
}

// ANCHOR: router
/// Every route, with tracing, the body limit and JSON answers for unknown routes and methods.
/// Each module's router is generic over the state: it names the handles its handlers take, and
/// `AppState` provides them all.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(auth::routes::router())
        .merge(rooms::routes::router())
        .merge(ws::router())
        .merge(web::router())
        .merge(dashboard::router())
        .merge(metrics::router())
        .merge(jobs::router())
        .merge(openapi::router())
        .fallback(|| async { ApiError::NotFound("ruta no encontrada".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(metrics::track_http))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}
// ANCHOR_END: router

// ANCHOR: request_span
/// The span of one request: method and path only. The query string is left out on purpose:
/// `/ws?token=...` must never put a token in the logs.
fn request_span(request: &Request) -> tracing::Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str);
    tracing::info_span!("http", method = %request.method(), path = %request.uri().path(), route)
}
// ANCHOR_END: request_span
