//! Práctica 35 · WebSockets y tiempo real
//!
//! Ejecuta con:   cargo run --example 35_websockets
//! Abre:          http://localhost:3035
//! Verás:         una página con cinco pasos que puedes probar: el upgrade (y sus rechazos 401 y
//!                403 antes de abrir el socket), un eco, un gestor de conexiones con salas, un
//!                chat básico y un chat que sobrevive a frames malformados, clientes que
//!                desaparecen y pings. Abre dos pestañas: lo que escribes en una aparece en la otra.
//! En FastAPI:    @app.websocket("/ws") + ConnectionManager (semana 10, versión Python)
//! En el proyecto final: project/src/ws/mod.rs, project/src/ws/hub.rs, project/src/ws/connection.rs
//! Después:       el ejercicio 1, exercises/src/ej01_websocket_chat.rs (cargo test -p exercises ej01)
//!
//! Un archivo por paso, en el orden de la página:
//! - `upgrade.rs`: paso 1, comprobar Origin y apodo ANTES del upgrade;
//! - `echo.rs`: paso 2, el eco;
//! - `hub.rs`: paso 3, el gestor de conexiones con salas (el `Hub`);
//! - `chat.rs`: paso 4, un chat básico sobre el hub;
//! - `errors.rs`: paso 5, errores y desconexiones (códigos de cierre, pings, frames malformados).

mod chat;
mod echo;
mod errors;
mod hub;
mod upgrade;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::HeaderMap;
use axum::http::header::HOST;
use axum::response::Html;
use axum::routing::{get, post};

/// Los tiempos del paso 5. Los tests los acortan para no esperar segundos.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Cada cuánto el servidor manda un ping a cada cliente del chat robusto.
    pub ping_every: Duration,
    /// Sin oír nada del cliente (ni un pong) durante este tiempo, lo damos por desaparecido.
    pub idle_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            ping_every: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

/// Lo que comparten todos los handlers: el hub de salas y los tiempos.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<hub::Hub>,
    pub settings: Settings,
}

/// La aplicación con los tiempos por defecto.
pub fn app() -> Router {
    app_with(Settings::default())
}

// ANCHOR: router
/// Una ruta (o dos) por paso; el estado compartido es solo el hub.
pub fn app_with(settings: Settings) -> Router {
    let state = AppState {
        hub: Arc::new(hub::Hub::default()),
        settings,
    };
    Router::new()
        .route("/", get(index))
        .route("/ws/hello", get(upgrade::hello))
        .route("/ws/echo", get(echo::echo))
        .route("/rooms", get(hub::rooms))
        .route("/rooms/{room}/announce", post(hub::announce))
        .route("/ws/chat", get(chat::chat))
        .route("/ws/robust", get(errors::robust))
        .with_state(state)
}
// ANCHOR_END: router

/// La página: los pasos, qué probar en cada uno y un cliente en JavaScript para cada ruta.
/// Los comandos de ejemplo llevan la dirección con la que abriste la página.
async fn index(headers: HeaderMap) -> Html<String> {
    let host = headers
        .get(HOST)
        .and_then(|host| host.to_str().ok())
        .filter(|host| {
            host.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".:-[]".contains(c))
        })
        .unwrap_or("localhost:3035");
    let body = include_str!("page.html").replace("{{host}}", host);
    lessons::page("Práctica 35 · WebSockets y tiempo real", &body)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    lessons::run("Práctica 35 · WebSockets y tiempo real", 3035, app()).await
}

// Dónde vive esto en el proyecto final:
// - el upgrade con Origin (403) y token (401): project/src/ws/mod.rs y project/src/ws/origin.rs;
// - el hub con colas acotadas y frames serializados una vez: project/src/ws/hub.rs;
// - el bucle de una conexión (pings, silencio, 1009, 1013, frames de error):
//   project/src/ws/connection.rs, con los frames en project/src/ws/protocol.rs.
