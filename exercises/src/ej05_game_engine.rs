//! Ejercicio 5 · Motor de juego multijugador: «Recolectores»
//!
//! Objetivo:          un juego pequeño por WebSocket. Cada jugador ocupa una casilla de un
//!                    tablero con muros y monedas; se mueve una casilla por tick y gana quien
//!                    recoja más monedas. El servidor manda: los clientes solo PIDEN
//!                    movimientos, y una función pura, `step`, decide en cada tick cuáles valen.
//!                    Un bucle a ritmo fijo difunde el estado a todos; los jugadores entran, salen
//!                    y vuelven a mitad de partida (con su token recuperan su jugador durante un
//!                    periodo de gracia).
//! Tiempo estimado:   2–3 horas.
//! Sigue a:           la práctica 35, `cargo run --example 35_websockets` (sobre todo `hub.rs`:
//!                    colas acotadas con `try_send`, y `chat.rs`: un `select!` por conexión).
//! Compruébalo con:   cargo test -p exercises ej05
//!                    cargo run -p exercises --bin grade -- --ejercicio 5
//!
//! En FastAPI lo harías con un `while True: await asyncio.sleep(0.1)` que recorre un
//! `ConnectionManager`; aquí el bucle es `tokio::time::interval` y cada conexión tiene su cola.
//!
//! ## El protocolo (JSON con un campo `type`; los tipos ya están abajo)
//!
//! ```text
//! cliente → servidor
//!   {"type":"join","name":"ana"}
//!   {"type":"rejoin","token":"…"}
//!   {"type":"move","player":1,"dir":"up"}          (dir: up | down | left | right)
//!   {"type":"leave"}
//!   {"type":"ping"}
//! servidor → cliente
//!   {"type":"welcome","id":1,"token":"…","width":5,"height":3,"walls":[{"x":1,"y":1},…]}
//!   {"type":"state","tick":7,"coins":[…],"players":[{"id":1,"name":"ana","pos":{…},…}]}
//!   {"type":"rejected","tick":7,"from":1,"player":1,"dir":"up","reason":"wall"}
//!   {"type":"error","code":"bad_frame","detail":"…"}
//!          (code: bad_frame | not_joined | already_joined | unknown_token | full)
//!   {"type":"pong"}
//! ```
//!
//! ## Las reglas que se comprueban (los nombres coinciden con los de `cargo test`)
//!
//! Núcleo:
//! 1. **step mueve al jugador una casilla y avanza el tick**: `up` resta 1 a `y`, `down` suma,
//!    `left` resta 1 a `x`, `right` suma; el estado nuevo tiene `tick + 1`, haya entradas o no.
//! 2. **recoger una moneda suma un punto y la retira del tablero**.
//! 3. **step es puro: no cambia su entrada y repite el resultado**: no mira el reloj, ni el azar,
//!    ni nada fuera de sus argumentos.
//! 4. **una partida jugada con step coincide con la transcripción**: las entradas se aplican en el
//!    orden en que llegan (quien llega antes a una casilla, la ocupa).
//! 5. **el bucle de ticks hace un tick por periodo**: `tick_loop` usa `tokio::time::interval`.
//! 6. **cada tick difunde el estado a todos los jugadores**: un frame `state` por tick a cada
//!    conexión.
//! 7. **join da la bienvenida con id, token y mapa**: ids 1, 2, 3… en orden de llegada; el jugador
//!    aparece en la primera casilla libre (`GameState::free_cell`) y en el siguiente `state`
//!    (tras el `welcome` no envíes nada más: el primer `state` llega con el siguiente tick).
//! 8. **leave retira al jugador en el acto**: sin periodo de gracia.
//!
//! Calidad (un movimiento inválido nunca se aplica: se rechaza y se avisa a quien lo envió):
//! 9. **rechaza salir del tablero** (`out_of_bounds`).
//! 10. **rechaza entrar en un muro** (`wall`).
//! 11. **rechaza una casilla ocupada** (`occupied`), también por un jugador desconectado.
//! 12. **rechaza mover a un jugador ajeno** (`not_your_player`: `player` distinto de `from`, o un
//!     jugador que no existe).
//! 13. **rechaza más de un movimiento por tick** (`too_many_moves`): de cada jugador solo cuenta
//!     el primero de sus movimientos del tick, sea válido o no.
//! 14. **el rechazo llega solo a quien movió**: un frame `rejected` antes del `state` de ese tick.
//! 15. **el bucle de ticks no recupera de golpe los ticks perdidos**: si el proceso se atasca cinco
//!     periodos, no dispara cinco ticks seguidos (`MissedTickBehavior`).
//! 16. **un desconectado conserva su jugador durante la gracia**: `connected: false`, quieto y
//!     ocupando su casilla; sale de la partida en el tick número `grace_ticks` contado desde que
//!     se desconectó.
//! 17. **reconectar con el token devuelve el mismo jugador**: mismo id, posición y puntos.
//! 18. **un token desconocido o caducado se rechaza**: `error` con `code: "unknown_token"`.
//! 19. **cerrar la conexión vieja no desconecta la nueva**: `disconnect(id, session)` con una
//!     `session` antigua no hace nada.
//! 20. **un frame malformado recibe un error y la conexión sigue**: `bad_frame` para JSON roto,
//!     tipos desconocidos y frames binarios; nunca un pánico ni un cierre.
//! 21. **un jugador que no lee no frena a los demás**: su cola es acotada (`GameConfig::outbox`);
//!     llena, se le trata como desconectado (se cierra su cola y empieza su gracia).
//!
//! Integración:
//! 22. **mover antes de join responde not_joined**, y después `join` funciona.
//! 23. **el bucle de ticks real difunde por WebSocket**: `tick_loop` + `app` juntos.
//! 24. **una partida de tres jugadores por WebSocket coincide con la transcripción**.
//!
//! Las pistas están al final del fichero.

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
use tokio::time::timeout;

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

// ---------------------------------------------------------------------------------------------
// El tablero y sus tipos (hechos: léelos, no hace falta cambiarlos).
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Parte 1: las reglas (reglas 1–4 y 9–13). Sin sockets ni relojes: solo datos.
// ---------------------------------------------------------------------------------------------

/// Las reglas del juego, como función pura: no mira el reloj ni los sockets, no cambia `state`;
/// con el mismo estado y las mismas entradas da siempre el mismo resultado.
pub fn step(state: &GameState, inputs: &[Input]) -> Step {
    // TODO: clona el estado, súmale 1 al tick y recorre `inputs` en orden. Para cada entrada,
    // pregunta en este orden: ¿es su jugador y existe? ¿es su primer movimiento del tick? ¿la
    // casilla destino está en el tablero, sin muro y sin jugador? Si todo va bien, muévelo (y si
    // hay moneda, quítala y suma un punto); si no, añade un `Rejection` con su `Reason`.
    todo!("implementa step: las reglas del juego (reglas 1–4 y 9–13)")
}

// ---------------------------------------------------------------------------------------------
// El protocolo (hecho).
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Parte 2: la partida compartida (reglas 7, 8, 16–19 y 21).
// ---------------------------------------------------------------------------------------------

/// La partida compartida: la clonan el bucle de ticks y cada conexión.
///
/// Un `std::sync::Mutex` y no uno de Tokio: nunca esperamos (`.await`) con él tomado, cada
/// operación es corta y no hace E/S (las colas de salida se llenan con `try_send`).
#[derive(Clone)]
pub struct Game {
    inner: Arc<Mutex<Inner>>,
}

// Los campos privados son una propuesta: cámbialos si quieres, la API pública no.
struct Inner {
    config: GameConfig,
    state: GameState,
    /// Los movimientos recibidos desde el último tick.
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

    /// Un jugador nuevo, en la primera casilla libre, con su token y su cola de salida.
    pub fn join(&self, name: &str) -> Result<Joined, JoinError> {
        // TODO: busca la casilla con `free_cell` (sin sitio: `JoinError::Full`), da el siguiente
        // id, crea el token (`uuid::Uuid::new_v4().to_string()`), abre la sesión con
        // `open_session` y guarda el `Player` (conectado) y su `Session`.
        todo!("implementa Game::join: el jugador nuevo, su token y su cola")
    }

    /// Devuelve su jugador a quien presenta el token, si sigue en la partida (conectado o en su
    /// gracia). Si aún había una conexión vieja, se la sustituye: su cola se cierra.
    pub fn rejoin(&self, token: &str) -> Result<Joined, JoinError> {
        // TODO: busca la sesión con ese token (si no está: `JoinError::UnknownToken`), ábrele una
        // sesión nueva (nuevo número y nueva cola), borra `disconnected_at` y marca al jugador
        // `connected: true`.
        todo!("implementa Game::rejoin: devolver su jugador a quien trae el token")
    }

    /// Guarda un movimiento para el próximo tick. No se valida aquí: eso es cosa de `step`.
    pub fn submit(&self, input: Input) {
        // TODO: guárdalo en `pending`, pero como mucho MAX_PENDING_PER_PLAYER por jugador.
        todo!("implementa Game::submit: guardar el movimiento para el próximo tick")
    }

    /// El jugador sale a propósito: desaparece ya, sin gracia.
    pub fn leave(&self, id: PlayerId) {
        // TODO: quita su sesión (eso suelta su `Sender` y cierra su cola), su jugador y sus
        // movimientos pendientes.
        todo!("implementa Game::leave: quitar al jugador ya")
    }

    /// Se cortó la conexión `session` de `id`: empieza su gracia. Si el jugador ya volvió por otra
    /// conexión (otra `session`), no hace nada.
    pub fn disconnect(&self, id: PlayerId, session: u64) {
        // TODO: solo si `session` es la sesión actual del jugador, `mark_disconnected`.
        todo!("implementa Game::disconnect: empezar la gracia (solo si la sesión es la actual)")
    }

    /// Un tick: aplica `step` a las entradas pendientes, retira a quien agotó su gracia, avisa de
    /// cada rechazo a quien movió y difunde el estado a todas las conexiones.
    pub fn tick(&self) -> Step {
        // TODO: toma `pending` (`std::mem::take`), llama a `step` y guarda el estado nuevo; quita
        // a los desconectados con `tick - disconnected_at >= grace_ticks`; envía cada
        // `ServerMsg::Rejected` a su `from` y luego `ServerMsg::state(..)` a todas las sesiones,
        // siempre con `Inner::send`. Devuelve el `Step` con el estado final.
        todo!("implementa Game::tick: step, gracia y difusión")
    }
}

impl Inner {
    /// Un número de sesión nuevo y una cola acotada para la conexión que la usa.
    fn open_session(&mut self) -> (u64, (mpsc::Sender<ServerMsg>, mpsc::Receiver<ServerMsg>)) {
        let session = self.next_session;
        self.next_session += 1;
        (session, mpsc::channel(self.config.outbox.max(1)))
    }

    /// Encola `frame` para `id` sin esperar nunca: un tick no se frena por un cliente lento. Si
    /// su cola está llena (no lee) o cerrada (su conexión terminó), lo tratamos como desconectado.
    fn send(&mut self, id: PlayerId, frame: ServerMsg) {
        // TODO: `try_send` en su cola, si tiene; con
        // `tokio::sync::mpsc::error::TrySendError::Full` o `Closed`, `mark_disconnected`.
        todo!("implementa Inner::send: encolar sin esperar")
    }

    /// Soltar el `Sender` cierra la cola: la conexión, al vaciarla, sabe que debe terminar.
    fn mark_disconnected(&mut self, id: PlayerId) {
        // TODO: `outbox = None`, `disconnected_at` = el tick actual (si no lo tenía ya) y el
        // jugador con `connected: false`.
        todo!("implementa Inner::mark_disconnected")
    }
}

// ---------------------------------------------------------------------------------------------
// Parte 3: el bucle de ticks (reglas 5 y 15).
// ---------------------------------------------------------------------------------------------

/// El bucle de ticks a ritmo fijo: llama a `game.tick()` una vez por `period`, para siempre.
pub async fn tick_loop(game: Game, period: Duration) {
    // TODO: un `tokio::time::interval(period)` con un `tokio::time::MissedTickBehavior` que no
    // dispare ráfagas,
    // y un `loop` que espera cada tick y llama a `game.tick()`.
    todo!("implementa tick_loop: un interval y un loop")
}

// ---------------------------------------------------------------------------------------------
// Parte 4: las conexiones (reglas 6, 7, 14, 17, 18, 20, 22–24).
// ---------------------------------------------------------------------------------------------

/// `GET /ws`: el WebSocket de la partida.
pub fn app(game: Game) -> Router {
    Router::new().route("/ws", get(upgrade)).with_state(game)
}

async fn upgrade(ws: WebSocketUpgrade, State(game): State<Game>) -> Response {
    ws.max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| handle_socket(socket, game))
}

/// Una conexión: primero el saludo (`join` o `rejoin`), luego un único bucle que atiende a la vez
/// la cola de salida (lo que manda el juego) y el socket (lo que manda el cliente).
async fn handle_socket(socket: WebSocket, game: Game) {
    // TODO: (necesitarás `mut socket`) `handshake`; luego un `loop` con `tokio::select!` sobre
    // - `joined.outbox.recv()`: reenvía cada frame con `send`; `None` = el juego soltó tu cola,
    //   termina;
    // - `socket.recv()`: `move` → `game.submit` con `from: joined.id`; `ping` → `pong`; `leave` →
    //   `game.leave` y termina; `join`/`rejoin` → error `already_joined`; JSON roto o binario →
    //   error `bad_frame`; `Close`, error o `None` → termina.
    // Al salir del bucle sin `leave`: `game.disconnect(id, session)`.
    todo!("implementa handle_socket: el bucle de una conexión")
}

/// Espera el `join` o el `rejoin` (como mucho [`JOIN_TIMEOUT`] por frame) y da la bienvenida.
async fn handshake(socket: &mut WebSocket, game: &Game) -> Option<Joined> {
    // TODO: repite hasta tener jugador: lee un frame con `timeout(JOIN_TIMEOUT, socket.recv())`;
    // `join` → `game.join`, `rejoin` → `game.rejoin`, `ping` → `pong`, `move`/`leave` → error
    // `not_joined`, JSON roto o binario → `bad_frame`. Con `Ok(joined)` envía
    // `ServerMsg::welcome(..)` y devuelve `Some(joined)`; con `Err(e)`, un error con `e.code()`.
    // Si el cliente cierra o calla: `None`.
    todo!("implementa handshake: join o rejoin, y la bienvenida")
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

// ---------------------------------------------------------------------------------------------
// Pistas
// ---------------------------------------------------------------------------------------------
//
// Pista 1 (la idea). Separa tres cosas: las REGLAS (`step`, una función pura que puedes probar
// con datos), el RITMO (`tick_loop`, que solo llama a `game.tick()` a compás) y el TRANSPORTE
// (`handle_socket`, que convierte frames en `Input` y reenvía la cola). Las conexiones nunca
// mueven jugadores: dejan su petición en `pending` y el tick decide. Cada conexión tiene su cola
// acotada y el tick la llena con `try_send`, que nunca espera: así un cliente lento no frena a
// nadie (como el `Hub` de `hub.rs` en la práctica 35). La gracia se cuenta en ticks, no en
// segundos: así la pruebas llamando a `game.tick()` sin esperar.
//
// Pista 2 (la API).
// - `step`: `let mut next = state.clone(); next.tick += 1;`, un `HashMap<PlayerId, usize>` con los
//   movimientos de cada `from`, `Direction::apply`, `GameState::in_bounds`, `walls.contains`,
//   `player_at`, y `coins.remove(&pos)` (devuelve `true` si había moneda).
// - `tick_loop`: `tokio::time::interval(period)` y
//   `set_missed_tick_behavior(MissedTickBehavior::Skip)` (o `Delay`; `Burst`, el valor por
//   defecto, es justo la ráfaga que la regla 15 prohíbe).
// - Colas: `mpsc::channel(capacidad)`, `sender.try_send(frame)` y `TrySendError::{Full, Closed}`.
//   Soltar el `Sender` (ponerlo a `None`) hace que `receiver.recv()` devuelva `None` al vaciarse.
// - Conexión: `tokio::select! { frame = joined.outbox.recv() => …, incoming = socket.recv() => … }`
//   y `serde_json::from_str::<ClientMsg>(text.as_str())`.
//
// Pista 3 (casi el código).
// ```rust
// for input in inputs {
//     let Some(player) = next.players.get(&input.player).filter(|_| input.player == input.from)
//     else { /* Reason::NotYourPlayer */ continue };
//     let used = moves.entry(input.from).or_insert(0);
//     *used += 1;
//     let target = input.dir.apply(player.pos);
//     let reason = if *used > MOVES_PER_TICK { Some(Reason::TooManyMoves) }
//         else if !next.in_bounds(target) { Some(Reason::OutOfBounds) }
//         else if next.walls.contains(&target) { Some(Reason::Wall) }
//         else if next.player_at(target).is_some() { Some(Reason::Occupied) }
//         else { None };
//     // Con `Some(reason)`: `rejected.push(Rejection { tick: next.tick, .. })`.
//     // Con `None`: mueve al jugador y, si `next.coins.remove(&target)`, `score += 1`.
// }
// ```
// En `tick`: `let expired: Vec<PlayerId> = inner.sessions.iter().filter(|(_, s)|
// s.disconnected_at.is_some_and(|at| now - at >= grace)).map(|(id, _)| *id).collect();` y,
// para difundir, copia antes los ids (`inner.sessions.keys().copied().collect::<Vec<_>>()`):
// `Inner::send` necesita `&mut self`.
