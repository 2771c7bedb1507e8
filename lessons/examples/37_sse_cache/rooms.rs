//! Los datos de la lección: tres salas, los mensajes que se publican en ellas y el resumen de
//! una sala, que calculamos con una consulta lenta a propósito (como una consulta SQL pesada).
//! Publicar es la escritura que invalida la caché; el resumen es la lectura que se cachea.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::AppState;
use super::cache::X_CACHE;
use super::live::Message;

/// Las salas que existen.
pub const ROOMS: [&str; 3] = ["general", "rust", "python"];
/// Límites de lo que se publica (en caracteres).
const MAX_USER: usize = 32;
const MAX_TEXT: usize = 500;

/// La sala de ese nombre, si existe.
pub fn known(room: &str) -> Option<&'static str> {
    ROOMS.iter().copied().find(|known| *known == room)
}

/// La clave del resumen de una sala en la caché.
pub fn summary_key(room: &str) -> String {
    format!("summary:{room}")
}

/// Las cifras de cada sala: lo que la consulta lenta lee.
#[derive(Default)]
pub struct Rooms {
    stats: Mutex<HashMap<&'static str, RoomStats>>,
}

#[derive(Debug, Default, Clone, Serialize)]
struct RoomStats {
    messages: u64,
    last_message: Option<LastMessage>,
}

#[derive(Debug, Clone, Serialize)]
struct LastMessage {
    id: u64,
    user: String,
    text: String,
}

impl Rooms {
    fn record(&self, room: &'static str, id: u64, user: &str, text: &str) {
        let mut stats = self.stats();
        let entry = stats.entry(room).or_default();
        entry.messages += 1;
        entry.last_message = Some(LastMessage {
            id,
            user: user.to_owned(),
            text: text.to_owned(),
        });
    }

    fn get(&self, room: &str) -> RoomStats {
        self.stats().get(room).cloned().unwrap_or_default()
    }

    fn stats(&self) -> MutexGuard<'_, HashMap<&'static str, RoomStats>> {
        self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// El cuerpo de `POST /api/messages`.
#[derive(Debug, Deserialize)]
pub struct NewMessage {
    room: String,
    user: String,
    text: String,
}

/// `POST /api/messages` `{"room","user","text"}`: publica un mensaje (201 `{"id"}`).
pub async fn publish(
    State(state): State<AppState>,
    body: Result<Json<NewMessage>, JsonRejection>,
) -> Response {
    let Ok(Json(new)) = body else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "envía JSON con room, user y text",
        );
    };
    let Some(room) = known(&new.room) else {
        return error(StatusCode::NOT_FOUND, "esa sala no existe");
    };
    let (user, text) = (new.user.trim(), new.text.trim());
    if user.is_empty() || user.chars().count() > MAX_USER {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "user debe tener entre 1 y 32 caracteres",
        );
    }
    if text.is_empty() || text.chars().count() > MAX_TEXT {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "text debe tener entre 1 y 500 caracteres",
        );
    }
    let id = publish_message(&state, room, user, text).await;
    (StatusCode::CREATED, Json(json!({ "id": id }))).into_response()
}

// ANCHOR: invalidate
/// La escritura: el mensaje entra en el flujo en vivo y en las cifras de su sala. Después,
/// y solo después de escribir, borramos el resumen cacheado: la próxima lectura es un MISS.
pub async fn publish_message(state: &AppState, room: &'static str, user: &str, text: &str) -> u64 {
    let id = state.feed.publish(&Message { room, user, text });
    state.rooms.record(room, id, user, text);
    state.cache.invalidate(&summary_key(room)).await;
    id
}
// ANCHOR_END: invalidate

/// `?cache=no` salta la caché (para comparar en la página).
#[derive(Debug, Deserialize)]
pub struct SummaryQuery {
    cache: Option<String>,
}

// ANCHOR: cached_route
/// `GET /api/rooms/{room}/summary`: el resumen de una sala, a través de la caché. La
/// cabecera `X-Cache` dice si vino de la caché (`HIT`) o se calculó ahora (`MISS`).
pub async fn summary(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Query(options): Query<SummaryQuery>,
) -> Response {
    let Some(room) = known(&room) else {
        return error(StatusCode::NOT_FOUND, "esa sala no existe");
    };
    let json = (header::CONTENT_TYPE, "application/json");
    if options.cache.as_deref() == Some("no") {
        return ([json], query(&state, room).await).into_response();
    }
    let (body, status) = state
        .cache
        .get_or_compute(&summary_key(room), || query(&state, room))
        .await;
    let x_cache = (HeaderName::from_static(X_CACHE), status.as_str());
    ([json, x_cache], body).into_response()
}
// ANCHOR_END: cached_route

/// La consulta lenta: tarda `query_cost` (o, en los tests, hasta que se abre la compuerta) y
/// cuenta cada ejecución en `queries`, que es justo lo que la caché debe ahorrar.
pub async fn query(state: &AppState, room: &str) -> Bytes {
    state.queries.send_modify(|count| *count += 1);
    let started = std::time::Instant::now();
    match &state.settings.query_gate {
        Some(gate) => {
            let mut gate = gate.clone();
            // Si el test soltó la compuerta (la cerró), seguimos sin esperar.
            let _ = gate.wait_for(|open| *open).await;
        }
        None => tokio::time::sleep(state.settings.query_cost).await,
    }
    let stats = state.rooms.get(room);
    let body = json!({
        "room": room,
        "messages": stats.messages,
        "last_message": stats.last_message,
        "computed_at": chrono::Utc::now().to_rfc3339(),
        "query_ms": started.elapsed().as_millis() as u64,
    });
    Bytes::from(body.to_string())
}

/// Un error en JSON: `{"error": "..."}`.
fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
