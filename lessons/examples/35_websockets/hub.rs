//! Paso 3 · Un gestor de conexiones con salas: el `ConnectionManager` de FastAPI, con dos
//! diferencias que importan cuando hay muchos clientes.
//!
//! 1. Cada conexión tiene su **cola acotada** (`mpsc::channel(QUEUE)`). Difundir un mensaje es
//!    dejarlo en la cola de cada miembro con `try_send`, que nunca espera: un cliente lento no
//!    frena a la sala. Si su cola se llena, lo echamos (su tarea cierra con 1013).
//! 2. El mensaje se **serializa una sola vez**: el JSON se guarda en un `Utf8Bytes`, y cada cola
//!    recibe un clon que solo suma un contador de referencias, no una copia del texto.
//!
//! El estado es un `HashMap` dentro de un `std::sync::Mutex`, no uno de tokio: mientras lo
//! tenemos cerrado no hay ningún `.await`, así que nunca bloquea a otra tarea más que un instante.
//! El proyecto final usa un `DashMap` (un mapa repartido en trozos) con la misma idea.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Json;
use axum::extract::ws::Utf8Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::upgrade::is_valid_name;

/// Frames que caben en la cola de una conexión antes de considerarla lenta.
pub const QUEUE: usize = 32;

// ANCHOR: frames
/// Lo que el servidor envía a los clientes, como JSON con un campo `type`.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Joined {
        room: &'a str,
        nick: &'a str,
    },
    Left {
        room: &'a str,
        nick: &'a str,
    },
    Message {
        room: &'a str,
        nick: &'a str,
        text: &'a str,
    },
    Error {
        code: &'a str,
        message: &'a str,
    },
}

impl ServerFrame<'_> {
    /// El JSON del frame. Serializar nuestro propio enum no falla; si fallara, mandamos `{}`.
    pub fn to_text(&self) -> Utf8Bytes {
        serde_json::to_string(self)
            .unwrap_or_else(|_| "{}".into())
            .into()
    }
}
// ANCHOR_END: frames

// ANCHOR: hub
/// Cómo recibe mensajes un miembro de una sala.
struct Subscriber {
    nick: String,
    queue: mpsc::Sender<Utf8Bytes>,
    /// Se cancela si su cola se llena: su tarea lo ve y cierra la conexión.
    kicked: CancellationToken,
}

/// Sala → sus miembros conectados a este proceso.
#[derive(Default)]
pub struct Hub {
    rooms: Mutex<HashMap<String, HashMap<u64, Subscriber>>>,
    next_id: AtomicU64,
}

/// Pertenecer a una sala. Al soltarlo (`Drop`), salimos de ella y avisamos a los demás: da igual
/// cómo termine la tarea de la conexión (cierre, error, pánico), nunca queda un miembro fantasma.
pub struct Membership {
    hub: Arc<Hub>,
    id: u64,
    pub room: String,
    pub nick: String,
    /// Los frames que la sala nos manda, ya serializados.
    pub frames: mpsc::Receiver<Utf8Bytes>,
    pub kicked: CancellationToken,
}

impl Membership {
    /// El hub de la sala, para difundir desde la conexión.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl Hub {
    /// Entra en la sala y avisa a todos sus miembros (también al que entra).
    pub fn join(self: &Arc<Self>, room: &str, nick: &str) -> Membership {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, frames) = mpsc::channel(QUEUE);
        let kicked = CancellationToken::new();
        let subscriber = Subscriber {
            nick: nick.to_owned(),
            queue,
            kicked: kicked.clone(),
        };
        self.lock()
            .entry(room.to_owned())
            .or_default()
            .insert(id, subscriber);
        self.broadcast(room, &ServerFrame::Joined { room, nick });
        Membership {
            hub: Arc::clone(self),
            id,
            room: room.to_owned(),
            nick: nick.to_owned(),
            frames,
            kicked,
        }
    }

    /// Sale de la sala (la olvida si queda vacía) y avisa a los que siguen en ella.
    fn leave(&self, room: &str, id: u64) -> Option<String> {
        let mut rooms = self.lock();
        let members = rooms.get_mut(room)?;
        let gone = members.remove(&id)?;
        if members.is_empty() {
            rooms.remove(room);
        }
        Some(gone.nick)
    }

    /// Quién está en cada sala, ordenado (lo que devuelve `GET /rooms`).
    pub fn members(&self) -> BTreeMap<String, Vec<String>> {
        self.lock()
            .iter()
            .map(|(room, members)| {
                let mut nicks: Vec<String> = members.values().map(|s| s.nick.clone()).collect();
                nicks.sort();
                (room.clone(), nicks)
            })
            .collect()
    }

    /// Un mutex envenenado (otra tarea entró en pánico con él cerrado) sigue sirviendo: el mapa
    /// nunca queda a medias, porque cada operación lo cambia de una vez.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, HashMap<u64, Subscriber>>> {
        self.rooms.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
// ANCHOR_END: hub

// ANCHOR: broadcast
impl Hub {
    /// Difunde un frame a la sala: lo serializa UNA vez y lo ofrece a cada cola sin esperar.
    /// Devuelve a cuántos miembros llegó.
    pub fn broadcast(&self, room: &str, frame: &ServerFrame<'_>) -> usize {
        let text = frame.to_text();
        let rooms = self.lock();
        let Some(members) = rooms.get(room) else {
            return 0;
        };
        let mut delivered = 0;
        for member in members.values() {
            match member.queue.try_send(text.clone()) {
                Ok(()) => delivered += 1,
                // Cola llena: este cliente no lee. Lo echamos en vez de hacer esperar a la sala.
                Err(TrySendError::Full(_)) => member.kicked.cancel(),
                // Su tarea ya terminó; su `Drop` lo está sacando de la sala.
                Err(TrySendError::Closed(_)) => {}
            }
        }
        delivered
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        if let Some(nick) = self.hub.leave(&self.room, self.id) {
            let room = &self.room;
            self.hub
                .broadcast(room, &ServerFrame::Left { room, nick: &nick });
        }
    }
}
// ANCHOR_END: broadcast

/// `GET /rooms`: las salas y sus miembros, para ver el hub por dentro.
pub async fn rooms(State(state): State<AppState>) -> Json<BTreeMap<String, Vec<String>>> {
    Json(state.hub.members())
}

#[derive(Deserialize)]
pub struct Announcement {
    text: String,
}

#[derive(Serialize)]
pub struct Delivered {
    delivered: usize,
}

/// `POST /rooms/{room}/announce` con `{"text": "..."}`: un aviso del servidor a una sala, desde
/// HTTP. Cualquier parte del programa con el hub puede difundir, no solo las conexiones.
pub async fn announce(
    State(state): State<AppState>,
    Path(room): Path<String>,
    Json(announcement): Json<Announcement>,
) -> Result<Json<Delivered>, (StatusCode, &'static str)> {
    let text = announcement.text.trim();
    if !is_valid_name(&room) || text.is_empty() || text.chars().count() > 500 {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "sala o texto no válidos (texto de 1 a 500 caracteres)",
        ));
    }
    let frame = ServerFrame::Message {
        room: &room,
        nick: "servidor",
        text,
    };
    let delivered = state.hub.broadcast(&room, &frame);
    Ok(Json(Delivered { delivered }))
}
