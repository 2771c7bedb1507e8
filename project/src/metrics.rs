//! Metrics: the names, in one place, so that every module reports under the names the contract
//! and the dashboards expect; the Prometheus recorder; `GET /metrics`; and the middleware that
//! times every HTTP request.
//!
//! Recording goes through the `metrics` facade macros (`counter!`, `gauge!`, `histogram!`).
//! The facade has **one global recorder per process**, so [`install`] builds it once (a
//! `OnceLock`) and every [`crate::App`] of the process shares it. In production that is one app
//! per process and nothing changes; in the integration tests, where many apps run in one
//! process, `/metrics` of any of them shows the sum of all: tests compare deltas (or start a
//! process of their own when they need exact numbers).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::supervisor::Supervisor;

/// Gauge: open WebSocket connections on this node.
pub const CONNECTIONS: &str = "chat_connections";
/// Counter: messages stored (not counting idempotent repeats).
pub const MESSAGES_TOTAL: &str = "chat_messages_total";
/// Counter with label `status`: every job transition into `done`, `failed` or `dead`.
pub const JOBS_TOTAL: &str = "chat_jobs_total";
/// Gauge: jobs waiting to run.
pub const JOBS_QUEUE_DEPTH: &str = "chat_jobs_queue_depth";
/// Histogram with labels `method`, `path` (the matched route) and `status`.
pub const HTTP_REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Gauge: open SSE dashboard streams on this node.
pub const SSE_SUBSCRIBERS: &str = "chat_sse_subscribers";
/// Counters with label `cache` (`rooms`, `admin_stats`).
pub const CACHE_HITS_TOTAL: &str = "chat_cache_hits_total";
/// See [`CACHE_HITS_TOTAL`].
pub const CACHE_MISSES_TOTAL: &str = "chat_cache_misses_total";

/// The `path` label of a request that matched no route: a fixed word, so that a scanner trying
/// thousands of URLs cannot create thousands of time series.
pub const UNMATCHED_PATH: &str = "unmatched";

/// Upper bounds (seconds) of the latency histogram's buckets: from 5 ms (a cached `GET /rooms`)
/// to 10 s (an Argon2 login on a busy 2-core machine). With buckets the exporter writes a real
/// Prometheus histogram (`_bucket{le=...}` lines) instead of a summary with quantiles.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often [`spawn_upkeep`] drains histogram samples into their buckets, so that memory stays
/// bounded even when nobody scrapes `/metrics`.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (only the first call does anything) and returns
/// the handle that renders it. Idempotent so that every [`crate::App`] may call it.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new();
        let builder = match builder.set_buckets_for_metric(
            Matcher::Full(HTTP_REQUEST_DURATION.into()),
            &LATENCY_BUCKETS,
        ) {
            Ok(builder) => builder,
            Err(error) => {
                tracing::warn!(%error, "cubetas del histograma rechazadas: las latencias serán un resumen");
                PrometheusBuilder::new()
            }
        };
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(error) = metrics::set_global_recorder(recorder) {
            // Someone else (an embedding program) owns the facade: /metrics will stay empty.
            tracing::warn!(%error, "ya hay otro registro de métricas instalado: /metrics no mostrará nada");
        }
        describe_and_register();
        handle
    })
}

/// Describes every metric (`# HELP` lines) and registers the ones that would otherwise be
/// missing from `/metrics` until first used, so that dashboards and alerts see them at zero.
fn describe_and_register() {
    describe_gauge!(CONNECTIONS, "Conexiones WebSocket abiertas en este nodo");
    describe_counter!(
        MESSAGES_TOTAL,
        "Mensajes guardados por este nodo (sin contar los reenvíos idempotentes)"
    );
    describe_counter!(
        JOBS_TOTAL,
        "Transiciones de trabajos en segundo plano a done, failed o dead"
    );
    describe_gauge!(JOBS_QUEUE_DEPTH, "Trabajos en espera de ejecutarse");
    describe_histogram!(
        HTTP_REQUEST_DURATION,
        Unit::Seconds,
        "Duración de las peticiones HTTP, por método, ruta y código de estado"
    );
    describe_gauge!(
        SSE_SUBSCRIBERS,
        "Flujos SSE del panel abiertos en este nodo"
    );
    describe_counter!(CACHE_HITS_TOTAL, "Respuestas servidas desde la caché");
    describe_counter!(
        CACHE_MISSES_TOTAL,
        "Respuestas que no estaban en la caché y se calcularon"
    );

    // Touching a handle registers the series, so the exporter renders it at 0.
    gauge!(CONNECTIONS).increment(0.0);
    counter!(MESSAGES_TOTAL).increment(0);
    for status in ["done", "failed", "dead"] {
        counter!(JOBS_TOTAL, "status" => status).increment(0);
    }
    gauge!(JOBS_QUEUE_DEPTH).increment(0.0);
    gauge!(SSE_SUBSCRIBERS).increment(0.0);
    for cache in ["rooms", "admin_stats"] {
        counter!(CACHE_HITS_TOTAL, "cache" => cache).increment(0);
        counter!(CACHE_MISSES_TOTAL, "cache" => cache).increment(0);
    }
}

/// `GET /metrics`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().route("/metrics", get(render))
}

/// The Prometheus text exposition format, version 0.0.4.
async fn render() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        install().render(),
    )
        .into_response()
}

/// Middleware: records `http_request_duration_seconds{method, path, status}` for every request.
///
/// `path` is the route template (`/rooms/{id}/messages`), never the raw URL, so the number of
/// series stays bounded; unknown routes share [`UNMATCHED_PATH`]. Applied with `Router::layer`,
/// which wraps each route after routing, so [`MatchedPath`] is already known here.
pub async fn track_http(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let path = request
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED_PATH, MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        HTTP_REQUEST_DURATION,
        "method" => method,
        "path" => path,
        "status" => status,
    )
    .record(started.elapsed().as_secs_f64());
    response
}

/// Keeps `chat_connections` right: +1 when created, -1 when dropped, however the connection
/// ends (a return, an early `?`, a panic or the task being aborted).
#[derive(Debug)]
pub struct ConnectionGauge(());

impl ConnectionGauge {
    /// Counts one more open WebSocket connection until the value is dropped.
    pub fn open() -> Self {
        gauge!(CONNECTIONS).increment(1.0);
        Self(())
    }
}

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        gauge!(CONNECTIONS).decrement(1.0);
    }
}

/// Counts one newly stored chat message (`chat_messages_total`).
pub fn message_stored() {
    counter!(MESSAGES_TOTAL).increment(1);
}

/// The upkeep task's name for the supervisor and `/ready`.
pub const UPKEEP_TASK: &str = "mantenimiento de métricas";

/// Starts the task that drains histogram samples every few seconds until `shutdown`, on
/// `tasks` under `supervisor`. Without it, samples of an unscraped histogram would pile up in
/// memory.
pub fn spawn_upkeep(tasks: &TaskTracker, supervisor: &Supervisor, shutdown: CancellationToken) {
    let handle = install();
    let stop = shutdown.clone();
    supervisor.spawn(tasks, UPKEEP_TASK, shutdown, move || {
        let shutdown = stop.clone();
        async move {
            let mut ticks = tokio::time::interval(UPKEEP_INTERVAL);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = ticks.tick() => handle.run_upkeep(),
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_is_rendered_with_its_type_before_first_use() {
        let text = install().render();
        for (name, kind) in [
            (CONNECTIONS, "gauge"),
            (MESSAGES_TOTAL, "counter"),
            (JOBS_TOTAL, "counter"),
            (JOBS_QUEUE_DEPTH, "gauge"),
            (SSE_SUBSCRIBERS, "gauge"),
            (CACHE_HITS_TOTAL, "counter"),
            (CACHE_MISSES_TOTAL, "counter"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} missing:\n{text}"
            );
        }
        assert!(
            text.contains("chat_jobs_total{status=\"dead\"} 0"),
            "{text}"
        );
    }
}
