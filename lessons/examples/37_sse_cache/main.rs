//! Práctica 37 · Server-Sent Events y caching
//!
//! Ejecuta con:   cargo run --example 37_sse_cache
//!                (con Redis: REDIS_URL=redis://127.0.0.1:6379 cargo run --example 37_sse_cache)
//! Abre:          http://localhost:3037
//! Verás:         una página con cuatro pasos que puedes probar: un flujo SSE en vivo con `id:`
//!                que se reanuda con `Last-Event-ID` tras un corte, una exportación NDJSON de un
//!                millón de filas que llega línea a línea, una caché (Redis o en el proceso) que
//!                responde `X-Cache: HIT` o `MISS` y aguanta una estampida, y una medición del
//!                antes y el después de la caché hecha cuando pulsas el botón.
//! En FastAPI:    EventSourceResponse (sse-starlette) y StreamingResponse; la caché con
//!                redis.asyncio + un decorador de cache-aside (semana 10, versión Python)
//! En el proyecto final: project/src/dashboard/sse.rs, project/src/cache/mod.rs,
//!                project/src/cache/memory.rs, project/src/cache/redis.rs
//! Después:       el ejercicio 3, exercises/src/ej03_dashboard_live.rs (cargo test -p exercises ej03)
//!
//! Un archivo por paso, en el orden de la página:
//! - `live.rs`: paso 1, SSE con ids, keep-alive en su propio reloj y reanudación;
//! - `export.rs`: paso 2, una respuesta grande en streaming (NDJSON);
//! - `cache.rs`: paso 3, cache-aside con TTL, invalidación, `X-Cache` y protección de estampida;
//! - `rooms.rs`: los datos que cacheamos (salas, mensajes y una consulta lenta a propósito);
//! - `measure.rs`: paso 4, el antes y el después de la caché, medido por el programa.

pub mod cache;
pub mod export;
pub mod live;
pub mod measure;
pub mod rooms;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::watch;

/// Los ajustes de la lección. `from_env` da los de clase; los tests acortan los tiempos.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Redis para la caché; sin ella, la caché vive en este proceso.
    pub redis_url: Option<String>,
    /// Prefijo de las claves en Redis (los tests usan uno propio cada uno).
    pub redis_prefix: String,
    /// Cada cuánto manda el flujo SSE un comentario `: keep-alive`, pase lo que pase.
    pub keep_alive: Duration,
    /// Cada cuánto manda el flujo SSE un evento `stats` con las cifras del servidor.
    pub stats_every: Duration,
    /// Cuántos mensajes recuerda el flujo para reanudar con `Last-Event-ID`.
    pub replay_capacity: usize,
    /// Cuánto vive una respuesta en la caché.
    pub cache_ttl: Duration,
    /// Lo que tarda la consulta lenta que la caché evita.
    pub query_cost: Duration,
    /// Solo para los tests: la consulta lenta espera a que esto valga `true` (en vez de a un
    /// reloj), así un test decide cuándo termina y puede juntar muchas peticiones a la vez.
    pub query_gate: Option<watch::Receiver<bool>>,
}

impl Settings {
    /// Los ajustes de clase: `REDIS_URL` si está definida; el resto, valores fijos.
    pub fn from_env() -> Self {
        Self {
            redis_url: std::env::var("REDIS_URL")
                .ok()
                .filter(|url| !url.is_empty()),
            redis_prefix: "leccion37".into(),
            keep_alive: Duration::from_secs(15),
            stats_every: Duration::from_secs(2),
            replay_capacity: 100,
            cache_ttl: Duration::from_secs(30),
            query_cost: Duration::from_millis(150),
            query_gate: None,
        }
    }
}

/// Lo que comparten todos los handlers. Barato de clonar: todo son `Arc` o manejadores.
#[derive(Clone)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub feed: live::Feed,
    pub cache: cache::Cache,
    pub rooms: Arc<rooms::Rooms>,
    pub export: Arc<export::ExportCounters>,
    /// Cuántas veces se ha ejecutado la consulta lenta (lo que la caché debe ahorrar). Un
    /// `watch`: además de leerlo, se puede esperar a que cambie.
    pub queries: Arc<watch::Sender<u64>>,
}

impl AppState {
    /// Conecta la caché (Redis o memoria) y prepara el flujo y las salas.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let cache = match &settings.redis_url {
            Some(url) => {
                cache::Cache::redis(url, &settings.redis_prefix, settings.cache_ttl).await?
            }
            None => cache::Cache::in_memory(settings.cache_ttl),
        };
        Ok(Self {
            feed: live::Feed::new(settings.replay_capacity),
            cache,
            rooms: Arc::new(rooms::Rooms::default()),
            export: Arc::default(),
            queries: Arc::new(watch::Sender::new(0)),
            settings: Arc::new(settings),
        })
    }

    /// Cuántas veces se ha ejecutado la consulta lenta.
    pub fn query_count(&self) -> u64 {
        *self.queries.borrow()
    }

    /// Las cifras del servidor: las manda el evento `stats` y las devuelve `GET /api/status`.
    pub fn status(&self) -> Value {
        json!({
            "sse_clients": self.feed.subscribers(),
            "last_event_id": self.feed.last_id(),
            "cache": self.cache.status(),
            "queries": self.query_count(),
            "exported_rows": self.export.rows.load(Ordering::Relaxed),
            "exports_running": self.export.running.load(Ordering::Relaxed),
        })
    }
}

/// La aplicación con los ajustes de clase.
pub async fn app() -> anyhow::Result<Router> {
    Ok(router(AppState::build(Settings::from_env()).await?))
}

// ANCHOR: router
/// Una ruta (o dos) por paso.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/api/status", get(status))
        // Paso 1: el flujo en vivo, publicar un mensaje y cortar las conexiones.
        .route("/events", get(live::events))
        .route("/api/messages", post(rooms::publish))
        .route("/api/cut", post(live::cut))
        // Paso 2: la exportación en streaming.
        .route("/api/export.ndjson", get(export::export))
        // Paso 3: el resumen de una sala, a través de la caché.
        .route("/api/rooms/{room}/summary", get(rooms::summary))
        // Paso 4: la medición.
        .route("/api/measure", post(measure::measure))
        .with_state(state)
}
// ANCHOR_END: router

/// `GET /api/status`: las cifras del servidor en este momento.
async fn status(State(state): State<AppState>) -> Json<Value> {
    Json(state.status())
}

/// La página: los pasos, qué probar en cada uno y un cliente en JavaScript para cada ruta.
async fn index(State(state): State<AppState>) -> Html<String> {
    // La página dice qué caché está en uso y cómo mirarla con redis-cli.
    let backend = match state.settings.redis_url {
        Some(_) => format!(
            "<p>La caché está en <strong>Redis</strong>. Mírala con \
             <code>redis-cli --scan --pattern '{0}:*'</code> y \
             <code>redis-cli TTL {0}:summary:general</code>.</p>",
            state.settings.redis_prefix
        ),
        None => {
            "<p>La caché está <strong>en este proceso</strong> (no hay <code>REDIS_URL</code>). \
                 Arranca con <code>REDIS_URL=redis://127.0.0.1:6379</code> para usar Redis.</p>"
                .to_owned()
        }
    };
    // Los tiempos y tamaños que cita la página salen de los ajustes, no de un texto fijo.
    let settings = &state.settings;
    let body = include_str!("page.html")
        .replace("{{cache_backend}}", &backend)
        .replace("{{stats_s}}", &seconds(settings.stats_every))
        .replace("{{keep_alive_s}}", &seconds(settings.keep_alive))
        .replace("{{ttl_s}}", &seconds(settings.cache_ttl))
        .replace("{{query_ms}}", &settings.query_cost.as_millis().to_string())
        .replace("{{replay}}", &settings.replay_capacity.to_string());
    lessons::page("Práctica 37 · Server-Sent Events y caching", &body)
}

/// Segundos, con decimales solo si hacen falta (`2`, `0.5`).
fn seconds(duration: Duration) -> String {
    duration.as_secs_f64().to_string()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lessons::run(
        "Práctica 37 · Server-Sent Events y caching",
        3037,
        app().await?,
    )
    .await
}

// Dónde vive esto en el proyecto final:
// - El flujo SSE con ids, `gap`, keep-alive en su propio reloj y reanudación con
//   `Last-Event-ID`: project/src/dashboard/sse.rs (el registro de actividad que se reanuda está
//   en project/src/dashboard/journal.rs, y en Redis en project/src/dashboard/redis_journal.rs).
// - La caché de `GET /rooms` y `GET /admin/stats`: project/src/cache/mod.rs (cache-aside,
//   `X-Cache`, invalidación por generación), project/src/cache/memory.rs (moka, en el proceso),
//   project/src/cache/redis.rs y project/src/cache/flight.rs (estampida en un nodo y entre
//   nodos, con un candado `SET NX PX` en Redis).
