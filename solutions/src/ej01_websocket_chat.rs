//! Ejercicio 1 · Chat por WebSocket con salas (solución de referencia).
//!
//! El enunciado, las reglas y las pistas están en `exercises/src/ej01_websocket_chat.rs`; aquí
//! está resuelto y comentado. Sigue la práctica 35 (`cargo run --example 35_websockets`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;

/// Frames que caben en la cola de una conexión antes de considerarla lenta.
pub const QUEUE_CAPACITY: usize = 32;
/// Lo más largo que puede ser un mensaje, en caracteres.
pub const MAX_TEXT_CHARS: usize = 500;
/// Lo más que esperamos a que un cliente acepte un frame que le escribimos.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Lo que el servidor envía, como JSON con un campo `type` (`{"type":"joined",...}`).
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

/// Los parámetros de `GET /ws?nick=ana&room=general`.
#[derive(Debug, Clone, Deserialize)]
pub struct ConnectParams {
    pub nick: Option<String>,
    pub room: Option<String>,
}

/// Un miembro de una sala, visto desde el hub: su apodo y el extremo de envío de su cola.
#[derive(Debug)]
struct Member {
    nick: String,
    queue: mpsc::Sender<ServerFrame>,
}

/// Sala → sus miembros, por id de conexión.
///
/// Un `std::sync::Mutex`, no el de tokio: ninguna operación hace `.await` con él cerrado, así que
/// nunca retiene a otra tarea más que un instante.
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
    /// Su cola: lo que la sala le manda. Devuelve `None` cuando el hub lo expulsa.
    pub frames: mpsc::Receiver<ServerFrame>,
    /// Quién está en la sala al entrar, él incluido, ordenado.
    pub members: Vec<String>,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    // ANCHOR: join
    /// Entra en `room` con `nick`: crea su cola acotada, avisa a los demás con `joined` y
    /// devuelve la cola y la lista de miembros.
    pub fn join(&self, room: &str, nick: &str) -> Membership {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, frames) = mpsc::channel(QUEUE_CAPACITY);
        let members = {
            let mut rooms = self.lock();
            let members = rooms.entry(room.to_owned()).or_default();
            members.insert(
                id,
                Member {
                    nick: nick.to_owned(),
                    queue,
                },
            );
            sorted_nicks(members)
        };
        // Avisamos con el mutex ya soltado: `broadcast` lo vuelve a tomar.
        let joined = ServerFrame::Joined {
            room: room.to_owned(),
            nick: nick.to_owned(),
        };
        self.send_to_room(room, &joined, Some(id));
        Membership {
            id,
            frames,
            members,
        }
    }
    // ANCHOR_END: join

    // ANCHOR: leave
    /// Sale de la sala (la olvida si queda vacía) y avisa a los que siguen con `left`.
    /// Salir dos veces no hace nada la segunda: así da igual quién llegue antes, la conexión al
    /// terminar o el hub al expulsarla.
    pub fn leave(&self, room: &str, id: u64) {
        let Some(nick) = self.remove(room, id) else {
            return;
        };
        let left = ServerFrame::Left {
            room: room.to_owned(),
            nick,
        };
        self.send_to_room(room, &left, None);
    }
    // ANCHOR_END: leave

    // ANCHOR: broadcast
    /// Ofrece `frame` a cada miembro de `room` sin esperar nunca (`try_send`). Un miembro con la
    /// cola llena no lee: lo expulsamos (su cola se cierra) y los demás reciben su `left`.
    /// Devuelve a cuántos miembros llegó.
    pub fn broadcast(&self, room: &str, frame: &ServerFrame) -> usize {
        self.send_to_room(room, frame, None)
    }

    /// Los apodos de `room`, ordenados (vacío si la sala no existe).
    pub fn members(&self, room: &str) -> Vec<String> {
        self.lock().get(room).map(sorted_nicks).unwrap_or_default()
    }

    /// Difunde a todos menos a `skip`, y expulsa a los lentos que encuentre por el camino.
    fn send_to_room(&self, room: &str, frame: &ServerFrame, skip: Option<u64>) -> usize {
        let mut delivered = 0;
        let mut slow = Vec::new();
        {
            let rooms = self.lock();
            let Some(members) = rooms.get(room) else {
                return 0;
            };
            for (id, member) in members {
                if Some(*id) == skip {
                    continue;
                }
                match member.queue.try_send(frame.clone()) {
                    Ok(()) => delivered += 1,
                    Err(TrySendError::Full(_)) => slow.push(*id),
                    // Su conexión ya terminó y está saliendo de la sala.
                    Err(TrySendError::Closed(_)) => {}
                }
            }
        }
        // Fuera del mutex: `leave` lo toma otra vez y su aviso puede expulsar a otro lento.
        for id in slow {
            self.leave(room, id);
        }
        delivered
    }
    // ANCHOR_END: broadcast

    /// Quita al miembro y devuelve su apodo; al soltar su `Sender`, su cola se cierra.
    fn remove(&self, room: &str, id: u64) -> Option<String> {
        let mut rooms = self.lock();
        let members = rooms.get_mut(room)?;
        let gone = members.remove(&id)?;
        if members.is_empty() {
            rooms.remove(room);
        }
        Some(gone.nick)
    }

    /// Un mutex envenenado (una tarea entró en pánico con él cerrado) sigue sirviendo: cada
    /// operación cambia el mapa de una vez, nunca lo deja a medias.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<u64, Member>>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn sorted_nicks(members: &HashMap<u64, Member>) -> Vec<String> {
    let mut nicks: Vec<String> = members.values().map(|m| m.nick.clone()).collect();
    nicks.sort();
    nicks
}

/// Apodos y salas: de 1 a 20 caracteres, letras, números, `-` o `_`.
pub fn validate_name(name: &str) -> Result<(), String> {
    let chars = name.chars().count();
    if !(1..=20).contains(&chars) {
        return Err(format!("«{name}» debe tener de 1 a 20 caracteres"));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(format!("«{name}» tiene un carácter no permitido: «{bad}»"));
    }
    Ok(())
}

/// Interpreta un frame de texto del cliente. `Err` trae el frame de error que hay que responder:
/// `invalid_frame` si no es JSON o no es un tipo conocido, `invalid_message` si el texto está
/// vacío o pasa de [`MAX_TEXT_CHARS`].
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, ServerFrame> {
    let frame: ClientFrame = serde_json::from_str(text).map_err(|error| {
        error_frame(
            "invalid_frame",
            format!("se esperaba {{\"type\":\"message\",\"text\":\"...\"}} o {{\"type\":\"ping\"}}: {error}"),
        )
    })?;
    if let ClientFrame::Message { text } = &frame {
        let chars = text.trim().chars().count();
        if chars == 0 || chars > MAX_TEXT_CHARS {
            return Err(error_frame(
                "invalid_message",
                format!("el texto debe tener de 1 a {MAX_TEXT_CHARS} caracteres"),
            ));
        }
    }
    Ok(frame)
}

fn error_frame(code: &str, message: String) -> ServerFrame {
    ServerFrame::Error {
        code: code.to_owned(),
        message,
    }
}

/// La aplicación con un hub nuevo.
pub fn app() -> Router {
    app_with_hub(Arc::new(Hub::new()))
}

/// La aplicación sobre un hub que otra parte del programa también usa (un endpoint de avisos,
/// un job): todo lo que se difunde por él llega a los WebSockets.
pub fn app_with_hub(hub: Arc<Hub>) -> Router {
    Router::new().route("/ws", get(ws_handler)).with_state(hub)
}

// ANCHOR: ws_handler
/// `GET /ws?nick=ana&room=general`: apodo y sala se validan ANTES del upgrade. Después del 101
/// ya no hay códigos de estado; un 400 ahora es lo más claro para el cliente.
pub async fn ws_handler(
    State(hub): State<Arc<Hub>>,
    Query(params): Query<ConnectParams>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let nick = params.nick.unwrap_or_default();
    let room = params.room.unwrap_or_else(|| "general".to_owned());
    if let Err(reason) = validate_name(&nick).and_then(|()| validate_name(&room)) {
        return (StatusCode::BAD_REQUEST, reason).into_response();
    }
    upgrade
        // Un mensaje legal ocupa como mucho unos KiB: no hace falta aceptar los 64 MiB por defecto.
        .max_message_size(64 * 1024)
        .on_upgrade(move |socket| handle_socket(socket, hub, room, nick))
}
// ANCHOR_END: ws_handler

// ANCHOR: handle_socket
/// La vida de una conexión: entra en la sala, atiende al socket y a su cola, y sale.
pub async fn handle_socket(mut socket: WebSocket, hub: Arc<Hub>, room: String, nick: String) {
    let Membership {
        id,
        mut frames,
        members,
    } = hub.join(&room, &nick);
    let welcome = ServerFrame::Welcome {
        room: room.clone(),
        nick: nick.clone(),
        members,
    };
    if send(&mut socket, &welcome).await.is_ok() {
        serve(&mut socket, &hub, &room, &nick, &mut frames).await;
    }
    // Acabe como acabe (cierre, corte, expulsión), salimos y los demás reciben `left`.
    hub.leave(&room, id);
}
// ANCHOR_END: handle_socket

// ANCHOR: serve
/// Una sola tarea hace dos cosas a la vez con `select!`: vaciar la cola y leer del socket.
async fn serve(
    socket: &mut WebSocket,
    hub: &Hub,
    room: &str,
    nick: &str,
    frames: &mut mpsc::Receiver<ServerFrame>,
) {
    loop {
        tokio::select! {
            // `biased`: primero lo que ya está en la cola, así un `pong` nunca adelanta a un
            // mensaje de la sala que llegó antes que el `ping`.
            biased;
            queued = frames.recv() => match queued {
                Some(frame) => {
                    if send(socket, &frame).await.is_err() {
                        return;
                    }
                }
                // El hub soltó nuestra cola: estaba llena. 1013 = «inténtalo más tarde».
                None => {
                    let close = CloseFrame { code: 1013, reason: "vas demasiado lento".into() };
                    let _ = tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Close(Some(close)))).await;
                    return;
                }
            },
            incoming = socket.recv() => {
                let reply = match incoming {
                    Some(Ok(Message::Text(text))) => match parse_client_frame(text.as_str()) {
                        Ok(ClientFrame::Message { text }) => {
                            let message = ServerFrame::Message {
                                room: room.to_owned(),
                                nick: nick.to_owned(),
                                text,
                            };
                            hub.broadcast(room, &message);
                            None
                        }
                        Ok(ClientFrame::Ping) => Some(ServerFrame::Pong),
                        Err(error) => Some(error),
                    },
                    Some(Ok(Message::Binary(_))) => Some(error_frame(
                        "invalid_frame",
                        "este chat solo entiende frames de texto con JSON".to_owned(),
                    )),
                    // axum contesta los pings de protocolo por nosotros.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                    // Cerró, o la conexión se cortó sin despedirse: terminamos.
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return,
                };
                if let Some(reply) = reply {
                    if send(socket, &reply).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}
// ANCHOR_END: serve

/// Escribe un frame como JSON, con límite de tiempo: un cliente que no lee no retiene la tarea.
async fn send(socket: &mut WebSocket, frame: &ServerFrame) -> Result<(), ()> {
    let text = serde_json::to_string(frame).map_err(|_| ())?;
    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(()),
    }
}
