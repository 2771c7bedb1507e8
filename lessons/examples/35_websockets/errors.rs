//! Paso 5 · Errores y desconexiones: el chat del paso 4, listo para clientes reales.
//!
//! `GET /ws/robust?nick=ana&room=general` habla JSON: `{"type":"message","text":"hola"}`.
//! - Un frame malformado (no es JSON, tipo desconocido, binario, texto vacío) recibe un frame
//!   `{"type":"error",...}` y la conexión **sigue viva**: un error del cliente no la mata.
//! - Un mensaje de más de 4 KiB cierra con **1009** (demasiado grande).
//! - Cada `ping_every` el servidor manda un ping; el navegador contesta pong solo. Si no oímos
//!   nada durante `idle_timeout`, el cliente desapareció sin cerrar (wifi caída, portátil
//!   cerrado): cerramos con **1001** y lo sacamos de la sala.
//! - Si su cola se llena (no lee), cerramos con **1013** (inténtalo más tarde).
//! - Si el cliente cierra o corta la conexión, no hay nada que enviar: solo limpiar.

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use serde::Deserialize;
use tokio::time::{Instant, MissedTickBehavior};

use super::chat::{Room, WRITE_TIMEOUT, send};
use super::hub::{Membership, ServerFrame};
use super::upgrade::{Nick, TrustedOrigin};
use super::{AppState, Settings};

/// El mensaje más grande que aceptamos (el de tungstenite por defecto es de 64 MiB).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024;
/// Lo más largo que puede ser el texto de un mensaje, en caracteres.
const MAX_TEXT_CHARS: usize = 500;

// ANCHOR: close_codes
/// Los códigos de cierre que usamos (RFC 6455, sección 7.4.1).
mod close {
    /// El servidor se va o el cliente dejó de responder.
    pub const GOING_AWAY: u16 = 1001;
    /// El mensaje es demasiado grande.
    pub const TOO_BIG: u16 = 1009;
    /// Sobrecarga: vuelve a intentarlo más tarde.
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Por qué termina la conexión, y cómo despedirse.
enum Exit {
    /// El cliente cerró o la conexión se rompió: no hay a quién escribir.
    Gone,
    /// Cerramos nosotros con este código y este motivo.
    Close(u16, &'static str),
}
// ANCHOR_END: close_codes

/// Lo que puede mandar el cliente. Un tipo desconocido es un error de formato.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Message { text: String },
}

/// `GET /ws/robust?nick=ana&room=general`: además de los controles del paso 1, límites de tamaño.
pub async fn robust(
    _origin: TrustedOrigin,
    Nick(nick): Nick,
    Room(room): Room,
    State(state): State<AppState>,
    upgrade: WebSocketUpgrade,
) -> Response {
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run(socket, state, room, nick))
}

// ANCHOR: robust_loop
/// Un solo bucle: leer, escribir lo de la sala, hacer ping y vigilar el silencio.
async fn run(mut socket: WebSocket, state: AppState, room: String, nick: String) {
    let Settings {
        ping_every,
        idle_timeout,
    } = state.settings;
    let mut member = state.hub.join(&room, &nick);
    let mut pings = tokio::time::interval(ping_every);
    pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
    // El primer tick es inmediato; lo consumimos para que el primer ping salga tras `ping_every`.
    pings.tick().await;
    let mut last_heard = Instant::now();

    let exit = loop {
        let step = tokio::select! {
            incoming = socket.recv() => {
                // Cualquier frame, también un pong, demuestra que el cliente sigue ahí.
                last_heard = Instant::now();
                on_incoming(&mut socket, &member, incoming).await
            }
            Some(frame) = member.frames.recv() => write(&mut socket, Message::Text(frame)).await,
            _ = pings.tick() => write(&mut socket, Message::Ping(Default::default())).await,
            _ = tokio::time::sleep_until(last_heard + idle_timeout) => {
                Err(Exit::Close(close::GOING_AWAY, "sin respuesta a los pings: conexión cerrada"))
            }
            _ = member.kicked.cancelled() => {
                Err(Exit::Close(close::TRY_AGAIN_LATER, "no lees lo bastante rápido: reconecta"))
            }
        };
        if let Err(exit) = step {
            break exit;
        }
    };

    // Primero salimos de la sala: los demás no esperan a que este cliente lea su cierre.
    drop(member);
    if let Exit::Close(code, reason) = exit {
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
    }
}
// ANCHOR_END: robust_loop

// ANCHOR: errors
/// Un frame del cliente. Solo un fallo del transporte termina la conexión; un frame mal formado
/// se contesta con un frame de error y seguimos.
async fn on_incoming(
    socket: &mut WebSocket,
    member: &Membership,
    incoming: Option<Result<Message, axum::Error>>,
) -> Result<(), Exit> {
    let message = match incoming {
        // `None`: el cliente cerró la conexión TCP (o nos mandó Close y ya se completó).
        None => return Err(Exit::Gone),
        Some(Err(error)) if is_too_big(&error) => {
            return Err(Exit::Close(close::TOO_BIG, "mensaje de más de 4 KiB"));
        }
        // Cualquier otro error de lectura: la conexión está rota.
        Some(Err(_)) => return Err(Exit::Gone),
        Some(Ok(message)) => message,
    };
    let text = match message {
        Message::Text(text) => text,
        Message::Binary(_) => {
            return reply_error(
                socket,
                "invalid_frame",
                "solo se aceptan frames de texto JSON",
            )
            .await;
        }
        Message::Ping(_) | Message::Pong(_) => return Ok(()),
        Message::Close(_) => return Err(Exit::Gone),
    };
    match serde_json::from_str::<ClientFrame>(&text) {
        Ok(ClientFrame::Message { text }) => {
            let text = text.trim();
            if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
                return reply_error(
                    socket,
                    "invalid_message",
                    "el texto debe tener de 1 a 500 caracteres",
                )
                .await;
            }
            let (room, nick) = (&member.room, &member.nick);
            member
                .hub()
                .broadcast(room, &ServerFrame::Message { room, nick, text });
            Ok(())
        }
        Err(error) => {
            let message = format!(
                "frame no válido ({error}); ejemplo: {{\"type\":\"message\",\"text\":\"hola\"}}"
            );
            reply_error(socket, "invalid_frame", &message).await
        }
    }
}

/// Contesta SOLO a este cliente con un frame de error; la conexión sigue abierta.
async fn reply_error(socket: &mut WebSocket, code: &str, message: &str) -> Result<(), Exit> {
    let frame = ServerFrame::Error { code, message };
    write(socket, Message::Text(frame.to_text())).await
}
// ANCHOR_END: errors

/// Una escritura que falla o no termina a tiempo significa que el cliente ya no está.
async fn write(socket: &mut WebSocket, message: Message) -> Result<(), Exit> {
    send(socket, message).await.map_err(|()| Exit::Gone)
}

/// Si un error de lectura es el "mensaje demasiado grande" de tungstenite.
fn is_too_big(error: &axum::Error) -> bool {
    use std::error::Error as _;
    matches!(
        error
            .source()
            .and_then(|source| source.downcast_ref::<tungstenite::Error>()),
        Some(tungstenite::Error::Capacity(_))
    )
}
