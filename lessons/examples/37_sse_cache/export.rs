//! Paso 2 · Streaming de una respuesta grande: `GET /api/export.ndjson?rows=N`.
//!
//! NDJSON es un JSON por línea. La respuesta no se construye entera en memoria: es un `Stream`
//! de trozos que se genera a medida que el cliente lee. hyper pide el siguiente trozo solo
//! cuando el socket puede enviarlo, así que un cliente lento frena la producción (a eso se le
//! llama contrapresión, *backpressure*) y la memoria usada no depende de `rows`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::rooms::ROOMS;

/// Filas por defecto y como mucho.
const DEFAULT_ROWS: u64 = 100_000;
const MAX_ROWS: u64 = 5_000_000;
/// Filas por trozo: un trozo por fila sería lento; todas en uno, volver a tenerlo todo en memoria.
const ROWS_PER_CHUNK: u64 = 256;

/// Lo que la página enseña de las exportaciones.
#[derive(Debug, Default)]
pub struct ExportCounters {
    /// Filas generadas desde que arrancó el servidor.
    pub rows: AtomicU64,
    /// Exportaciones en curso ahora mismo.
    pub running: AtomicU64,
}

#[derive(Debug, Deserialize)]
pub struct ExportQuery {
    rows: Option<u64>,
}

/// Una fila: un mensaje histórico inventado a partir de su número (no hace falta guardarlo).
#[derive(Debug, Serialize)]
struct Row<'a> {
    id: u64,
    room: &'a str,
    user: String,
    text: String,
}

impl Row<'_> {
    fn number(n: u64) -> Self {
        Self {
            id: n,
            room: ROOMS[(n % ROOMS.len() as u64) as usize],
            user: format!("usuario{}", n % 97),
            text: format!("mensaje histórico número {n}"),
        }
    }
}

// ANCHOR: ndjson
/// `GET /api/export.ndjson?rows=N`: N filas, producidas trozo a trozo mientras se leen.
pub async fn export(State(state): State<AppState>, Query(query): Query<ExportQuery>) -> Response {
    let rows = query.rows.unwrap_or(DEFAULT_ROWS);
    if rows > MAX_ROWS {
        let message = format!("rows debe ser como mucho {MAX_ROWS}");
        return (StatusCode::UNPROCESSABLE_ENTITY, message).into_response();
    }
    let progress = Progress::start(state.export.clone());
    // El estado del stream: la siguiente fila y el contador. Nada más vive en memoria.
    let chunks = futures_util::stream::unfold((1, progress), move |(next, progress)| async move {
        if next > rows {
            return None;
        }
        let last = (next + ROWS_PER_CHUNK - 1).min(rows);
        let mut chunk = Vec::with_capacity(100 * ROWS_PER_CHUNK as usize);
        for n in next..=last {
            // Escribir una fila en un `Vec` no puede fallar.
            let _ = serde_json::to_writer(&mut chunk, &Row::number(n));
            chunk.push(b'\n');
        }
        progress.produced(last - next + 1);
        Some((
            Ok::<_, Infallible>(Bytes::from(chunk)),
            (last + 1, progress),
        ))
    });
    // Sin `Content-Length`: hyper manda la respuesta por trozos (`Transfer-Encoding: chunked`).
    let headers = [(header::CONTENT_TYPE, "application/x-ndjson")];
    (headers, Body::from_stream(chunks)).into_response()
}
// ANCHOR_END: ndjson

/// Cuenta una exportación en curso mientras vive (termine o la corte el cliente).
struct Progress(Arc<ExportCounters>);

impl Progress {
    fn start(counters: Arc<ExportCounters>) -> Self {
        counters.running.fetch_add(1, Ordering::Relaxed);
        Self(counters)
    }

    fn produced(&self, rows: u64) {
        self.0.rows.fetch_add(rows, Ordering::Relaxed);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}
