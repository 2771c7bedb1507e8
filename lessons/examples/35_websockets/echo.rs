//! Paso 2 · El eco: lo que el cliente manda, vuelve.
//!
//! Un WebSocket es una conversación en los dos sentidos sobre una sola conexión. Este bucle es
//! el `while True: data = await websocket.receive_text(); await websocket.send_text(...)` de
//! FastAPI: esperar un mensaje, contestar, repetir hasta que el cliente cierre.

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;

use super::AppState;
use super::upgrade::TrustedOrigin;

/// `GET /ws/echo`: el mismo control de `Origin` que el paso 1 y, después, el upgrade.
pub async fn echo(
    _origin: TrustedOrigin,
    State(state): State<AppState>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let idle = state.settings.idle_timeout;
    upgrade.on_upgrade(move |socket| echo_loop(socket, idle))
}

// ANCHOR: echo
/// Contesta cada mensaje hasta que el cliente cierra, se va o calla más de `idle`.
async fn echo_loop(mut socket: WebSocket, idle: std::time::Duration) {
    // Toda espera por el otro lado lleva un límite: un cliente callado no retiene la tarea.
    while let Ok(Some(Ok(message))) = tokio::time::timeout(idle, socket.recv()).await {
        let answer = match message {
            Message::Text(text) => Message::Text(format!("eco: {text}").into()),
            Message::Binary(bytes) => Message::Binary(bytes),
            // La biblioteca ya contesta los pings por nosotros; los pongs no piden respuesta.
            Message::Ping(_) | Message::Pong(_) => continue,
            // El cliente se despide: salimos, y axum completa el cierre.
            Message::Close(_) => break,
        };
        if socket.send(answer).await.is_err() {
            break;
        }
    }
}
// ANCHOR_END: echo
