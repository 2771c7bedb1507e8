//! Ejercicio 5 · Motor de juego multijugador: «Recolectores» (solución de referencia).
//!
//! El enunciado, las reglas y las pistas están en `exercises/src/ej05_game_engine.rs`.
//!
//! La idea que sostiene todo el diseño: el servidor manda (*server-authoritative*). Los clientes
//! solo piden movimientos; el servidor los junta, y en cada tick una función pura, `step`, decide
//! qué pasa. Así las reglas se prueban sin sockets ni relojes, y el bucle de ticks y los sockets
//! solo transportan datos.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::time::{MissedTickBehavior, timeout};

/// Movimientos que cada jugador puede hacer en un tick.
pub const MOVES_PER_TICK: usize = 1;
/// Entradas pendientes que guardamos por jugador entre dos ticks: el resto se descarta.
pub const MAX_PENDING_PER_PLAYER: usize = 8;
/// Tamaño máximo de un frame del cliente (los nuestros caben de sobra).
pub const MAX_FRAME_BYTES: usize = 4 * 1024;
/// Longitud máxima de un nombre (lo que sobra se corta).
pub const MAX_NAME_CHARS: usize = 20;
/// Tiempo que esperamos el primer `join`/`rejoin` de una conexión nueva.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Tiempo máximo para escribir un frame en el socket.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// El detalle del error que recibe quien envía un frame binario.
const BINARY: &str = "solo aceptamos frames de texto con JSON";

pub type PlayerId = u32;

/// Una casilla del tablero: `x` crece hacia la derecha, `y` hacia abajo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pos {
    pub x: i32,
    pub y: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
    Left,
    Right,
}

impl Direction {
    /// La casilla vecina de `pos` en esta dirección (puede caer fuera del tablero).
    pub fn apply(self, pos: Pos) -> Pos {
        match self {
            Direction::Up => Pos {
                x: pos.x,
                y: pos.y - 1,
            },
            Direction::Down => Pos {
                x: pos.x,
                y: pos.y + 1,
            },
            Direction::Left => Pos {
                x: pos.x - 1,
                y: pos.y,
            },
            Direction::Right => Pos {
                x: pos.x + 1,
                y: pos.y,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Player {
    pub id: PlayerId,
    pub name: String,
    pub pos: Pos,
    pub score: u32,
    /// `false` mientras dura la gracia de un jugador desconectado.
    pub connected: bool,
}

/// Todo lo que hace falta para jugar un tick. `Clone` a propósito: `step` devuelve uno nuevo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameState {
    pub tick: u64,
    pub width: i32,
    pub height: i32,
    pub walls: BTreeSet<Pos>,
    pub coins: BTreeSet<Pos>,
    pub players: BTreeMap<PlayerId, Player>,
}

impl GameState {
    /// Un tablero dibujado en texto: `#` es un muro, `$` una moneda, cualquier otro carácter
    /// suelo. Cada cadena es una fila, de arriba abajo.
    pub fn from_map(rows: &[&str]) -> GameState {
        let mut walls = BTreeSet::new();
        let mut coins = BTreeSet::new();
        let mut width = 0;
        for (y, row) in (0..).zip(rows) {
            let mut x = 0;
            for cell in row.chars() {
                match cell {
                    '#' => {
                        walls.insert(Pos { x, y });
                    }
                    '$' => {
                        coins.insert(Pos { x, y });
                    }
                    _ => {}
                }
                x += 1;
            }
            width = width.max(x);
        }
        GameState {
            tick: 0,
            width,
            height: i32::try_from(rows.len()).unwrap_or(i32::MAX),
            walls,
            coins,
            players: BTreeMap::new(),
        }
    }

    pub fn in_bounds(&self, pos: Pos) -> bool {
        (0..self.width).contains(&pos.x) && (0..self.height).contains(&pos.y)
    }

    /// El jugador que ocupa `pos`, si hay uno (conectado o en su gracia).
    pub fn player_at(&self, pos: Pos) -> Option<PlayerId> {
        self.players
            .values()
            .find(|player| player.pos == pos)
            .map(|player| player.id)
    }

    /// Dónde aparece un jugador nuevo: la primera casilla libre (sin muro, moneda ni jugador)
    /// recorriendo fila a fila, de arriba abajo y de izquierda a derecha.
    pub fn free_cell(&self) -> Option<Pos> {
        (0..self.height)
            .flat_map(|y| (0..self.width).map(move |x| Pos { x, y }))
            .find(|pos| {
                !self.walls.contains(pos)
                    && !self.coins.contains(pos)
                    && self.player_at(*pos).is_none()
            })
    }
}

/// Un movimiento pedido: `from` es quien lo envía (lo pone el servidor, según la conexión);
/// `player`, el jugador que el mensaje dice mover (lo escribe el cliente: no te fíes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Input {
    pub from: PlayerId,
    pub player: PlayerId,
    pub dir: Direction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    OutOfBounds,
    Wall,
    Occupied,
    NotYourPlayer,
    TooManyMoves,
}

/// Un movimiento que `step` no aplicó, y por qué. Se le envía solo a `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub tick: u64,
    pub from: PlayerId,
    pub player: PlayerId,
    pub dir: Direction,
    pub reason: Reason,
}

/// Lo que devuelve un tick: el estado nuevo y los movimientos rechazados.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub state: GameState,
    pub rejected: Vec<Rejection>,
}

// ANCHOR: step
/// Las reglas del juego, como función pura: no mira el reloj ni los sockets, no cambia `state`;
/// con el mismo estado y las mismas entradas da siempre el mismo resultado.
pub fn step(state: &GameState, inputs: &[Input]) -> Step {
    let mut next = state.clone();
    next.tick += 1;
    let mut rejected = Vec::new();
    // Quién ha gastado ya su movimiento en este tick.
    let mut moves: HashMap<PlayerId, usize> = HashMap::new();

    // Las entradas se aplican en el orden en que llegaron: quien llega antes a una casilla, la
    // ocupa.
    for input in inputs {
        let verdict = check_move(&next, input, &mut moves);
        match verdict {
            Ok(target) => {
                // `check_move` ya comprobó que el jugador existe.
                if let Some(player) = next.players.get_mut(&input.player) {
                    player.pos = target;
                    if next.coins.remove(&target) {
                        player.score += 1;
                    }
                }
            }
            Err(reason) => rejected.push(Rejection {
                tick: next.tick,
                from: input.from,
                player: input.player,
                dir: input.dir,
                reason,
            }),
        }
    }
    Step {
        state: next,
        rejected,
    }
}

/// La casilla a la que llega `input`, o por qué no es válido. El orden de las preguntas importa:
/// primero de quién es el jugador, luego cuántos movimientos lleva, y al final el tablero.
fn check_move(
    state: &GameState,
    input: &Input,
    moves: &mut HashMap<PlayerId, usize>,
) -> Result<Pos, Reason> {
    let player = match state.players.get(&input.player) {
        Some(player) if input.player == input.from => player,
        _ => return Err(Reason::NotYourPlayer),
    };
    let used = moves.entry(input.from).or_insert(0);
    *used += 1;
    if *used > MOVES_PER_TICK {
        return Err(Reason::TooManyMoves);
    }
    let target = input.dir.apply(player.pos);
    if !state.in_bounds(target) {
        Err(Reason::OutOfBounds)
    } else if state.walls.contains(&target) {
        Err(Reason::Wall)
    } else if state.player_at(target).is_some() {
        Err(Reason::Occupied)
    } else {
        Ok(target)
    }
}
// ANCHOR_END: step

/// Lo que envía el cliente (JSON con un campo `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    Join { name: String },
    Rejoin { token: String },
    Move { player: PlayerId, dir: Direction },
    Leave,
    Ping,
}

/// Lo que envía el servidor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    Welcome {
        id: PlayerId,
        token: String,
        width: i32,
        height: i32,
        walls: Vec<Pos>,
    },
    State {
        tick: u64,
        coins: Vec<Pos>,
        players: Vec<Player>,
    },
    Rejected(Rejection),
    Error {
        code: String,
        detail: String,
    },
    Pong,
}

impl ServerMsg {
    pub fn welcome(id: PlayerId, token: &str, state: &GameState) -> ServerMsg {
        ServerMsg::Welcome {
            id,
            token: token.to_owned(),
            width: state.width,
            height: state.height,
            walls: state.walls.iter().copied().collect(),
        }
    }

    pub fn state(state: &GameState) -> ServerMsg {
        ServerMsg::State {
            tick: state.tick,
            coins: state.coins.iter().copied().collect(),
            players: state.players.values().cloned().collect(),
        }
    }

    pub fn error(code: &str, detail: impl Into<String>) -> ServerMsg {
        ServerMsg::Error {
            code: code.to_owned(),
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    #[error("no queda sitio en el tablero")]
    Full,
    #[error("token desconocido o caducado")]
    UnknownToken,
}

impl JoinError {
    /// El `code` del frame de error que recibe el cliente.
    pub fn code(self) -> &'static str {
        match self {
            JoinError::Full => "full",
            JoinError::UnknownToken => "unknown_token",
        }
    }
}

/// Lo que recibe una conexión al entrar (o volver) a la partida.
#[derive(Debug)]
pub struct Joined {
    pub id: PlayerId,
    /// Con él, el jugador recupera su avatar si se corta la conexión.
    pub token: String,
    /// Cambia en cada `join`/`rejoin`: así el cierre de una conexión vieja no desconecta a la
    /// nueva.
    pub session: u64,
    /// Los frames que el juego envía a esta conexión, en una cola acotada.
    pub outbox: mpsc::Receiver<ServerMsg>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GameConfig {
    /// Ticks que un jugador desconectado conserva su avatar antes de salir de la partida.
    pub grace_ticks: u64,
    /// Capacidad de la cola de salida de cada conexión.
    pub outbox: usize,
}

impl Default for GameConfig {
    fn default() -> Self {
        // A 10 ticks por segundo: 5 s de gracia y 1,6 s de frames en cola.
        GameConfig {
            grace_ticks: 50,
            outbox: 16,
        }
    }
}

/// La partida compartida: la clonan el bucle de ticks y cada conexión.
///
/// Un `std::sync::Mutex` y no uno de Tokio: nunca esperamos (`.await`) con él tomado, cada
/// operación es corta y no hace E/S (las colas de salida se llenan con `try_send`).
#[derive(Clone)]
pub struct Game {
    inner: Arc<Mutex<Inner>>,
}

struct Inner {
    config: GameConfig,
    state: GameState,
    pending: Vec<Input>,
    sessions: HashMap<PlayerId, Session>,
    next_id: PlayerId,
    next_session: u64,
}

struct Session {
    token: String,
    session: u64,
    /// `None` mientras el jugador está desconectado.
    outbox: Option<mpsc::Sender<ServerMsg>>,
    /// El tick en que se desconectó: desde ahí cuenta la gracia.
    disconnected_at: Option<u64>,
}

impl Game {
    pub fn new(state: GameState, config: GameConfig) -> Game {
        Game {
            inner: Arc::new(Mutex::new(Inner {
                config,
                state,
                pending: Vec::new(),
                sessions: HashMap::new(),
                next_id: 1,
                next_session: 1,
            })),
        }
    }

    /// Una copia del estado actual.
    pub fn state(&self) -> GameState {
        self.lock().state.clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Si otro hilo entró en pánico con el candado tomado, el estado sigue siendo usable.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ANCHOR: join
    /// Un jugador nuevo, en la primera casilla libre, con su token y su cola de salida.
    pub fn join(&self, name: &str) -> Result<Joined, JoinError> {
        let mut inner = self.lock();
        let pos = inner.state.free_cell().ok_or(JoinError::Full)?;
        let id = inner.next_id;
        inner.next_id += 1;
        let player = Player {
            id,
            name: name.chars().take(MAX_NAME_CHARS).collect(),
            pos,
            score: 0,
            connected: true,
        };
        inner.state.players.insert(id, player);
        let token = uuid::Uuid::new_v4().to_string();
        let (session, outbox) = inner.open_session();
        inner.sessions.insert(
            id,
            Session {
                token: token.clone(),
                session,
                outbox: Some(outbox.0),
                disconnected_at: None,
            },
        );
        Ok(Joined {
            id,
            token,
            session,
            outbox: outbox.1,
        })
    }

    /// Devuelve su jugador a quien presenta el token, si sigue en la partida (conectado o en su
    /// gracia). Si aún había una conexión vieja, se la sustituye: su cola se cierra.
    pub fn rejoin(&self, token: &str) -> Result<Joined, JoinError> {
        let mut inner = self.lock();
        let id = inner
            .sessions
            .iter()
            .find(|(_, session)| session.token == token)
            .map(|(id, _)| *id)
            .ok_or(JoinError::UnknownToken)?;
        let (session, (sender, receiver)) = inner.open_session();
        if let Some(entry) = inner.sessions.get_mut(&id) {
            entry.session = session;
            entry.outbox = Some(sender);
            entry.disconnected_at = None;
        }
        if let Some(player) = inner.state.players.get_mut(&id) {
            player.connected = true;
        }
        Ok(Joined {
            id,
            token: token.to_owned(),
            session,
            outbox: receiver,
        })
    }
    // ANCHOR_END: join

    /// Guarda un movimiento para el próximo tick. No se valida aquí: eso es cosa de `step`.
    pub fn submit(&self, input: Input) {
        let mut inner = self.lock();
        // Cola acotada: pasado el límite, `step` ya habría rechazado el resto por `too_many_moves`.
        let queued = inner
            .pending
            .iter()
            .filter(|pending| pending.from == input.from)
            .count();
        if queued < MAX_PENDING_PER_PLAYER {
            inner.pending.push(input);
        }
    }

    /// El jugador sale a propósito: desaparece ya, sin gracia.
    pub fn leave(&self, id: PlayerId) {
        let mut inner = self.lock();
        inner.sessions.remove(&id);
        inner.state.players.remove(&id);
        inner.pending.retain(|input| input.from != id);
    }

    /// Se cortó la conexión `session` de `id`: empieza su gracia. Si el jugador ya volvió por otra
    /// conexión (otra `session`), no hace nada.
    pub fn disconnect(&self, id: PlayerId, session: u64) {
        let mut inner = self.lock();
        let current = inner.sessions.get(&id).map(|entry| entry.session);
        if current == Some(session) {
            inner.mark_disconnected(id);
        }
    }

    // ANCHOR: tick
    /// Un tick: aplica `step` a las entradas pendientes, retira a quien agotó su gracia, avisa de
    /// cada rechazo a quien movió y difunde el estado a todas las conexiones.
    pub fn tick(&self) -> Step {
        let mut inner = self.lock();
        let inputs = std::mem::take(&mut inner.pending);
        let Step { state, rejected } = step(&inner.state, &inputs);
        inner.state = state;

        let now = inner.state.tick;
        let grace = inner.config.grace_ticks;
        let expired: Vec<PlayerId> = inner
            .sessions
            .iter()
            .filter(|(_, entry)| entry.disconnected_at.is_some_and(|at| now - at >= grace))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            inner.sessions.remove(&id);
            inner.state.players.remove(&id);
        }

        for rejection in &rejected {
            inner.send(rejection.from, ServerMsg::Rejected(*rejection));
        }
        let frame = ServerMsg::state(&inner.state);
        let ids: Vec<PlayerId> = inner.sessions.keys().copied().collect();
        for id in ids {
            inner.send(id, frame.clone());
        }
        Step {
            state: inner.state.clone(),
            rejected,
        }
    }
    // ANCHOR_END: tick
}

impl Inner {
    fn open_session(&mut self) -> (u64, (mpsc::Sender<ServerMsg>, mpsc::Receiver<ServerMsg>)) {
        let session = self.next_session;
        self.next_session += 1;
        (session, mpsc::channel(self.config.outbox.max(1)))
    }

    /// Encola `frame` para `id` sin esperar nunca: un tick no se frena por un cliente lento. Si
    /// su cola está llena (no lee) o cerrada (su conexión terminó), lo tratamos como desconectado.
    fn send(&mut self, id: PlayerId, frame: ServerMsg) {
        let Some(outbox) = self
            .sessions
            .get(&id)
            .and_then(|entry| entry.outbox.as_ref())
        else {
            return;
        };
        match outbox.try_send(frame) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Closed(_)) => self.mark_disconnected(id),
        }
    }

    /// Soltar el `Sender` cierra la cola: la conexión, al vaciarla, sabe que debe terminar.
    fn mark_disconnected(&mut self, id: PlayerId) {
        let now = self.state.tick;
        if let Some(entry) = self.sessions.get_mut(&id) {
            entry.outbox = None;
            entry.disconnected_at.get_or_insert(now);
        }
        if let Some(player) = self.state.players.get_mut(&id) {
            player.connected = false;
        }
    }
}

// ANCHOR: tick_loop
/// El bucle de ticks a ritmo fijo. `Skip`: si el proceso se atasca, no recupera de golpe los
/// ticks perdidos (una ráfaga de estados no sirve a nadie); sigue al compás siguiente.
pub async fn tick_loop(game: Game, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        game.tick();
    }
}
// ANCHOR_END: tick_loop

/// `GET /ws`: el WebSocket de la partida.
pub fn app(game: Game) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(game)
}

async fn upgrade(ws: WebSocketUpgrade, State(game): State<Game>) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| handle_socket(socket, game))
}

// ANCHOR: connection
/// Una conexión: primero el saludo (`join` o `rejoin`), luego un único bucle que atiende a la vez
/// la cola de salida (lo que manda el juego) y el socket (lo que manda el cliente).
async fn handle_socket(mut socket: WebSocket, game: Game) {
    let Some(mut joined) = handshake(&mut socket, &game).await else {
        return;
    };
    let (id, session) = (joined.id, joined.session);
    loop {
        tokio::select! {
            frame = joined.outbox.recv() => match frame {
                Some(frame) => {
                    if !send(&mut socket, &frame).await {
                        break;
                    }
                }
                // El juego soltó nuestra cola: éramos lentos, volvimos por otra conexión o salimos.
                None => break,
            },
            incoming = socket.recv() => {
                let text = match incoming {
                    Some(Ok(Message::Text(text))) => text,
                    Some(Ok(Message::Binary(_))) => {
                        let error = ServerMsg::error("bad_frame", BINARY);
                        if !send(&mut socket, &error).await {
                            break;
                        }
                        continue;
                    }
                    // axum contesta los pings del protocolo por su cuenta.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                };
                let reply = match serde_json::from_str::<ClientMsg>(text.as_str()) {
                    Ok(ClientMsg::Move { player, dir }) => {
                        game.submit(Input { from: id, player, dir });
                        continue;
                    }
                    Ok(ClientMsg::Leave) => {
                        game.leave(id);
                        let _ = timeout(WRITE_TIMEOUT, socket.send(Message::Close(None))).await;
                        return;
                    }
                    Ok(ClientMsg::Ping) => ServerMsg::Pong,
                    Ok(ClientMsg::Join { .. } | ClientMsg::Rejoin { .. }) => {
                        ServerMsg::error("already_joined", "esta conexión ya tiene jugador")
                    }
                    Err(error) => ServerMsg::error("bad_frame", error.to_string()),
                };
                if !send(&mut socket, &reply).await {
                    break;
                }
            }
        }
    }
    // Sin `leave`: el avatar se queda durante la gracia, por si vuelve con su token.
    game.disconnect(id, session);
}
// ANCHOR_END: connection

/// Espera el `join` o el `rejoin` (como mucho [`JOIN_TIMEOUT`] por frame) y da la bienvenida.
async fn handshake(socket: &mut WebSocket, game: &Game) -> Option<Joined> {
    loop {
        let text = match timeout(JOIN_TIMEOUT, socket.recv()).await {
            Ok(Some(Ok(Message::Text(text)))) => text,
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(Message::Binary(_)))) => {
                let error = ServerMsg::error("bad_frame", BINARY);
                if !send(socket, &error).await {
                    return None;
                }
                continue;
            }
            // Cerró, falló o no dijo nada a tiempo.
            _ => return None,
        };
        let joined = match serde_json::from_str::<ClientMsg>(text.as_str()) {
            Ok(ClientMsg::Join { name }) => game.join(&name),
            Ok(ClientMsg::Rejoin { token }) => game.rejoin(&token),
            Ok(ClientMsg::Ping) => {
                if !send(socket, &ServerMsg::Pong).await {
                    return None;
                }
                continue;
            }
            Ok(ClientMsg::Move { .. } | ClientMsg::Leave) => {
                let error = ServerMsg::error("not_joined", "envía antes join o rejoin");
                if !send(socket, &error).await {
                    return None;
                }
                continue;
            }
            Err(error) => {
                if !send(socket, &ServerMsg::error("bad_frame", error.to_string())).await {
                    return None;
                }
                continue;
            }
        };
        match joined {
            Ok(joined) => {
                let welcome = ServerMsg::welcome(joined.id, &joined.token, &game.state());
                if send(socket, &welcome).await {
                    return Some(joined);
                }
                game.disconnect(joined.id, joined.session);
                return None;
            }
            Err(error) => {
                if !send(socket, &ServerMsg::error(error.code(), error.to_string())).await {
                    return None;
                }
            }
        }
    }
}

/// Envía un frame como texto JSON; `false` si el socket falló o no aceptó el frame a tiempo.
async fn send(socket: &mut WebSocket, frame: &ServerMsg) -> bool {
    let Ok(text) = serde_json::to_string(frame) else {
        return false;
    };
    matches!(
        timeout(WRITE_TIMEOUT, socket.send(Message::text(text))).await,
        Ok(Ok(()))
    )
}
