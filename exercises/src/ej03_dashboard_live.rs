//! # Ejercicio 3 · Dashboard Live
//!
//! **Objetivo:** un panel de métricas en vivo. Los agentes envían medidas con `POST /metrics`; el
//! navegador las recibe al momento por Server-Sent Events (`GET /metrics/stream`) y, si se corta
//! la conexión, se reconecta sin perder nada gracias a `Last-Event-ID`. Además, `GET /report`
//! devuelve un informe caro de calcular, así que va detrás de una caché con TTL que se invalida
//! cuando llega una métrica nueva y lo dice en la cabecera `X-Cache: HIT|MISS`.
//!
//! **Tiempo estimado:** 1 h 30 min.
//!
//! **Antes:** la práctica 37, `cargo run --example 37_sse_cache` (SSE, keep-alive, `Last-Event-ID`
//! y cache-aside con TTL).
//!
//! **Comprueba tu solución:**
//! ```text
//! cargo test -p exercises ej03
//! cargo run -p exercises --bin grade -- --ejercicio 3
//! ```
//!
//! ## La API
//! | ruta | qué hace |
//! |---|---|
//! | `POST /metrics` | recibe un [`MetricSample`] en JSON; responde `201` con el [`MetricEvent`] publicado, o `422` si `cpu_percent > 100` |
//! | `GET /metrics/stream` | SSE: cada métrica es un evento `event: metrics`, `id: N`, `data: <MetricEvent en JSON>` |
//! | `GET /report` | el [`Report`] en JSON, con `X-Cache: MISS` si se acaba de calcular o `HIT` si viene de la caché |
//!
//! Los tipos, la configuración, el estado ([`Dashboard`]) y las rutas ([`app`]) ya están hechos.
//! Te toca lo que tiene `// TODO:`: el buffer de métricas ([`MetricsFeed`]), la caché
//! ([`ReportCache`]) y los handlers.
//!
//! ## Reglas que se comprueban
//! Núcleo:
//! 1. emite cada métrica publicada como evento `metrics` con su id (una conexión nueva, sin
//!    `Last-Event-ID`, empieza por las métricas que lleguen a partir de ahora).
//! 2. reparte cada métrica a todos los clientes conectados.
//! 3. reanuda desde `Last-Event-ID` sin repetir ni saltarse métricas (primero las que el cliente
//!    se perdió, del buffer; después las nuevas).
//! 4. sirve el informe de la caché: `MISS` la primera vez, `HIT` después, sin recalcular (la
//!    función de cálculo que recibe [`app`] se llama una sola vez).
//! 5. invalida el informe cuando llega una métrica nueva (el siguiente `GET /report` es `MISS` y
//!    ya la incluye).
//!
//! Calidad:
//! 6. el informe caduca justo al cumplirse el TTL (reloj pausado): la comprobación pausa el reloj
//!    de Tokio y lo adelanta, así que usa `tokio::time::Instant`, no `std::time::Instant`.
//! 7. el buffer de reanudación guarda solo las últimas métricas (`DashboardConfig::buffer`).
//! 8. envía un comentario keep-alive mientras no hay métricas (cada `DashboardConfig::keep_alive`).
//! 9. rechaza una métrica imposible con 422 sin publicarla ni invalidar el informe.
//!
//! Integración:
//! 10. la transcripción SSE coincide con la de referencia (un cliente recibe dos métricas, se
//!     desconecta y se reconecta con `Last-Event-ID`; las horas se ocultan).
//!
//! Las pistas están al final del fichero.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use axum::response::sse::Event;
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::time::Instant;

// Lo que usarás al resolverlo (el `allow` evita el aviso mientras aún no lo usas). `StreamExt`
// es el de `futures_util`: su `filter_map` espera un futuro, como en la Pista 3. El de
// `tokio_stream` se llama igual y tiene otra firma: no importes los dos.
#[allow(unused_imports)]
use {
    axum::http::{HeaderValue, StatusCode},
    axum::response::IntoResponse,
    axum::response::sse::{KeepAlive, Sse},
    futures_util::StreamExt,
    std::convert::Infallible,
    tokio_stream::wrappers::BroadcastStream,
};

// ANCHOR: types
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
// ANCHOR_END: types

/// El cálculo del informe a partir de las métricas que guarda el buffer. Imagina que tarda dos
/// segundos: por eso va detrás de una caché. (Ya está hecho.)
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

// ANCHOR: feed
/// Las métricas publicadas: un buffer acotado (para reanudar) y un canal `broadcast` (en vivo).
///
/// El candado es un `std::sync::Mutex`, no el de Tokio: nunca lo mantengas a través de un
/// `.await`, solo mientras copias o empujas un evento.
pub struct MetricsFeed {
    state: Mutex<FeedState>,
    live: broadcast::Sender<MetricEvent>,
    capacity: usize,
}

impl MetricsFeed {
    /// Un feed que recuerda las últimas `capacity` métricas (al menos una). (Ya está hecho.)
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        let (live, _) = broadcast::channel(capacity);
        Self {
            state: Mutex::new(FeedState::default()),
            live,
            capacity,
        }
    }

    /// Da a `sample` el siguiente id, la guarda en el buffer (tirando la más vieja si no cabe) y
    /// la envía a los streams abiertos. Devuelve el evento publicado.
    pub fn publish(&self, sample: MetricSample) -> MetricEvent {
        // TODO: toma el candado, incrementa `last_id`, crea el `MetricEvent` (hora: `Utc::now()`),
        // guárdalo al final de `events`, quita los más viejos mientras haya más de `capacity`
        // y envíalo por `live` (que nadie escuche no es un error).
        todo!("publica la métrica: id nuevo, al buffer acotado y al canal en vivo")
    }

    /// Las métricas del buffer posteriores a `last_id`, de la más vieja a la más nueva. Las que
    /// ya salieron del buffer no vuelven: el cliente se las perdió.
    pub fn since(&self, last_id: u64) -> Vec<MetricEvent> {
        // TODO: copia del buffer los eventos con `id > last_id`.
        todo!("devuelve las métricas del buffer posteriores a last_id")
    }

    /// Un receptor de las métricas que se publiquen a partir de ahora. (Ya está hecho.)
    pub fn subscribe(&self) -> broadcast::Receiver<MetricEvent> {
        self.live.subscribe()
    }
}
// ANCHOR_END: feed

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
    /// Una caché vacía cuyos informes valen `ttl`. (Ya está hecho.)
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entry: Mutex::new(None),
        }
    }

    /// El informe guardado si aún no ha caducado (menos de `ttl` desde que se guardó).
    pub fn get(&self) -> Option<Report> {
        // TODO: devuelve una copia del informe solo si `stored_at.elapsed() < ttl`.
        todo!("devuelve el informe guardado si no ha caducado")
    }

    /// Guarda `report` como el informe vigente, con el reloj a cero.
    pub fn put(&self, report: Report) {
        // TODO: guarda una `Entry` con `Instant::now()` (el de Tokio, ya importado).
        todo!("guarda el informe con la hora actual")
    }

    /// Olvida el informe: el siguiente `GET /report` lo recalcula.
    pub fn invalidate(&self) {
        // TODO: vacía la entrada.
        todo!("olvida el informe guardado")
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

// ANCHOR: router
/// Las rutas del dashboard. (Ya está hecho.)
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
    // TODO: lee la cabecera "last-event-id", pásala a texto, quítale espacios y conviértela en u64.
    todo!("lee y convierte la cabecera Last-Event-ID")
}

/// Un evento SSE de una métrica: `event: metrics`, `id: N` y el JSON del evento en `data:`.
pub fn to_event(event: &MetricEvent) -> Event {
    // TODO: `Event::default()` con `.event("metrics")`, `.id(...)` y `.data(json)`.
    todo!("construye el evento SSE de la métrica")
}

/// `POST /metrics`: valida la medida, la publica e invalida el informe (ya no está al día).
pub async fn post_metric(
    State(dashboard): State<Dashboard>,
    Json(sample): Json<MetricSample>,
) -> Response {
    // TODO: `cpu_percent > 100` → 422 con `{"error": "..."}` (sin publicar nada); si no,
    // publica, invalida la caché y responde 201 con el `MetricEvent`.
    todo!("valida, publica, invalida la caché y responde 201")
}

/// `GET /metrics/stream`: lo que el cliente se perdió (si trae `Last-Event-ID`) y luego las
/// métricas en vivo, con un comentario keep-alive cuando no hay nada que enviar.
pub async fn stream_metrics(State(dashboard): State<Dashboard>, headers: HeaderMap) -> Response {
    // TODO: suscríbete al feed, lee del buffer lo que el cliente se perdió, encadena lo en vivo
    // (sin repetir ids) y responde `Sse::new(stream).keep_alive(...)`.
    todo!("abre el stream SSE: reanudación + en vivo + keep-alive")
}

/// `GET /report`: el informe de la caché si sigue vigente (`X-Cache: HIT`); si no, lo calcula,
/// lo guarda y lo responde (`X-Cache: MISS`).
pub async fn get_report(State(dashboard): State<Dashboard>) -> Response {
    // TODO: cache-aside: `cache.get()`; si no hay, `(dashboard.compute)(&feed.since(0))`,
    // `cache.put(...)`; responde el JSON con la cabecera `x-cache`.
    todo!("sirve el informe desde la caché o calcúlalo")
}
// ANCHOR_END: router

// ---------------------------------------------------------------------------------------------
// Pistas
// ---------------------------------------------------------------------------------------------
//
// Pista 1 (la idea)
//   SSE es una respuesta HTTP que no termina: cada evento son líneas `event:`, `id:` y `data:`
//   seguidas de una línea vacía. El navegador recuerda el último `id:` y, si se corta, se
//   reconecta enviando `Last-Event-ID`: tú le reenvías lo que se perdió desde un buffer acotado
//   (un `VecDeque` que tira lo más viejo) y sigues con lo nuevo del canal `broadcast`.
//   La caché es cache-aside: mira la caché; si no hay o caducó, calcula, guarda y responde.
//   Escribir una métrica hace que el informe ya no sea cierto: invalídalo.
//
// Pista 2 (la API)
//   - `axum::response::sse::{Sse, KeepAlive}`: `Sse::new(stream).keep_alive(KeepAlive::new()
//     .interval(d).text("keep-alive"))`; la respuesta se convierte con `.into_response()`
//     (`axum::response::IntoResponse`).
//   - El stream debe ser de `Result<Event, Infallible>` (`std::convert::Infallible`).
//   - `tokio_stream::wrappers::BroadcastStream::new(receiver)` convierte el receptor en un
//     `Stream`; `futures_util::stream::iter(vec)` convierte el buffer en otro; `StreamExt::chain`
//     los encadena; `filter_map` descarta los ids ya enviados.
//   - `tokio::time::Instant::now()` y `instant.elapsed()` para el TTL.
//   - Cabeceras: `response.headers_mut().insert("x-cache", HeaderValue::from_static("HIT"))`.
//   - Códigos: `(StatusCode::CREATED, Json(event)).into_response()`.
//
// Pista 3 (casi el código del stream)
//   let live = dashboard.feed.subscribe();          // primero suscribirse, luego leer el buffer
//   let last = last_event_id(&headers);
//   let backlog = last.map(|id| dashboard.feed.since(id)).unwrap_or_default();
//   let up_to = backlog.last().map_or(last.unwrap_or(0), |e| e.id);
//   let live = BroadcastStream::new(live)
//       .filter_map(move |r| std::future::ready(r.ok().filter(|e| e.id > up_to)));
//   let events = futures_util::stream::iter(backlog)
//       .chain(live)
//       .map(|e| Ok::<_, Infallible>(to_event(&e)));
//   Sse::new(events).keep_alive(...).into_response()
