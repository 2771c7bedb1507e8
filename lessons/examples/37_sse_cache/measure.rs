//! Paso 4 · Optimización de performance, medida: `POST /api/measure?n=N&room=general`.
//!
//! El programa hace N lecturas del resumen sin caché y N con caché (empezando con la caché
//! vacía: la primera es un MISS y el resto HIT) y devuelve los tiempos que midió. La página no
//! trae ningún número escrito: los que ves los acaba de medir este proceso. Se mide la parte que
//! cambia (la consulta frente a la caché), sin la red; la página mide además, desde el
//! navegador, el viaje completo por HTTP.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::cache::CacheStatus;
use super::rooms::{self, query, summary_key};

/// Lecturas por defecto y como mucho (sin caché, cada una tarda lo que la consulta lenta).
const DEFAULT_N: u32 = 10;
const MAX_N: u32 = 50;

#[derive(Debug, Deserialize)]
pub struct MeasureQuery {
    n: Option<u32>,
    room: Option<String>,
}

// ANCHOR: measure
/// Mide N lecturas sin caché y N con caché, y devuelve los tiempos medidos.
pub async fn measure(
    State(state): State<AppState>,
    Query(options): Query<MeasureQuery>,
) -> Response {
    let n = options.n.unwrap_or(DEFAULT_N);
    if !(1..=MAX_N).contains(&n) {
        let error = json!({ "error": format!("n debe estar entre 1 y {MAX_N}") });
        return (StatusCode::UNPROCESSABLE_ENTITY, Json(error)).into_response();
    }
    let Some(room) = rooms::known(options.room.as_deref().unwrap_or("general")) else {
        let error = json!({ "error": "esa sala no existe" });
        return (StatusCode::NOT_FOUND, Json(error)).into_response();
    };
    // Antes: cada lectura ejecuta la consulta.
    let mut without_cache = Vec::new();
    for _ in 0..n {
        let started = Instant::now();
        query(&state, room).await;
        without_cache.push(started.elapsed());
    }
    // Después: la misma lectura a través de la caché, empezando vacía.
    let key = summary_key(room);
    state.cache.invalidate(&key).await;
    let (mut with_cache, mut hits, mut misses) = (Vec::new(), 0, 0);
    for _ in 0..n {
        let started = Instant::now();
        let (_, status) = state
            .cache
            .get_or_compute(&key, || query(&state, room))
            .await;
        with_cache.push(started.elapsed());
        match status {
            CacheStatus::Hit => hits += 1,
            CacheStatus::Miss => misses += 1,
        }
    }
    let (before, after) = (summary(&without_cache), summary(&with_cache));
    let speedup = total(&without_cache).as_secs_f64() / total(&with_cache).as_secs_f64().max(1e-9);
    Json(json!({
        "n": n,
        "room": room,
        "backend": state.cache.status()["backend"],
        "without_cache": before,
        "with_cache": { "hits": hits, "misses": misses, "times": after },
        "speedup": (speedup * 10.0).round() / 10.0,
    }))
    .into_response()
}
// ANCHOR_END: measure

fn total(times: &[Duration]) -> Duration {
    times.iter().sum()
}

/// Total, media, mínimo y máximo en milisegundos (con cuatro decimales: un HIT en memoria
/// tarda menos de un microsegundo).
fn summary(times: &[Duration]) -> Value {
    let ms = |duration: Duration| (duration.as_secs_f64() * 10_000_000.0).round() / 10_000.0;
    let count = times.len().max(1) as u32;
    json!({
        "total_ms": ms(total(times)),
        "mean_ms": ms(total(times) / count),
        "min_ms": ms(times.iter().copied().min().unwrap_or_default()),
        "max_ms": ms(times.iter().copied().max().unwrap_or_default()),
    })
}
