//! `/health` (liveness) and `/ready` (readiness): what a load balancer or an orchestrator asks
//! to decide whether to send traffic to this node.

use std::future::Future;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::backend::{self, Backends};
use crate::jobs::Jobs;
use crate::supervisor::Supervisor;

/// `/health` and `/ready`, on any state that holds the handles `/ready` checks.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Backends: FromRef<S>,
    Jobs: FromRef<S>,
    Supervisor: FromRef<S>,
{
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
}

/// `/health`: 200 while the process serves (liveness; it checks no backend on purpose).
#[utoipa::path(
    get, path = "/health", tag = "operaciones",
    summary = "Vida del proceso",
    description = "Vida del proceso: responde 200 mientras el servidor atiende peticiones. No comprueba los backends (para eso está `/ready`).",
    responses((status = 200, description = "El proceso está vivo", body = crate::api_schema::Health)),
)]
pub(crate) async fn health() -> Json<Value> {
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
        (status = 200, description = "Todos los backends responden", body = crate::api_schema::Readiness),
        (status = 503, description = "Algún backend no responde o alguna tarea no funciona", body = crate::api_schema::Readiness),
    ),
)]
pub(crate) async fn ready(
    State(backends): State<Backends>,
    State(jobs): State<Jobs>,
    State(supervisor): State<Supervisor>,
) -> impl IntoResponse {
    // Every check runs at once, each bounded by `CHECK_TIMEOUT`: a frozen backend (a stopped
    // Redis keeps its sockets open and answers nothing) makes its check `down` in 1 s, never
    // makes `/ready` hang, and never delays the verdict on the others.
    let backend = async {
        match &backends.health {
            None => ("memory", true),
            Some(check) => (check.name(), probe(check.name(), check.check()).await),
        }
    };
    let queue = async { ("queue", probe("queue", jobs.check()).await) };
    let (backend, queue) = tokio::join!(backend, queue);
    // The supervisor's record: no I/O, answered at once.
    let failing = supervisor.problems();
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
            tracing::warn!(%error, check = name, "la comprobación de preparación falló");
            false
        }
        Err(_) => {
            tracing::warn!(
                check = name,
                "la comprobación de preparación tardó más de {CHECK_TIMEOUT:?}"
            );
            false
        }
    }
}
