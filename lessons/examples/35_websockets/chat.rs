//! Paso 4 · Un chat básico sobre el hub.
//!
//! `GET /ws/chat?nick=ana&room=general`: cada frame de texto que mandas es un mensaje para tu
//! sala. Una sola tarea por conexión hace dos cosas a la vez con `select!`: leer lo que llega del
//! socket y escribir lo que la sala deja en su cola. Entrar y salir avisa a la sala (`joined`,
//! `left`), y salir ocurre siempre, porque lo hace el `Drop` de `Membership`.
//!
//! Lo que le falta (y añade el paso 5): validar los frames, pings para detectar clientes que
//! desaparecen sin cerrar, límites de tamaño y códigos de cierre que expliquen qué pasó.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::Response;
use serde::Deserialize;

use super::AppState;
use super::hub::{Hub, ServerFrame};
use super::upgrade::{Nick, TrustedOrigin, is_valid_name};

/// Sin pings no sabemos si un cliente callado sigue ahí: pasado este tiempo, lo cerramos.
const BASIC_IDLE: Duration = Duration::from_secs(300);
/// Lo más que esperamos a que un cliente acepte lo que le escribimos.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Deserialize)]
struct RoomQuery {
    room: Option<String>,
}

/// La sala de `?room=` (o `general`), otro extractor: si no es válida, 400 y no hay upgrade.
pub struct Room(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Room {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let room = Query::<RoomQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|Query(query)| query.room)
            .unwrap_or_else(|| "general".into());
        if is_valid_name(&room) {
            Ok(Self(room))
        } else {
            Err((
                StatusCode::BAD_REQUEST,
                "sala no válida (de 1 a 20 letras, números, - o _)",
            ))
        }
    }
}

/// `GET /ws/chat?nick=ana&room=general`: Origin, apodo y sala se comprueban antes del upgrade.
pub async fn chat(
    _origin: TrustedOrigin,
    Nick(nick): Nick,
    Room(room): Room,
    State(state): State<AppState>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| run(socket, state.hub, room, nick))
}

// ANCHOR: chat
/// La vida de una conexión del chat, de la entrada en la sala a la salida.
async fn run(mut socket: WebSocket, hub: std::sync::Arc<Hub>, room: String, nick: String) {
    // Entrar avisa a la sala; `member` nos saca de ella al soltarse, acabe como acabe.
    let mut member = hub.join(&room, &nick);
    loop {
        tokio::select! {
            // Lo que escribe nuestro cliente: un frame de texto es un mensaje para la sala.
            incoming = tokio::time::timeout(BASIC_IDLE, socket.recv()) => match incoming {
                Ok(Some(Ok(Message::Text(text)))) => {
                    let frame = ServerFrame::Message { room: &room, nick: &nick, text: text.as_str() };
                    hub.broadcast(&room, &frame);
                }
                // Binario, ping, pong: este chat básico los ignora.
                Ok(Some(Ok(Message::Binary(_) | Message::Ping(_) | Message::Pong(_)))) => {}
                // Cerró, se cortó la conexión o calló demasiado: terminamos.
                Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) | Err(_) => break,
            },
            // Lo que la sala dejó en nuestra cola, ya serializado: se escribe tal cual.
            Some(frame) = member.frames.recv() => {
                if send(&mut socket, Message::Text(frame)).await.is_err() {
                    break;
                }
            }
            // El hub nos echó porque la cola se llenó.
            _ = member.kicked.cancelled() => break,
        }
    }
    // Aquí se suelta `member`: salimos de la sala y los demás reciben `left`.
}
// ANCHOR_END: chat

/// Escribe un mensaje con límite de tiempo: un cliente que no lee no retiene la tarea.
pub async fn send(socket: &mut WebSocket, message: Message) -> Result<(), ()> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(()),
    }
}
