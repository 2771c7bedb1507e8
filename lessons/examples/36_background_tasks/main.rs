//! Práctica 36 · Tareas en segundo plano (*background jobs*)
//!
//! Ejecuta con:   cargo run --example 36_background_tasks
//!                (con Redis: REDIS_URL=redis://127.0.0.1:6379 cargo run --example 36_background_tasks)
//! Abre:          http://localhost:3036
//! Verás:         una página con siete pasos: el mismo trabajo hecho en la petición, con
//!                `tokio::spawn`, con `spawn_blocking` y en una cola; un worker de apalis que
//!                escribe e-mails `.eml` en una carpeta, con reintentos y espera exponencial
//!                hasta rendirse; una tarea periódica; el estado de cada trabajo; logs y
//!                contadores; y, con Redis, cómo se ve la cola por dentro.
//! En FastAPI:    BackgroundTasks (se pierde si el proceso cae) y Celery/RQ/ARQ con Redis
//!                (semana 10, versión Python)
//! En el proyecto final: project/src/jobs/worker.rs, project/src/jobs/queue.rs,
//!                project/src/jobs/email.rs, project/src/jobs/schedule.rs, project/src/jobs/store.rs
//! Después:       el ejercicio 2, exercises/src/ej02_email_processor.rs (cargo test -p exercises ej02)
//!
//! Un archivo por paso, en el orden de la página:
//! - `request.rs`: paso 1, en la petición vs `tokio::spawn` vs `spawn_blocking` vs una cola;
//! - `mailer.rs`: paso 2, `POST /emails` y el mailer de `.eml` (y cómo hacerlo fallar);
//! - `queue.rs`: la cola en memoria o en Redis (paso 7: `GET /queue`);
//! - `worker.rs`: pasos 2, 3 y 6, el worker, la política de reintentos y los `span` por trabajo;
//! - `schedule.rs`: paso 4, la tarea periódica;
//! - `status.rs`: pasos 5 y 6, `GET /jobs/{id}` y `GET /stats`.
//!
//! Variables: `REDIS_URL` (cola en Redis), `OUTBOX_DIR` (carpeta de los `.eml`; por defecto
//! `outbox-36` en la carpeta temporal del sistema), `LESSON_ADDR` (dirección y puerto),
//! `LESSON_WORKERS=0` (este proceso solo encola; con Redis, otro proceso envía).

pub mod mailer;
pub mod queue;
pub mod request;
pub mod schedule;
pub mod status;
pub mod worker;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use apalis_core::backend::dequeue::VecDequeBackend;
use apalis_redis::RedisStorage;
use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use tokio_util::sync::{CancellationToken, DropGuard};

use queue::EmailQueue;
use schedule::Schedule;
use status::JobStore;
use worker::{RetryPolicy, Runner};

/// El prefijo de las claves de la cola en Redis.
pub const DEFAULT_QUEUE: &str = "lesson36:emails";

/// Cómo arranca la lección. `from_env` da lo de `cargo run`; los tests acortan los tiempos.
#[derive(Debug, Clone)]
pub struct Config {
    /// Dónde se escriben los `.eml`.
    pub outbox: PathBuf,
    /// Con `Some`, la cola vive en Redis; con `None`, en este proceso.
    pub redis_url: Option<String>,
    /// El prefijo de las claves en Redis.
    pub queue: String,
    pub retry: RetryPolicy,
    /// Cada cuánto corre la tarea periódica.
    pub schedule_every: Duration,
    /// Con `false`, este proceso solo encola (`LESSON_WORKERS=0`): otro, con la misma Redis,
    /// hará el trabajo. Así se ve que la cola no es de nadie.
    pub workers: bool,
}

impl Config {
    pub fn from_env() -> Self {
        let outbox = std::env::var_os("OUTBOX_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| std::env::temp_dir().join("outbox-36"));
        Self {
            outbox,
            redis_url: std::env::var("REDIS_URL")
                .ok()
                .filter(|url| !url.is_empty()),
            queue: DEFAULT_QUEUE.to_owned(),
            retry: RetryPolicy::default(),
            schedule_every: Duration::from_secs(15),
            workers: std::env::var("LESSON_WORKERS").as_deref() != Ok("0"),
        }
    }
}

/// Lo que comparten los handlers.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<JobStore>,
    pub queue: EmailQueue,
    pub work: Arc<request::Work>,
    pub schedule: Arc<Schedule>,
    pub config: Arc<Config>,
    /// Cuando el router se suelta (el servidor para), los workers paran con él.
    _stop: Arc<DropGuard>,
}

// ANCHOR: app
/// Conecta la cola (memoria o Redis), arranca los workers y devuelve el router.
pub async fn app(config: Config) -> anyhow::Result<Router> {
    let stop = CancellationToken::new();
    let queue = match &config.redis_url {
        None => EmailQueue::Memory {
            backend: VecDequeBackend::new(),
            stop: stop.clone(),
        },
        Some(url) => {
            // Si Redis no contesta, mejor un error claro que una lección colgada.
            let connect = apalis_redis::connect(url.as_str());
            let conn = tokio::time::timeout(Duration::from_secs(5), connect)
                .await
                .map_err(|_| anyhow::anyhow!("Redis en {url} no contesta"))??;
            let redis_config = apalis_redis::Config::default()
                .queue(&config.queue)
                .heartbeat_interval(Duration::from_secs(2))
                .missed_heartbeats(3);
            let storage = RedisStorage::new(conn.clone()).with_config(redis_config);
            EmailQueue::Redis {
                storage: Box::new(storage),
                conn,
                name: config.queue.clone(),
            }
        }
    };
    let store = Arc::new(JobStore::default());
    let schedule = Arc::new(Schedule::new(config.schedule_every, store.clone()));
    let runner = Arc::new(Runner {
        store: store.clone(),
        queue: queue.clone(),
        mailer: mailer::Mailer::new(config.outbox.clone())?,
        retry: config.retry,
    });
    if config.workers {
        worker::spawn_monitor(runner, schedule.clone(), stop.clone());
    } else {
        tracing::warn!(
            "LESSON_WORKERS=0: este proceso encola, pero no envía ni ejecuta la tarea periódica"
        );
    }
    tracing::info!(backend = queue.backend_name(), outbox = %config.outbox.display(), "cola lista");

    let state = AppState {
        store,
        queue,
        work: Arc::default(),
        schedule,
        config: Arc::new(config),
        _stop: Arc::new(stop.drop_guard()),
    };
    Ok(Router::new()
        .route("/", get(index))
        .route("/work/inline", post(request::inline))
        .route("/work/spawn", post(request::spawn))
        .route("/work/blocking", post(request::blocking))
        .route("/work", get(request::counters))
        .route("/emails", post(mailer::enqueue))
        .route("/jobs/{id}", get(status::job))
        .route("/stats", get(status::stats))
        .route("/schedule", get(schedule::view))
        .route("/queue", get(queue::view))
        .with_state(state))
}
// ANCHOR_END: app

/// La página: los pasos, qué probar y un cliente en JavaScript para cada ruta.
async fn index(State(state): State<AppState>) -> Html<String> {
    let config = &state.config;
    let commands: Vec<String> = queue::redis_cli(&config.queue)
        .iter()
        .map(|command| escape(command))
        .collect();
    let retry = config.retry;
    let body = include_str!("page.html")
        .replace("{{backend}}", state.queue.backend_name())
        .replace("{{outbox}}", &escape(&config.outbox.display().to_string()))
        .replace("{{max_attempts}}", &retry.max_attempts.to_string())
        .replace("{{base_ms}}", &retry.base.as_millis().to_string())
        .replace(
            "{{schedule_s}}",
            &config.schedule_every.as_secs_f32().to_string(),
        )
        .replace("{{redis_cli}}", &commands.join("\n"));
    lessons::page("Práctica 36 · Tareas en segundo plano", &body)
}

/// Lo mínimo para poner texto dentro de HTML.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lessons::init_tracing();
    let config = Config::from_env();
    let outbox = config.outbox.display().to_string();
    let app = app(config).await?;
    println!("Los e-mails se escriben en {outbox}");
    lessons::run("Práctica 36 · Tareas en segundo plano", 3036, app).await
}

// Dónde vive esto en el proyecto final:
// - la cola en memoria o en Redis: project/src/jobs/queue.rs;
// - el worker, su política de reintentos y los span por trabajo: project/src/jobs/worker.rs;
// - el mailer (SMTP o .eml) y las plantillas: project/src/jobs/email.rs;
// - la tarea periódica con su lease en Redis: project/src/jobs/schedule.rs;
// - el registro de estados en Redis y GET /admin/jobs: project/src/jobs/store.rs y
//   project/src/jobs/routes.rs; los contadores en Prometheus: project/src/metrics.rs.
