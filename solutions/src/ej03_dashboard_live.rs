//! Solución de referencia del ejercicio 3 · Dashboard Live (el enunciado, las reglas y las pistas
//! están en `exercises/src/ej03_dashboard_live.rs`).
//!
//! Dos ideas de la práctica 37 en un mismo servidor:
//! - un stream SSE de métricas con `id:` en cada evento, comentarios keep-alive y reanudación con
//!   `Last-Event-ID` desde un buffer acotado;
//! - un informe caro detrás de una caché (cache-aside) con TTL, invalidación al escribir y la
//!   cabecera `X-Cache: HIT|MISS`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_stream::wrappers::BroadcastStream;

/// Una medida que envía un agente: `POST /metrics` con este JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricSample {
    /// Uso de CPU, de 0 a 100.
    pub cpu_percent: u8,
    /// Peticiones atendidas desde la medida anterior.
    pub requests: u64,
    /// Usuarios conectados ahora mismo.
    pub online_users: u32,
}

/// Una medida ya publicada: con su `id` (1, 2, 3…) y la hora a la que llegó.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricEvent {
    pub id: u64,
    pub at: DateTime<Utc>,
    pub sample: MetricSample,
}

/// El informe caro: `GET /report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub samples: u64,
    pub max_cpu_percent: u8,
    pub total_requests: u64,
    pub last_online_users: u32,
}

/// Cómo se calcula el informe. La aplicación lo recibe desde fuera: en producción sería una
/// consulta lenta a la base de datos; las comprobaciones pasan una que cuenta sus llamadas.
pub type ComputeReport = Arc<dyn Fn(&[MetricEvent]) -> Report + Send + Sync>;

/// El cálculo del informe a partir de las métricas que guarda el buffer. Imagina que tarda dos
/// segundos: por eso va detrás de una caché.
pub fn compute_report(events: &[MetricEvent]) -> Report {
    Report {
        samples: events.len() as u64,
        max_cpu_percent: events
            .iter()
            .map(|event| event.sample.cpu_percent)
            .max()
            .unwrap_or(0),
        total_requests: events.iter().map(|event| event.sample.requests).sum(),
        last_online_users: events.last().map_or(0, |event| event.sample.online_users),
    }
}

/// Los ajustes del dashboard: las comprobaciones usan valores pequeños.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// Cuántas métricas guarda el buffer de reanudación (las más recientes).
    pub buffer: usize,
    /// Cada cuánto se envía un comentario keep-alive si no hay métricas.
    pub keep_alive: Duration,
    /// Cuánto vale un informe guardado en la caché.
    pub report_ttl: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        Self {
            buffer: 100,
            keep_alive: Duration::from_secs(15),
            report_ttl: Duration::from_secs(5),
        }
    }
}

/// Lo que protege el candado del feed: el último id repartido y las métricas recientes.
#[derive(Debug, Default)]
struct FeedState {
    last_id: u64,
    events: VecDeque<MetricEvent>,
}

/// Las métricas publicadas: un buffer acotado (para reanudar) y un canal `broadcast` (en vivo).
///
/// El candado es un `std::sync::Mutex`, no el de Tokio: nunca se mantiene a través de un
/// `.await`, solo mientras se copia o se empuja un evento.
pub struct MetricsFeed {
    state: Mutex<FeedState>,
    live: broadcast::Sender<MetricEvent>,
    capacity: usize,
}

impl MetricsFeed {
    /// Un feed que recuerda las últimas `capacity` métricas (al menos una).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(capacity);
        Self {
            state: Mutex::new(FeedState::default()),
            live,
            capacity,
        }
    }

    // ANCHOR: feed
    /// Da a `sample` el siguiente id, la guarda en el buffer (tirando la más vieja si no cabe) y
    /// la envía a los streams abiertos. Devuelve el evento publicado.
    pub fn publish(&self, sample: MetricSample) -> MetricEvent {
        // Un candado envenenado solo significa que otro hilo entró en pánico con él: los datos
        // siguen siendo válidos, así que seguimos usándolos.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.last_id += 1;
        let event = MetricEvent {
            id: state.last_id,
            at: Utc::now(),
            sample,
        };
        state.events.push_back(event.clone());
        // El buffer está acotado: la memoria no crece con el tiempo que lleva vivo el servidor.
        while state.events.len() > self.capacity {
            state.events.pop_front();
        }
        // Enviamos con el candado tomado: así dos publicaciones a la vez llegan en orden de id.
        // `send` falla solo si no hay nadie escuchando, y eso no es un error.
        let _ = self.live.send(event.clone());
        event
    }

    /// Las métricas del buffer posteriores a `last_id`, de la más vieja a la más nueva. Las que
    /// ya salieron del buffer no vuelven: el cliente se las perdió.
    pub fn since(&self, last_id: u64) -> Vec<MetricEvent> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state
            .events
            .iter()
            .filter(|event| event.id > last_id)
            .cloned()
            .collect()
    }
    // ANCHOR_END: feed

    /// Un receptor de las métricas que se publiquen a partir de ahora.
    pub fn subscribe(&self) -> broadcast::Receiver<MetricEvent> {
        self.live.subscribe()
    }
}

/// Una entrada de la caché: el informe y cuándo se guardó.
#[derive(Debug, Clone)]
struct Entry {
    stored_at: Instant,
    report: Report,
}

// ANCHOR: cache
/// La caché del informe: una sola entrada con fecha de caducidad.
///
/// Usa `tokio::time::Instant`, no `std::time::Instant`: con el reloj de Tokio en pausa, un test
/// adelanta el tiempo con `tokio::time::advance` y comprueba el TTL sin esperar de verdad.
pub struct ReportCache {
    ttl: Duration,
    entry: Mutex<Option<Entry>>,
}

impl ReportCache {
    /// Una caché vacía cuyos informes valen `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entry: Mutex::new(None),
        }
    }

    /// El informe guardado si aún no ha caducado (menos de `ttl` desde que se guardó).
    pub fn get(&self) -> Option<Report> {
        let entry = self
            .entry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entry
            .as_ref()
            .filter(|entry| entry.stored_at.elapsed() < self.ttl)
            .map(|entry| entry.report.clone())
    }

    /// Guarda `report` como el informe vigente, con el reloj a cero.
    pub fn put(&self, report: Report) {
        let mut entry = self
            .entry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *entry = Some(Entry {
            stored_at: Instant::now(),
            report,
        });
    }

    /// Olvida el informe: el siguiente `GET /report` lo recalcula.
    pub fn invalidate(&self) {
        let mut entry = self
            .entry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *entry = None;
    }
}
// ANCHOR_END: cache

/// El estado compartido por los handlers.
#[derive(Clone)]
pub struct Dashboard {
    pub feed: Arc<MetricsFeed>,
    pub cache: Arc<ReportCache>,
    pub compute: ComputeReport,
    pub config: DashboardConfig,
}

impl Dashboard {
    pub fn new(config: DashboardConfig, compute: ComputeReport) -> Self {
        Self {
            feed: Arc::new(MetricsFeed::new(config.buffer)),
            cache: Arc::new(ReportCache::new(config.report_ttl)),
            compute,
            config,
        }
    }
}

/// Las rutas del dashboard.
pub fn app(config: DashboardConfig, compute: ComputeReport) -> Router {
    Router::new()
        .route("/metrics", post(post_metric))
        .route("/metrics/stream", get(stream_metrics))
        .route("/report", get(get_report))
        .with_state(Dashboard::new(config, compute))
}

/// El id de la cabecera `Last-Event-ID`, si la hay y es un número. El navegador la envía solo
/// al reconectarse, con el `id:` del último evento que recibió.
pub fn last_event_id(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Un evento SSE de una métrica: `event: metrics`, `id: N` y el JSON del evento en `data:`.
pub fn to_event(event: &MetricEvent) -> Event {
    // Serializar este tipo no falla (solo números y una fecha); si fallara, enviamos `{}`.
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    Event::default()
        .event("metrics")
        .id(event.id.to_string())
        .data(data)
}

/// `POST /metrics`: valida la medida, la publica e invalida el informe (ya no está al día).
pub async fn post_metric(
    State(dashboard): State<Dashboard>,
    Json(sample): Json<MetricSample>,
) -> Response {
    // Los datos imposibles se rechazan antes de tocar nada: ni se publican ni invalidan.
    if sample.cpu_percent > 100 {
        let error = serde_json::json!({ "error": "cpu_percent debe estar entre 0 y 100" });
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(error)).into_response();
    }
    let event = dashboard.feed.publish(sample);
    // Primero publicamos y luego invalidamos: quien recalcule a partir de ahora ya ve la métrica.
    dashboard.cache.invalidate();
    (StatusCode::CREATED, Json(event)).into_response()
}

// ANCHOR: stream
/// `GET /metrics/stream`: lo que el cliente se perdió (si trae `Last-Event-ID`) y luego las
/// métricas en vivo, con un comentario keep-alive cuando no hay nada que enviar.
pub async fn stream_metrics(State(dashboard): State<Dashboard>, headers: HeaderMap) -> Response {
    // Nos suscribimos ANTES de leer el buffer: así no se pierde lo que llegue entre medias. Lo
    // que aparezca en los dos sitios se descarta por id.
    let live = dashboard.feed.subscribe();
    let last_id = last_event_id(&headers);
    let backlog = match last_id {
        Some(id) => dashboard.feed.since(id),
        // Sin `Last-Event-ID` es una conexión nueva: empieza por lo que llegue ahora.
        None => Vec::new(),
    };
    let sent_up_to = backlog
        .last()
        .map_or(last_id.unwrap_or(0), |event| event.id);

    let replay = futures_util::stream::iter(backlog);
    let live = BroadcastStream::new(live)
        // Si este cliente se queda atrás (`Lagged`), cortamos el stream: el navegador se
        // reconecta solo con `Last-Event-ID` y recupera del buffer lo que le falte.
        .take_while(|received| std::future::ready(received.is_ok()))
        .filter_map(move |received| {
            std::future::ready(received.ok().filter(|event| event.id > sent_up_to))
        });
    let events = replay
        .chain(live)
        .map(|event| Ok::<_, Infallible>(to_event(&event)));

    Sse::new(events)
        .keep_alive(
            KeepAlive::new()
                .interval(dashboard.config.keep_alive)
                .text("keep-alive"),
        )
        .into_response()
}
// ANCHOR_END: stream

// ANCHOR: report
/// `GET /report`: el informe de la caché si sigue vigente (`X-Cache: HIT`); si no, lo calcula,
/// lo guarda y lo responde (`X-Cache: MISS`).
pub async fn get_report(State(dashboard): State<Dashboard>) -> Response {
    let (report, status) = match dashboard.cache.get() {
        Some(report) => (report, "HIT"),
        None => {
            let events = dashboard.feed.since(0);
            let report = (dashboard.compute)(&events);
            // Límite: si una métrica llega justo mientras calculamos, guardamos un informe que
            // no la incluye durante un TTL como mucho. El proyecto final lo evita con
            // generaciones (`project/src/cache/mod.rs`).
            dashboard.cache.put(report.clone());
            (report, "MISS")
        }
    };
    let mut response = Json(report).into_response();
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static(status));
    response
}
// ANCHOR_END: report
