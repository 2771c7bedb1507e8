//! Ejercicio 1 · Chat por WebSocket con salas
//!
//! Objetivo:        un chat con salas sobre WebSocket: cada cliente entra con un apodo en una
//!                  sala, recibe lo que se escribe en ella (y nada de otras), se entera de quién
//!                  entra y quién sale, y el servidor sobrevive a frames malformados, a clientes
//!                  que desaparecen sin cerrar y a clientes que no leen.
//! Tiempo estimado: 1 h 30 min.
//! Sigue a:         la práctica 35, `cargo run --example 35_websockets` (pasos 3, 4 y 5: el hub,
//!                  el chat y los errores). Reutiliza sus ideas; aquí el hub es un poco distinto.
//! Compruébalo:     cargo test -p exercises ej01
//!                  cargo run -p exercises --bin grade -- --ejercicio 1
//!                  (la primera vez compila todas las dependencias: varios minutos, unos 8 en
//!                  una máquina de 2 núcleos; después, cada vuelta tarda unos segundos).
//!
//! # El protocolo
//!
//! El cliente se conecta a `GET /ws?nick=ana&room=general` (`room` es opcional: `general`).
//! Apodo y sala se validan ANTES del upgrade (de 1 a 20 caracteres: letras, números, `-` o `_`);
//! si no valen, la respuesta es un `400 Bad Request` y no se abre ningún socket.
//!
//! Diferencias con la práctica 35, para que no te sorprendan: quien entra recibe `welcome` (con
//! la lista de miembros) y el `joined` es solo para los demás; salir es una llamada explícita a
//! `Hub::leave` (no hay un `Drop` que lo haga por ti); y para expulsar a un cliente lento no hay
//! `CancellationToken`: basta con quitarlo del hub, porque al soltar su `Sender` su cola se cierra.
//!
//! Todos los frames son de texto con JSON y un campo `type`.
//!
//! | sentido | frame | cuándo |
//! |---|---|---|
//! | cliente → servidor | `{"type":"message","text":"hola"}` | escribir en la sala |
//! | cliente → servidor | `{"type":"ping"}` | comprobar que la conexión vive |
//! | servidor → quien entra | `{"type":"welcome","room":"general","nick":"ana","members":["ana","bea"]}` | nada más entrar (miembros ordenados, él incluido) |
//! | servidor → los demás | `{"type":"joined","room":"general","nick":"bea"}` | alguien entra |
//! | servidor → los que siguen | `{"type":"left","room":"general","nick":"bea"}` | alguien sale, desaparece o es expulsado |
//! | servidor → toda la sala | `{"type":"message","room":"general","nick":"ana","text":"hola"}` | un mensaje (también a quien lo escribió) |
//! | servidor → quien hizo ping | `{"type":"pong"}` | respuesta a `ping` |
//! | servidor → quien se equivocó | `{"type":"error","code":"invalid_frame","message":"..."}` | ver reglas 7 y 8 |
//!
//! # Las reglas que se comprueban (una comprobación cada una)
//!
//! Núcleo:
//! 1. rechaza con 400 un nick inválido antes del upgrade (vacío, con espacios o `!`, de más de
//!    20 caracteres o sin `?nick=`; y también una `room` inválida).
//! 2. da la bienvenida con los miembros de la sala (`welcome`, ordenados, tú incluido).
//! 3. avisa a la sala cuando alguien entra y cuando sale (`joined` a los demás, no a quien entra;
//!    `left` a los que siguen).
//! 4. difunde cada mensaje a toda la sala, también a quien lo escribe.
//! 5. difunde solo dentro de la sala (la comprobación manda `ping` a otra sala y espera que lo
//!    primero que llegue sea su `pong`, no el mensaje ajeno).
//! 6. la conversación coincide con la de referencia (un snapshot de los frames de dos clientes).
//!
//! Calidad:
//! 7. responde a un frame malformado con un error y la conexión sigue viva (`invalid_frame` para
//!    lo que no es JSON, un `type` desconocido o un frame binario).
//! 8. rechaza un mensaje vacío o demasiado largo con invalid_message (texto vacío tras quitar
//!    espacios, o de más de [`MAX_TEXT_CHARS`] caracteres).
//! 9. un cliente que desaparece sale de la sala y los demás reciben left (se corta el TCP sin
//!    frame de cierre).
//! 10. expulsa a un cliente lento cuando su cola se llena, sin frenar la sala (cola acotada de
//!     [`QUEUE_CAPACITY`] frames; `broadcast` nunca espera; el lento sale con `left` y su cola
//!     se cierra).
//!
//! Integración:
//! 11. el hub difunde también lo que llega de fuera del WebSocket (`Hub::broadcast` desde otro
//!     código llega a los clientes de `app_with_hub`).
//! 12. diez clientes a la vez reciben cada mensaje una vez y en orden.
//!
//! Ojo: casi todas las comprobaciones usan `{"type":"ping"}` → `{"type":"pong"}` para saber que
//! no llegó nada más (lo que no llegó antes del `pong`, no llegó). Contesta el `ping` pronto, o
//! fallarán reglas que no parecen tener que ver con él.
//!
//! # Por dónde empezar
//!
//! Casi todas las comprobaciones hablan por WebSocket: hasta que una conexión entra y recibe su
//! `welcome` no pasa casi ninguna. Ve por partes, con `cargo test -p exercises ej01` tras cada una:
//! 1. `validate_name`, `ws_handler`, `Hub::join` (con `Hub::broadcast`), `Hub::members` y el
//!    principio de `handle_socket` (entrar y mandar el `welcome`) → reglas 1, 2 y 11;
//! 2. el bucle de `handle_socket`, `parse_client_frame` y `Hub::leave` → reglas 3 a 9 y 12;
//! 3. la expulsión del lento en `Hub::broadcast` → regla 10.
//!
//! Las pistas están al final del archivo.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

// Lo que usarás al resolverlo (el `allow` evita el aviso mientras aún no lo usas).
#[allow(unused_imports)]
use {
    axum::extract::ws::CloseFrame, axum::http::StatusCode, axum::response::IntoResponse,
    std::sync::atomic::Ordering, tokio::sync::mpsc::error::TrySendError,
};

/// Frames que caben en la cola de una conexión antes de considerarla lenta.
pub const QUEUE_CAPACITY: usize = 32;
/// Lo más largo que puede ser un mensaje, en caracteres.
pub const MAX_TEXT_CHARS: usize = 500;
/// Lo más que esperamos a que un cliente acepte un frame que le escribimos.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

// ANCHOR: frames
/// Lo que el servidor envía, como JSON con un campo `type` (`{"type":"joined",...}`).
/// Ya está hecho: serde se encarga del formato de la tabla de arriba.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// Solo para quien entra: su sala y quién está ya en ella (él incluido), ordenado.
    Welcome {
        room: String,
        nick: String,
        members: Vec<String>,
    },
    /// Para los demás miembros de la sala cuando alguien entra.
    Joined { room: String, nick: String },
    /// Para los que siguen en la sala cuando alguien sale (o desaparece, o es expulsado).
    Left { room: String, nick: String },
    /// Un mensaje de la sala; también le llega a quien lo escribió.
    Message {
        room: String,
        nick: String,
        text: String,
    },
    /// La respuesta a un `ping` del cliente.
    Pong,
    /// Algo que el cliente mandó no vale; la conexión sigue abierta.
    Error { code: String, message: String },
}

/// Lo que el cliente puede enviar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Message { text: String },
    Ping,
}

/// Los parámetros de `GET /ws?nick=ana&room=general`. Son `Option` a propósito: si faltan,
/// el 400 lo decides tú (con un mensaje claro), no el extractor.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectParams {
    pub nick: Option<String>,
    pub room: Option<String>,
}
// ANCHOR_END: frames

/// Un miembro de una sala, visto desde el hub: su apodo y el extremo de envío de su cola.
#[derive(Debug)]
struct Member {
    nick: String,
    queue: mpsc::Sender<ServerFrame>,
}

// ANCHOR: hub
/// Sala → sus miembros, por id de conexión.
///
/// Un `std::sync::Mutex`, no el de tokio: ninguna operación debe hacer `.await` con él cerrado.
#[derive(Debug, Default)]
pub struct Hub {
    rooms: Mutex<HashMap<String, HashMap<u64, Member>>>,
    next_id: AtomicU64,
}

/// Lo que recibe quien entra en una sala.
#[derive(Debug)]
pub struct Membership {
    /// Su id de conexión, para salir con [`Hub::leave`].
    pub id: u64,
    /// Su cola: lo que la sala le manda. Cuando el hub lo expulsa, `recv()` entrega lo que ya
    /// estaba en ella y después devuelve `None`.
    pub frames: mpsc::Receiver<ServerFrame>,
    /// Quién está en la sala al entrar, él incluido, ordenado.
    pub members: Vec<String>,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entra en `room` con `nick`: crea su cola acotada, avisa a los demás con `joined` y
    /// devuelve la cola y la lista de miembros.
    pub fn join(&self, room: &str, nick: &str) -> Membership {
        // TODO: un id nuevo (`self.next_id.fetch_add(1, Ordering::Relaxed)`), una cola con
        // `mpsc::channel(QUEUE_CAPACITY)`, guardar el `Member` en su sala, y avisar a los DEMÁS
        // con `joined` (suelta el mutex antes de difundir: `broadcast` lo vuelve a tomar).
        // Cuidado: `broadcast` escribe a TODA la sala; si difundes después de guardarte, tu
        // propia cola recibe tu `joined`. Difunde antes de guardarte, o escribe un método
        // privado que difunda saltándose un id.
        todo!("Hub::join: registra al miembro en la sala, avisa a los demás y devuelve su cola")
    }

    /// Sale de la sala (la olvida si queda vacía) y avisa a los que siguen con `left`.
    /// Salir dos veces no debe hacer nada la segunda.
    pub fn leave(&self, room: &str, id: u64) {
        // TODO: quita al miembro (si estaba), borra la sala si queda vacía y difunde `left`.
        todo!("Hub::leave: quita al miembro de la sala y avisa a los que siguen")
    }

    /// Ofrece `frame` a cada miembro de `room` sin esperar nunca (`try_send`). Un miembro con la
    /// cola llena no lee: se le expulsa (su cola se cierra) y los demás reciben su `left`.
    /// Devuelve a cuántos miembros llegó.
    pub fn broadcast(&self, room: &str, frame: &ServerFrame) -> usize {
        // TODO: recorre la sala con `try_send(frame.clone())`; apunta los ids que den
        // `TrySendError::Full` y, ya sin el mutex, sácalos con `self.leave(room, id)`.
        todo!("Hub::broadcast: ofrece el frame a cada cola con try_send y expulsa a los lentos")
    }

    /// Los apodos de `room`, ordenados (vacío si la sala no existe).
    pub fn members(&self, room: &str) -> Vec<String> {
        // TODO: lee la sala con `self.lock()` y devuelve sus apodos ordenados.
        todo!("Hub::members: devuelve los apodos de la sala, ordenados")
    }

    /// Un mutex envenenado (una tarea entró en pánico con él cerrado) sigue sirviendo.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<u64, Member>>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
// ANCHOR_END: hub

// ANCHOR: parse
/// Apodos y salas: de 1 a 20 caracteres, letras, números, `-` o `_`. `Err` dice por qué no vale.
pub fn validate_name(name: &str) -> Result<(), String> {
    // TODO: cuenta caracteres con `name.chars().count()` (no bytes) y mira cada carácter.
    todo!("validate_name: de 1 a 20 caracteres, letras, números, - o _")
}

/// Interpreta un frame de texto del cliente. `Err` trae el frame de error que hay que responder:
/// `invalid_frame` si no es JSON o no es un tipo conocido, `invalid_message` si el texto está
/// vacío (tras `trim`) o pasa de [`MAX_TEXT_CHARS`] caracteres.
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, ServerFrame> {
    // TODO: `serde_json::from_str::<ClientFrame>(text)`; si falla, `ServerFrame::Error` con
    // `code: "invalid_frame"`; si es un `Message`, valida su texto.
    todo!("parse_client_frame: JSON → ClientFrame, o el ServerFrame::Error que toca")
}
// ANCHOR_END: parse

// ANCHOR: router
/// La aplicación con un hub nuevo.
pub fn app() -> Router {
    app_with_hub(Arc::new(Hub::new()))
}

/// La aplicación sobre un hub que otra parte del programa también usa (un endpoint de avisos,
/// un job): todo lo que se difunde por él llega a los WebSockets.
pub fn app_with_hub(hub: Arc<Hub>) -> Router {
    Router::new().route("/ws", get(ws_handler)).with_state(hub)
}

/// `GET /ws?nick=ana&room=general`: apodo y sala se validan ANTES del upgrade.
pub async fn ws_handler(
    State(hub): State<Arc<Hub>>,
    Query(params): Query<ConnectParams>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // TODO: valida `nick` (obligatorio) y `room` (por defecto "general") con `validate_name`;
    // si algo falla, responde `(StatusCode::BAD_REQUEST, motivo).into_response()`. Si todo
    // vale, `upgrade.on_upgrade(move |socket| handle_socket(socket, hub, room, nick))`.
    todo!("ws_handler: valida nick y sala (400) y haz el upgrade")
}

/// La vida de una conexión: entra en la sala, manda `welcome`, atiende al socket y a su cola
/// hasta que el cliente se vaya (o el hub lo expulse) y sale de la sala.
pub async fn handle_socket(socket: WebSocket, hub: Arc<Hub>, room: String, nick: String) {
    // TODO: `hub.join`, mandar `welcome`, un bucle con `tokio::select!` (cola y socket), y al
    // salir del bucle, SIEMPRE, `hub.leave(&room, id)`.
    todo!("handle_socket: join, welcome, bucle con select! y leave al terminar")
}
// ANCHOR_END: router

/// Escribe un frame como JSON, con límite de tiempo: un cliente que no lee no retiene la tarea.
/// Ya está hecho: úsalo para todo lo que escribas al socket.
async fn send(socket: &mut WebSocket, frame: &ServerFrame) -> Result<(), ()> {
    let text = serde_json::to_string(frame).map_err(|_| ())?;
    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(()),
    }
}

// Pista 1 (la idea)
// -----------------
// El hub es el `ConnectionManager` de FastAPI con colas: cada conexión tiene un
// `mpsc::channel(QUEUE_CAPACITY)`; el hub guarda el `Sender` y la conexión el `Receiver`.
// Difundir es dejar una copia del frame en cada cola SIN esperar (`try_send`): si una cola está
// llena, ese cliente no lee, y lo echas quitándolo de la sala; al soltar su `Sender`, su
// `frames.recv()` devuelve `None` y su tarea termina (cierra con 1013, «inténtalo más tarde»).
// Una conexión que termina, como sea, llama a `hub.leave`: así los demás reciben `left` también
// cuando el cliente desaparece sin despedirse.
//
// Pista 2 (la API)
// ----------------
// - `mpsc::Sender::try_send` devuelve `Err(TrySendError::Full(_))` o `Err(TrySendError::Closed(_))`.
// - `tokio::select! { biased; f = frames.recv() => …, m = socket.recv() => … }`: con `biased`
//   se mira primero la cola, así un `pong` no adelanta a un mensaje que ya estaba en ella.
// - `socket.recv()` devuelve `Option<Result<Message, _>>`: `None`, `Err(_)` o
//   `Message::Close(_)` significan que el cliente se fue. `Message::Binary(_)` es un error
//   `invalid_frame`; `Message::Ping`/`Pong` (los del protocolo) los contesta axum solo.
// - Para cerrar con un código: `socket.send(Message::Close(Some(CloseFrame { code: 1013,
//   reason: "vas demasiado lento".into() })))`.
// - `broadcast` reparte a todos los de la sala. Para que el `joined` no le llegue a quien entra,
//   llama a `broadcast` ANTES de insertarlo (o recorre la sala saltándote su id).
// - No llames a `broadcast` (ni a `leave`) con el guard de `self.lock()` vivo: el mutex de std
//   no es reentrante y el hilo se quedaría bloqueado para siempre. Cierra un bloque `{ … }`.
//
// Pista 3 (casi el código)
// ------------------------
// Para escribir en el socket, el parámetro tiene que ser mutable: `mut socket: WebSocket`.
// ```rust
// let Membership { id, mut frames, members } = hub.join(&room, &nick);
// let welcome = ServerFrame::Welcome { room: room.clone(), nick: nick.clone(), members };
// if send(&mut socket, &welcome).await.is_ok() {
//     loop {
//         tokio::select! {
//             biased;
//             queued = frames.recv() => match queued {
//                 Some(frame) => if send(&mut socket, &frame).await.is_err() { break },
//                 None => { /* expulsado: Close 1013 */ break }
//             },
//             incoming = socket.recv() => match incoming {
//                 // `text` es un `Utf8Bytes` de axum: `.as_str()` te da el `&str`.
//                 Some(Ok(Message::Text(text))) => match parse_client_frame(text.as_str()) {
//                     Ok(ClientFrame::Message { text }) => { hub.broadcast(&room, &ServerFrame::Message { … }); }
//                     Ok(ClientFrame::Ping) => { /* send Pong */ }
//                     Err(error) => { /* send error */ }
//                 },
//                 Some(Ok(Message::Binary(_))) => { /* send invalid_frame */ }
//                 Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
//                 Some(Ok(Message::Close(_)) | Err(_)) | None => break,
//             },
//         }
//     }
// }
// hub.leave(&room, id);
// ```
