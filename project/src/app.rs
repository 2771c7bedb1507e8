//! Assembly: the shared state, the router, and `serve`, which runs until a shutdown future
//! resolves (the binary passes Ctrl-C/SIGTERM; tests pass whatever they like).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

use crate::auth::tokens::Tokens;
use crate::backend::{self, Backends};
use crate::config::Config;
use crate::dashboard::activity::{Activity, ActivityFeed};
use crate::domain::{Email, Password, Role, Room, Username};
use crate::error::ApiError;
use crate::ws::hub::Hub;
use crate::ws::origin::OriginPolicy;
use crate::{auth, rooms, web, ws};

mod recovery;

/// Largest request body accepted: 64 KiB.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

// ANCHOR: app_state
/// Everything a handler may need. Cheap to clone: each field is an `Arc` or a handle.
#[derive(Clone)]
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
    /// The live dashboard: activity log, stats snapshot and SSE subscribers.
    pub dashboard: crate::dashboard::Dashboard,
    /// The cache of `GET /rooms` and `GET /admin/stats` (Redis when configured, else in process).
    pub cache: crate::cache::Cache,
    /// Background jobs: mention e-mails and their records (see [`crate::jobs`]).
    pub jobs: crate::jobs::Jobs,
    /// The Argon2 hashing pool: K threads with one memory block each (see
    /// [`crate::auth::passwords`]).
    pub passwords: Arc<crate::auth::passwords::HashPool>,
    /// WebSockets per user, across every node (`CHAT_MAX_CONNECTIONS_PER_USER`).
    pub connections: crate::connections::UserConnections,
    /// Open client sockets, and whether the process is near its open-file limit.
    pub open_files: crate::server::OpenFiles,
    /// Restarts the background tasks that panic, and tells `/ready` about those that keep
    /// failing (see [`crate::supervisor`]).
    pub supervisor: crate::supervisor::Supervisor,
}
// ANCHOR_END: app_state

/// A server ready to serve: backends connected, admin and `general` in place.
pub struct App {
    state: AppState,
    admin_password: Option<String>,
    /// The activity events recorded by the chat, for the dashboard's recorder task.
    activity_events: Option<mpsc::Receiver<Activity>>,
    /// The job workers, started by `serve`.
    job_workers: Option<crate::jobs::Workers>,
    /// With Redis: the bootstrap's sentinel and its name, watched by `serve` (see [`recovery`]).
    sentinel: Option<(recovery::Sentinel, String)>,
}

impl App {
    /// Connects the backends chosen by `config` and bootstraps the admin account and `general`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        // Before anything can record: the recorder is process-wide and shared by every app.
        crate::metrics::install();
        let hub = Arc::new(Hub::new());
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
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
                )
                .await?
            }
        };
        let cache = crate::cache::Cache::from_config(&config).await?;
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
            None => crate::connections::UserConnections::memory(config.max_connections_per_user),
            Some(url) => {
                crate::connections::UserConnections::redis(
                    url,
                    &config.redis_prefix,
                    config.max_connections_per_user,
                    config.connection_lease(),
                    &tasks,
                    shutdown.clone(),
                )
                .await?
            }
        };
        let open_files = crate::server::OpenFiles::measure(config.fd_reserve);
        let (activity, activity_events) = ActivityFeed::channel();
        let supervisor = crate::supervisor::Supervisor::new();
        let dashboard =
            crate::dashboard::Dashboard::build(&config, &tasks, shutdown.clone(), &supervisor)
                .await?;
        let (jobs, job_workers) =
            crate::jobs::Jobs::build(&config, activity.clone(), &tasks, shutdown.clone()).await?;
        let state = AppState {
            activity,
            dashboard,
            tokens: Arc::new(Tokens::new(&secret, config.token_ttl())),
            passwords: Arc::new(crate::auth::passwords::HashPool::new(config.hash_wait())),
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
        let admin_password = bootstrap(&state).await?;
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
            sentinel,
        })
    }

    /// The admin password when it was generated at start-up (to print it once).
    pub fn generated_admin_password(&self) -> Option<&str> {
        self.admin_password.as_deref()
    }

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
        if let Some(events) = self.activity_events {
            crate::dashboard::spawn_workers(&state, events);
        }
        if let Some(workers) = self.job_workers {
            workers.start(&state);
        }
        if let Some((sentinel, name)) = self.sentinel {
            let every = state.config.bootstrap_check();
            let seen = Arc::new(std::sync::Mutex::new(name));
            let (watched, supervisor) = (state.clone(), state.supervisor.clone());
            let shutdown = state.shutdown.clone();
            state.tasks.spawn(async move {
                supervisor
                    .run(recovery::TASK, shutdown, move || {
                        let (state, sentinel) = (watched.clone(), sentinel.clone());
                        recovery::watch(state, sentinel, seen.clone(), every)
                    })
                    .await;
            });
        }
        let token = state.shutdown.clone();
        let grace = state.config.shutdown_grace();
        let router = router(state.clone());
        crate::metrics::spawn_upkeep(&state);
        let stop = async move {
            shutdown.await;
            tracing::info!("shutting down: closing connections");
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
            tracing::warn!("some connections did not close within {grace:?}");
        }
        Ok(())
    }
    // ANCHOR_END: serve
}

/// Creates `general` and the admin account when they do not exist yet. Returns the admin
/// password when it had to be generated. Idempotent, so that [`recovery`] may run it again on a
/// Redis that came back empty, on several nodes at once.
async fn bootstrap(state: &AppState) -> anyhow::Result<Option<String>> {
    let general = Room {
        id: "general".into(),
        name: "General".into(),
        private: false,
        created_by: None,
    };
    match state.backends.rooms.create_room(general).await {
        Ok(()) | Err(backend::StoreError::Conflict(_)) => {}
        Err(error) => return Err(error.into()),
    }
    let config = &state.config;
    let username = Username::parse(&config.admin_username)?;
    if state
        .backends
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
        state,
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
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(auth::routes::router())
        .merge(rooms::routes::router())
        .merge(ws::router())
        .merge(web::router())
        .merge(crate::dashboard::router())
        .merge(crate::metrics::router())
        .merge(crate::jobs::router())
        .merge(crate::openapi::router())
        .fallback(|| async { ApiError::NotFound("ruta no encontrada".into()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(crate::metrics::track_http))
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

/// `/health`: 200 while the process serves (liveness; it checks no backend on purpose).
#[utoipa::path(
    get, path = "/health", tag = "operaciones",
    summary = "Vida del proceso",
    description = "Vida del proceso: responde 200 mientras el servidor atiende peticiones. No comprueba los backends (para eso está `/ready`).",
    responses((status = 200, description = "El proceso está vivo", body = crate::openapi::Health)),
)]
async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `/ready`: 200 when every backend answers and every supervised task works, else 503 naming
/// what failed (while a supervised task keeps failing, `checks.tasks` is `down`, and `tasks` at
/// the top names each such task with its reason).
#[utoipa::path(
    get, path = "/ready", tag = "operaciones",
    summary = "Preparación de los backends",
    description = "Preparación: 200 si todos los backends (Redis, cola de trabajos) responden y todas las tareas de fondo funcionan; si no, 503 con `\"status\":\"degraded\"` y lo que falló en `checks` (`tasks` es `down` mientras una tarea de fondo falla una y otra vez; entonces `tasks` nombra cada una con el motivo).",
    responses(
        (status = 200, description = "Todos los backends responden", body = crate::openapi::Readiness),
        (status = 503, description = "Algún backend no responde o alguna tarea no funciona", body = crate::openapi::Readiness),
    ),
)]
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    // Every check runs at once, each bounded by `CHECK_TIMEOUT`: a frozen backend (a stopped
    // Redis keeps its sockets open and answers nothing) makes its check `down` in 1 s, never
    // makes `/ready` hang, and never delays the verdict on the others.
    let backend = async {
        match &state.backends.health {
            None => ("memory", true),
            Some(check) => (check.name(), probe(check.name(), check.check()).await),
        }
    };
    let queue = async { ("queue", probe("queue", state.jobs.check()).await) };
    let (backend, queue) = tokio::join!(backend, queue);
    // The supervisor's record: no I/O, answered at once.
    let failing = state.supervisor.problems();
    let tasks = ("tasks", failing.is_empty());
    let mut checks = serde_json::Map::new();
    for (name, up) in [backend, queue, tasks] {
        checks.insert(name.into(), Value::from(if up { "ok" } else { "down" }));
    }
    if backend.1 && queue.1 && tasks.1 {
        return (
            StatusCode::OK,
            Json(json!({ "status": "ok", "checks": checks })),
        );
    }
    let mut body = json!({ "status": "degraded", "checks": checks });
    if !failing.is_empty() {
        let reasons: serde_json::Map<String, Value> = failing
            .into_iter()
            .map(|(name, reason)| (name.to_owned(), Value::from(reason)))
            .collect();
        body["tasks"] = Value::Object(reasons);
    }
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

/// How long one readiness check may take before it counts as `down` (the contract's 1 s).
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs one readiness check within [`CHECK_TIMEOUT`]; `true` when it answered in time.
async fn probe(name: &str, check: impl Future<Output = backend::StoreResult<()>>) -> bool {
    match tokio::time::timeout(CHECK_TIMEOUT, check).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, check = name, "readiness check failed");
            false
        }
        Err(_) => {
            tracing::warn!(check = name, "readiness check took over {CHECK_TIMEOUT:?}");
            false
        }
    }
}
