//! Las comprobaciones del ejercicio 5 (motor de juego multijugador), en el orden de las reglas de
//! `exercises/src/ej05_game_engine.rs`.
//!
//! Three kinds of checks, as the exercise is designed: the rules call the pure `step` with
//! hand-built states; the tick loop runs under tokio's paused clock with no socket in sight;
//! join, leave, reconnect and broadcast go over real WebSockets, the check calling
//! `Game::tick` itself so that each tick happens exactly when the check wants it. The grace
//! period, the stale session and the slow reader drive the `Game` handle directly: a TCP socket
//! would absorb a slow reader's frames in kernel buffers for a long while.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::mpsc::error::TryRecvError;
use tokio_tungstenite::tungstenite::Message;

use super::registry::{Block, Check, Failure};
use super::support::{self, Server, WsClient};
use crate::ej05_game_engine::{
    self as game, Direction, Game, GameConfig, GameState, Input, Player, PlayerId, Pos, Reason,
    ServerMsg, Step,
};

const REGLAS: &str = "Reglas del juego en step";
const TICKS: &str = "Bucle de ticks y difusión";
const CONEXIONES: &str = "Entrar, salir y reconectar";
const ENTRADAS: &str = "Entradas inválidas y límites";
const PROTOCOLO: &str = "Protocolo de extremo a extremo";

const TIMEOUT: Duration = Duration::from_secs(8);

/// The board of every check: no border walls, so that leaving the board is possible.
/// Walls at (1,1) and (3,1); coins at (2,0), (0,2) and (4,2). Free cells, in join order:
/// (0,0), (1,0), (3,0), (4,0), (0,1), (2,1)…
const MAP: &[&str] = &["..$..", ".#.#.", "$...$"];

/// The period of the loop in the paused-clock checks (the clock is virtual: any value works).
const PERIOD: Duration = Duration::from_millis(100);

pub fn checks() -> Vec<Check> {
    let check = |block, criterion, points, title, run| Check {
        exercise: 5,
        block,
        criterion,
        points,
        title,
        timeout: TIMEOUT,
        run,
    };
    vec![
        // Núcleo
        check(
            Block::Nucleo,
            REGLAS,
            3,
            "step mueve al jugador una casilla y avanza el tick",
            |_| Box::pin(step_moves_one_cell()),
        ),
        check(
            Block::Nucleo,
            REGLAS,
            2,
            "recoger una moneda suma un punto y la retira del tablero",
            |_| Box::pin(step_collects_coins()),
        ),
        check(
            Block::Nucleo,
            REGLAS,
            1,
            "step es puro: no cambia su entrada y repite el resultado",
            |_| Box::pin(step_is_pure()),
        ),
        check(
            Block::Nucleo,
            REGLAS,
            2,
            "una partida jugada con step coincide con la transcripción",
            |_| Box::pin(step_transcript_matches()),
        ),
        check(
            Block::Nucleo,
            TICKS,
            2,
            "el bucle de ticks hace un tick por periodo",
            |_| Box::pin(loop_ticks_once_per_period()),
        ),
        check(
            Block::Nucleo,
            TICKS,
            3,
            "cada tick difunde el estado a todos los jugadores",
            |_| Box::pin(each_tick_broadcasts_to_everyone()),
        ),
        check(
            Block::Nucleo,
            CONEXIONES,
            2,
            "join da la bienvenida con id, token y mapa",
            |_| Box::pin(join_welcomes_with_id_token_and_map()),
        ),
        check(
            Block::Nucleo,
            CONEXIONES,
            1,
            "leave retira al jugador en el acto",
            |_| Box::pin(leave_removes_at_once()),
        ),
        // Calidad
        check(
            Block::Calidad,
            ENTRADAS,
            1,
            "rechaza salir del tablero",
            |_| Box::pin(rejects_out_of_bounds()),
        ),
        check(
            Block::Calidad,
            ENTRADAS,
            1,
            "rechaza entrar en un muro",
            |_| Box::pin(rejects_walls()),
        ),
        check(
            Block::Calidad,
            ENTRADAS,
            1,
            "rechaza una casilla ocupada",
            |_| Box::pin(rejects_occupied_cells()),
        ),
        check(
            Block::Calidad,
            ENTRADAS,
            1,
            "rechaza mover a un jugador ajeno",
            |_| Box::pin(rejects_other_players()),
        ),
        check(
            Block::Calidad,
            ENTRADAS,
            1,
            "rechaza más de un movimiento por tick",
            |_| Box::pin(rejects_too_many_moves()),
        ),
        check(
            Block::Calidad,
            ENTRADAS,
            1,
            "el rechazo llega solo a quien movió",
            |_| Box::pin(rejection_reaches_only_the_mover()),
        ),
        check(
            Block::Calidad,
            TICKS,
            1,
            "el bucle de ticks no recupera de golpe los ticks perdidos",
            |_| Box::pin(loop_does_not_burst()),
        ),
        check(
            Block::Calidad,
            CONEXIONES,
            2,
            "un desconectado conserva su jugador durante la gracia",
            |_| Box::pin(grace_keeps_the_player()),
        ),
        check(
            Block::Calidad,
            CONEXIONES,
            2,
            "reconectar con el token devuelve el mismo jugador",
            |_| Box::pin(rejoin_returns_the_same_player()),
        ),
        check(
            Block::Calidad,
            CONEXIONES,
            1,
            "un token desconocido o caducado se rechaza",
            |_| Box::pin(rejects_unknown_and_expired_tokens()),
        ),
        check(
            Block::Calidad,
            CONEXIONES,
            1,
            "cerrar la conexión vieja no desconecta la nueva",
            |_| Box::pin(stale_session_does_not_disconnect()),
        ),
        check(
            Block::Calidad,
            ENTRADAS,
            2,
            "un frame malformado recibe un error y la conexión sigue",
            |_| Box::pin(malformed_frames_get_errors()),
        ),
        check(
            Block::Calidad,
            ENTRADAS,
            2,
            "un jugador que no lee no frena a los demás",
            |_| Box::pin(slow_reader_is_dropped()),
        ),
        // Integración
        check(
            Block::Integracion,
            PROTOCOLO,
            1,
            "mover antes de join responde not_joined",
            |_| Box::pin(move_before_join_is_refused()),
        ),
        check(
            Block::Integracion,
            PROTOCOLO,
            2,
            "el bucle de ticks real difunde por WebSocket",
            |_| Box::pin(real_loop_broadcasts_over_websocket()),
        ),
        check(
            Block::Integracion,
            PROTOCOLO,
            3,
            "una partida de tres jugadores por WebSocket coincide con la transcripción",
            |_| Box::pin(three_player_transcript_matches()),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `MAP` with players placed by hand (`(id, x, y)`), all connected, no points, at `tick`.
fn board(tick: u64, players: &[(PlayerId, i32, i32)]) -> GameState {
    let mut state = GameState::from_map(MAP);
    state.tick = tick;
    for &(id, x, y) in players {
        state.players.insert(
            id,
            Player {
                id,
                name: format!("j{id}"),
                pos: Pos { x, y },
                score: 0,
                connected: true,
            },
        );
    }
    state
}

fn mv(from: PlayerId, player: PlayerId, dir: Direction) -> Input {
    Input { from, player, dir }
}

fn config(grace_ticks: u64, outbox: usize) -> GameConfig {
    GameConfig {
        grace_ticks,
        outbox,
    }
}

fn new_game(grace_ticks: u64, outbox: usize) -> Game {
    Game::new(GameState::from_map(MAP), config(grace_ticks, outbox))
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|error| format!("(no serializable: {error})"))
}

fn pos_of(state: &GameState, id: PlayerId) -> Option<Pos> {
    state.players.get(&id).map(|player| player.pos)
}

/// Checks that `step` rejected exactly one input of `step_result`, for `reason`, and did not
/// move `id` from `at`.
fn expect_rejected(
    what: &str,
    result: &Step,
    input: Input,
    reason: Reason,
    id: PlayerId,
    at: Pos,
    hint: &str,
) -> Result<(), Failure> {
    let expected = game::Rejection {
        tick: result.state.tick,
        from: input.from,
        player: input.player,
        dir: input.dir,
        reason,
    };
    if !result.rejected.contains(&expected) {
        return Err(
            Failure::new(format!("{what}: step no lo rechazó como se esperaba"))
                .expected(to_json(&expected))
                .got(format!("rejected = {}", to_json(&result.rejected)))
                .hint(hint),
        );
    }
    if pos_of(&result.state, id) != Some(at) {
        return Err(Failure::new(format!(
            "{what}: el movimiento se rechazó pero el jugador {id} se movió igualmente"
        ))
        .expected(format!("el jugador {id} sigue en {}", to_json(&at)))
        .got(to_json(&result.state.players.get(&id)))
        .hint(
            "un movimiento rechazado nunca se aplica: decide primero y mueve solo si es válido",
        ));
    }
    Ok(())
}

/// Yields enough times for every ready task to run (the tick loop, under the paused clock).
async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

/// Waits (bounded by [`support::WAIT`]) until `done` holds for the game's state: for what the
/// server does after a socket closes, which no frame announces.
async fn wait_for_state(
    game: &Game,
    done: impl Fn(&GameState) -> bool,
) -> Result<GameState, GameState> {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let state = game.state();
        if done(&state) {
            return Ok(state);
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(state);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Closes the WebSocket from the client side, as a browser tab that goes away (bounded).
async fn hang_up(mut client: WsClient) {
    let _ = tokio::time::timeout(support::WAIT, client.stream().close(None)).await;
}

/// Opens a WebSocket and joins as `name`: the client and its `welcome` frame.
async fn join_ws(server: &Server, name: &str) -> Result<(WsClient, Value), Failure> {
    let mut client = WsClient::connect(&server.ws_url("/ws")).await?;
    client
        .send_json(&json!({"type": "join", "name": name}))
        .await?;
    let (welcome, _) = client.recv_type("welcome").await.map_err(|failure| {
        Failure::new(format!("«{name}» envió join y no recibió su welcome"))
            .expected(r#"{"type":"welcome","id":…,"token":"…","width":…,"height":…,"walls":[…]}"#)
            .got(failure.got.unwrap_or(failure.what))
            .hint("¿`handshake` llama a `game.join` y envía `ServerMsg::welcome(..)`? Mira la Pista 2.")
    })?;
    Ok((client, welcome))
}

/// Sends a ping and waits for its pong: every frame sent before it has been handled. Returns
/// what arrived before the pong.
async fn sync(client: &mut WsClient, who: &str) -> Result<Vec<Value>, Failure> {
    client.send_json(&json!({"type": "ping"})).await?;
    let (_, before) = client.recv_type("pong").await.map_err(|failure| {
        Failure::new(format!("«{who}» envió ping y no recibió pong"))
            .expected(r#"{"type":"pong"}"#)
            .got(failure.got.unwrap_or(failure.what))
            .hint("en el bucle de la conexión, `ClientMsg::Ping` se contesta en el acto con `ServerMsg::Pong`")
    })?;
    Ok(before)
}

/// Every frame up to and including the next `state`.
async fn until_state(client: &mut WsClient, who: &str) -> Result<Vec<Value>, Failure> {
    let (state, mut frames) = client.recv_type("state").await.map_err(|failure| {
        Failure::new(format!("«{who}» no recibió el estado tras un tick"))
            .expected(r#"{"type":"state","tick":…,"coins":[…],"players":[…]}"#)
            .got(failure.got.unwrap_or(failure.what))
            .hint("`Game::tick` debe enviar `ServerMsg::state(..)` a la cola de cada sesión, y la conexión reenviar su cola al socket")
    })?;
    frames.push(state);
    Ok(frames)
}

async fn send_move(client: &mut WsClient, player: PlayerId, dir: &str) -> Result<(), Failure> {
    client
        .send_json(&json!({"type": "move", "player": player, "dir": dir}))
        .await
}

fn player_in(frame: &Value, id: PlayerId) -> Option<&Value> {
    frame["players"]
        .as_array()?
        .iter()
        .find(|player| player["id"] == id)
}

/// The frames of a transcript without their volatile parts (tokens).
fn redact(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .map(|frame| {
            let mut frame = frame.clone();
            if let Some(token) = frame.get_mut("token") {
                *token = json!("[token]");
            }
            if let Some(detail) = frame.get_mut("detail") {
                *detail = json!("[detalle]");
            }
            frame
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Núcleo
// ---------------------------------------------------------------------------------------------

async fn step_moves_one_cell() -> Result<(), Failure> {
    // An empty board around (2,1): every direction is free.
    let mut start = GameState::from_map(&[".....", ".....", "....."]);
    start.tick = 41;
    start.players.insert(
        7,
        Player {
            id: 7,
            name: "ana".into(),
            pos: Pos { x: 2, y: 1 },
            score: 0,
            connected: true,
        },
    );
    let idle = game::step(&start, &[]);
    if idle.state.tick != 42 {
        return Err(Failure::new("step sin entradas no avanzó el tick")
            .expected("tick 42 (el de entrada, 41, más uno)")
            .got(format!("tick {}", idle.state.tick))
            .hint("clona el estado y haz `next.tick += 1` siempre, haya entradas o no"));
    }
    if pos_of(&idle.state, 7) != Some(Pos { x: 2, y: 1 }) || !idle.rejected.is_empty() {
        return Err(
            Failure::new("step sin entradas cambió algo más que el tick")
                .expected("el mismo jugador en (2,1) y ningún rechazo")
                .got(format!(
                    "jugadores = {}, rechazados = {}",
                    to_json(&idle.state.players),
                    to_json(&idle.rejected)
                ))
                .hint("sin entradas, el estado nuevo es el de antes con `tick + 1`"),
        );
    }
    let cases = [
        (Direction::Up, Pos { x: 2, y: 0 }, "up resta 1 a y"),
        (Direction::Down, Pos { x: 2, y: 2 }, "down suma 1 a y"),
        (Direction::Left, Pos { x: 1, y: 1 }, "left resta 1 a x"),
        (Direction::Right, Pos { x: 3, y: 1 }, "right suma 1 a x"),
    ];
    for (dir, expected, rule) in cases {
        let result = game::step(&start, &[mv(7, 7, dir)]);
        if pos_of(&result.state, 7) != Some(expected) || result.state.tick != 42 {
            return Err(Failure::new(format!(
                "un movimiento {} desde (2,1) no llevó al jugador donde debía",
                to_json(&dir)
            ))
            .expected(format!("{} en el tick 42 ({rule})", to_json(&expected)))
            .got(format!(
                "{} en el tick {}; rechazados = {}",
                to_json(&pos_of(&result.state, 7)),
                result.state.tick,
                to_json(&result.rejected)
            ))
            .hint("usa `input.dir.apply(player.pos)` y guarda la casilla nueva en el jugador del estado clonado"));
        }
    }
    Ok(())
}

async fn step_collects_coins() -> Result<(), Failure> {
    let start = board(0, &[(1, 1, 0), (2, 0, 1)]);
    // Player 1 steps on the coin at (2,0); player 2 steps on the coin at (0,2).
    let result = game::step(
        &start,
        &[mv(1, 1, Direction::Right), mv(2, 2, Direction::Down)],
    );
    let scores: Vec<(PlayerId, u32)> = result
        .state
        .players
        .values()
        .map(|player| (player.id, player.score))
        .collect();
    let coins: BTreeSet<Pos> = [Pos { x: 4, y: 2 }].into();
    if scores != [(1, 1), (2, 1)] || result.state.coins != coins {
        return Err(Failure::new(
            "dos jugadores pisaron una moneda cada uno y no cambió lo que debía",
        )
        .expected(format!(
            "puntos [[1,1],[2,1]] y solo queda la moneda {}",
            to_json(&coins)
        ))
        .got(format!(
            "puntos {}, monedas {}",
            to_json(&scores),
            to_json(&result.state.coins)
        ))
        .hint(
            "tras mover: `if next.coins.remove(&destino) { jugador.score += 1 }`. Mira la Pista 3.",
        ));
    }
    // Standing still on nothing new scores nothing more.
    let again = game::step(&result.state, &[mv(1, 1, Direction::Right)]);
    if again.state.players.get(&1).map(|player| player.score) != Some(1) {
        return Err(
            Failure::new("pasar por una casilla sin moneda cambió los puntos")
                .expected("el jugador 1 sigue con 1 punto")
                .got(to_json(&again.state.players.get(&1)))
                .hint("suma un punto solo si había moneda en la casilla de destino"),
        );
    }
    Ok(())
}

async fn step_is_pure() -> Result<(), Failure> {
    let start = board(5, &[(1, 0, 0), (2, 1, 0), (3, 4, 0)]);
    let before = start.clone();
    let inputs = [
        mv(1, 1, Direction::Down),
        mv(2, 2, Direction::Right),
        mv(3, 3, Direction::Up),
        mv(3, 3, Direction::Left),
    ];
    let first = game::step(&start, &inputs);
    if start != before {
        return Err(Failure::new("step cambió el estado que recibió")
            .expected(to_json(&before))
            .got(to_json(&start))
            .hint("trabaja sobre una copia: `let mut next = state.clone();`"));
    }
    for _ in 0..5 {
        let again = game::step(&start, &inputs);
        if again != first {
            return Err(Failure::new(
                "step dio resultados distintos con el mismo estado y las mismas entradas",
            )
            .expected(to_json(&first))
            .got(to_json(&again))
            .hint("step no puede mirar el reloj, el azar ni un `HashMap` recorrido en su orden interno: solo sus argumentos, en su orden"));
        }
    }
    Ok(())
}

async fn step_transcript_matches() -> Result<(), Failure> {
    let mut state = board(0, &[(1, 0, 0), (2, 1, 0), (3, 4, 0)]);
    let script: Vec<Vec<Input>> = vec![
        vec![
            mv(1, 1, Direction::Down),
            mv(2, 2, Direction::Right),
            mv(3, 3, Direction::Down),
        ],
        vec![
            mv(1, 1, Direction::Down),
            mv(2, 2, Direction::Down),
            mv(3, 3, Direction::Down),
        ],
        vec![
            mv(2, 2, Direction::Down),
            mv(1, 1, Direction::Right),
            mv(3, 3, Direction::Left),
        ],
        // Order matters: 2 leaves (2,2) first, so 1 takes it and 3 finds it occupied.
        vec![
            mv(2, 2, Direction::Up),
            mv(1, 1, Direction::Right),
            mv(3, 3, Direction::Left),
        ],
        vec![
            mv(1, 3, Direction::Up),
            mv(3, 3, Direction::Down),
            mv(3, 3, Direction::Up),
            mv(2, 2, Direction::Left),
        ],
        vec![],
    ];
    let mut transcript = Vec::new();
    for inputs in &script {
        let result = game::step(&state, inputs);
        transcript.push(json!({
            "tick": result.state.tick,
            "inputs": inputs,
            "players": result.state.players.values().collect::<Vec<_>>(),
            "coins": result.state.coins,
            "rejected": result.rejected,
        }));
        state = result.state;
    }
    support::snapshot(
        "ej05_step_transcript",
        &Value::Array(transcript),
        "compara tick a tick: ¿aplicas las entradas en orden, una por jugador y tick, y rechazas con la razón de la regla 9–13 que toca?",
    )
}

async fn loop_ticks_once_per_period() -> Result<(), Failure> {
    tokio::time::pause();
    let game = new_game(50, 16);
    let task = tokio::spawn(game::tick_loop(game.clone(), PERIOD));
    settle().await;
    // Timers fire at millisecond granularity, rounded up: the interval's "immediate" first tick
    // needs the clock to move a little. From then on every deadline is 1 ms behind the clock.
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    let start = game.state().tick;
    let mut seen = vec![start];
    for _ in 0..3 {
        tokio::time::advance(PERIOD).await;
        settle().await;
        seen.push(game.state().tick);
    }
    task.abort();
    let expected: Vec<u64> = (start..=start + 3).collect();
    if start > 1 || seen != expected {
        return Err(Failure::new(
            "con el reloj de Tokio en pausa, cada periodo debía dar exactamente un tick",
        )
        .expected(format!(
            "el tick tras arrancar y tras cada periodo: {}",
            to_json(&expected)
        ))
        .got(to_json(&seen))
        .hint("`let mut ticks = tokio::time::interval(period);` y un `loop { ticks.tick().await; game.tick(); }`"));
    }
    Ok(())
}

async fn each_tick_broadcasts_to_everyone() -> Result<(), Failure> {
    let game = new_game(50, 16);
    let server = support::serve(game::app(game.clone())).await?;
    let (mut ana, _) = join_ws(&server, "ana").await?;
    let (mut bea, _) = join_ws(&server, "bea").await?;
    for tick in 1..=2u64 {
        game.tick();
        for (client, who) in [(&mut ana, "ana"), (&mut bea, "bea")] {
            let frames = until_state(client, who).await?;
            let state = frames.last().cloned().unwrap_or_default();
            let names: Vec<&str> = state["players"]
                .as_array()
                .map(|players| players.iter().filter_map(|p| p["name"].as_str()).collect())
                .unwrap_or_default();
            if state["tick"] != tick || names != ["ana", "bea"] {
                return Err(Failure::new(format!(
                    "el estado que recibió «{who}» tras el tick {tick} no es el de la partida"
                ))
                .expected(format!(
                    r#"{{"type":"state","tick":{tick},…}} con los jugadores ana y bea, en orden de id"#
                ))
                .got(support::render(&frames))
                .hint("difunde `ServerMsg::state(&inner.state)` después de guardar el estado nuevo, a todas las sesiones"));
            }
        }
    }
    Ok(())
}

async fn join_welcomes_with_id_token_and_map() -> Result<(), Failure> {
    let game = new_game(50, 16);
    let server = support::serve(game::app(game.clone())).await?;
    let (mut ana, first) = join_ws(&server, "ana").await?;
    let (_bea, second) = join_ws(&server, "bea").await?;
    let walls = json!([{"x": 1, "y": 1}, {"x": 3, "y": 1}]);
    for (welcome, id) in [(&first, 1), (&second, 2)] {
        let token_ok = welcome["token"]
            .as_str()
            .is_some_and(|token| !token.is_empty());
        if welcome["id"] != id
            || !token_ok
            || welcome["width"] != 5
            || welcome["height"] != 3
            || welcome["walls"] != walls
        {
            return Err(Failure::new("la bienvenida no trae lo que necesita el cliente")
                .expected(format!(
                    r#"{{"type":"welcome","id":{id},"token":"(no vacío)","width":5,"height":3,"walls":{walls}}}"#
                ))
                .got(welcome.to_string())
                .hint("ids 1, 2, 3… en orden de llegada (`next_id`), un token nuevo con `uuid::Uuid::new_v4()`, y `ServerMsg::welcome(id, &token, &game.state())`"));
        }
    }
    if first["token"] == second["token"] {
        return Err(Failure::new("dos jugadores recibieron el mismo token")
            .expected("un token distinto por jugador")
            .got(first["token"].to_string())
            .hint("crea el token en cada `join`: es lo que identifica al jugador al reconectar"));
    }
    let state = game.state();
    let placed: Vec<(PlayerId, Pos, bool)> = state
        .players
        .values()
        .map(|player| (player.id, player.pos, player.connected))
        .collect();
    let expected = vec![(1, Pos { x: 0, y: 0 }, true), (2, Pos { x: 1, y: 0 }, true)];
    if placed != expected {
        return Err(
            Failure::new("los jugadores nuevos no aparecieron donde debían")
                .expected(format!("[id, casilla, conectado] = {}", to_json(&expected)))
                .got(to_json(&placed))
                .hint("coloca a cada jugador nuevo en `state.free_cell()`, conectado"),
        );
    }
    game.tick();
    let frames = until_state(&mut ana, "ana").await?;
    let seen = frames.last().cloned().unwrap_or_default();
    if player_in(&seen, 2).is_none_or(|player| player["name"] != "bea") {
        return Err(
            Failure::new("el jugador que acaba de entrar no sale en el siguiente estado")
                .expected("el jugador 2, «bea», en `players`")
                .got(support::render(&frames))
                .hint("guarda el `Player` en `inner.state.players` al hacer join"),
        );
    }
    Ok(())
}

async fn leave_removes_at_once() -> Result<(), Failure> {
    let game = new_game(50, 16);
    let server = support::serve(game::app(game.clone())).await?;
    let (mut ana, _) = join_ws(&server, "ana").await?;
    let (mut bea, _) = join_ws(&server, "bea").await?;
    ana.send_json(&json!({"type": "leave"})).await?;
    // No tick happens here: only `leave` itself can remove the player.
    if let Err(state) = wait_for_state(&game, |state| !state.players.contains_key(&1)).await {
        return Err(Failure::new("ana envió leave y sigue en la partida")
            .expected("el jugador 1 fuera de `players` enseguida, sin esperar a la gracia")
            .got(to_json(&state.players.get(&1)))
            .hint("`ClientMsg::Leave` → `game.leave(id)`, que quita su sesión y su jugador (no es una desconexión)"));
    }
    game.tick();
    let frames = until_state(&mut bea, "bea").await?;
    let state = frames.last().cloned().unwrap_or_default();
    if player_in(&state, 1).is_some() || player_in(&state, 2).is_none() {
        return Err(
            Failure::new("tras el leave de ana, el estado difundido no es el esperado")
                .expected("solo el jugador 2 (bea) en `players`")
                .got(support::render(&frames))
                .hint("¿`leave` quita el jugador de `inner.state.players`?"),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Calidad
// ---------------------------------------------------------------------------------------------

async fn rejects_out_of_bounds() -> Result<(), Failure> {
    let start = board(3, &[(1, 0, 0), (2, 4, 2)]);
    let cases = [
        (mv(1, 1, Direction::Up), 1, Pos { x: 0, y: 0 }),
        (mv(1, 1, Direction::Left), 1, Pos { x: 0, y: 0 }),
        (mv(2, 2, Direction::Down), 2, Pos { x: 4, y: 2 }),
        (mv(2, 2, Direction::Right), 2, Pos { x: 4, y: 2 }),
    ];
    for (input, id, at) in cases {
        let result = game::step(&start, &[input]);
        expect_rejected(
            &format!("mover {} desde {}", to_json(&input.dir), to_json(&at)),
            &result,
            input,
            Reason::OutOfBounds,
            id,
            at,
            "comprueba `state.in_bounds(destino)` antes de mover; el `tick` del rechazo es el del estado nuevo",
        )?;
    }
    Ok(())
}

async fn rejects_walls() -> Result<(), Failure> {
    let start = board(0, &[(1, 1, 0), (2, 4, 1)]);
    let cases = [
        (mv(1, 1, Direction::Down), 1, Pos { x: 1, y: 0 }),
        (mv(2, 2, Direction::Left), 2, Pos { x: 4, y: 1 }),
    ];
    for (input, id, at) in cases {
        let result = game::step(&start, &[input]);
        expect_rejected(
            &format!(
                "mover {} desde {} hacia un muro",
                to_json(&input.dir),
                to_json(&at)
            ),
            &result,
            input,
            Reason::Wall,
            id,
            at,
            "comprueba `state.walls.contains(&destino)` antes de mover",
        )?;
    }
    Ok(())
}

async fn rejects_occupied_cells() -> Result<(), Failure> {
    let mut start = board(0, &[(1, 0, 0), (2, 1, 0), (3, 0, 2)]);
    // A disconnected player still stands on its cell.
    if let Some(player) = start.players.get_mut(&3) {
        player.connected = false;
    }
    let cases = [
        (
            mv(1, 1, Direction::Right),
            1,
            Pos { x: 0, y: 0 },
            "a la casilla del jugador 2",
        ),
        (
            mv(2, 2, Direction::Left),
            2,
            Pos { x: 1, y: 0 },
            "a la casilla del jugador 1",
        ),
    ];
    for (input, id, at, target) in cases {
        let result = game::step(&start, &[input]);
        expect_rejected(
            &format!("mover al jugador {id} {target}"),
            &result,
            input,
            Reason::Occupied,
            id,
            at,
            "comprueba `state.player_at(destino).is_none()` antes de mover",
        )?;
    }
    let mut below = board(0, &[(1, 0, 1), (3, 0, 2)]);
    if let Some(player) = below.players.get_mut(&3) {
        player.connected = false;
    }
    let input = mv(1, 1, Direction::Down);
    let result = game::step(&below, &[input]);
    expect_rejected(
        "mover al jugador 1 a la casilla de un jugador desconectado",
        &result,
        input,
        Reason::Occupied,
        1,
        Pos { x: 0, y: 1 },
        "un jugador desconectado (en su gracia) sigue ocupando su casilla: no mires `connected` aquí",
    )
}

async fn rejects_other_players() -> Result<(), Failure> {
    let start = board(0, &[(1, 0, 0), (2, 4, 0)]);
    let input = mv(1, 2, Direction::Down);
    let result = game::step(&start, &[input]);
    expect_rejected(
        "el jugador 1 intentó mover al jugador 2",
        &result,
        input,
        Reason::NotYourPlayer,
        2,
        Pos { x: 4, y: 0 },
        "el cliente escribe `player`, pero quien envía es `from`: si no coinciden, `Reason::NotYourPlayer`",
    )?;
    let ghost = mv(9, 9, Direction::Down);
    let result = game::step(&start, &[ghost]);
    let expected = game::Rejection {
        tick: 1,
        from: 9,
        player: 9,
        dir: Direction::Down,
        reason: Reason::NotYourPlayer,
    };
    if result.rejected != [expected] || result.state.players.len() != 2 {
        return Err(Failure::new("un movimiento de un jugador que no existe no se rechazó")
            .expected(format!("rejected = [{}] y los mismos 2 jugadores", to_json(&expected)))
            .got(format!(
                "rejected = {}, jugadores = {}",
                to_json(&result.rejected),
                to_json(&result.state.players)
            ))
            .hint("busca el jugador con `state.players.get(&input.player)`; si no está, también es `NotYourPlayer`"));
    }
    Ok(())
}

async fn rejects_too_many_moves() -> Result<(), Failure> {
    let start = board(0, &[(1, 0, 0), (2, 4, 0)]);
    let second = mv(1, 1, Direction::Right);
    let result = game::step(
        &start,
        &[mv(1, 1, Direction::Down), mv(2, 2, Direction::Down), second],
    );
    expect_rejected(
        "el jugador 1 pidió dos movimientos en el mismo tick",
        &result,
        second,
        Reason::TooManyMoves,
        1,
        Pos { x: 0, y: 1 },
        "cuenta los movimientos de cada `from` en el tick (un `HashMap<PlayerId, usize>`): a partir del segundo, `TooManyMoves`",
    )?;
    if pos_of(&result.state, 2) != Some(Pos { x: 4, y: 1 }) || result.rejected.len() != 1 {
        return Err(Failure::new("el límite de un jugador afectó a otro")
            .expected("el jugador 2 en (4,1) y un solo rechazo")
            .got(format!(
                "jugador 2 en {}, rechazados = {}",
                to_json(&pos_of(&result.state, 2)),
                to_json(&result.rejected)
            ))
            .hint("lleva la cuenta por jugador, no una cuenta global"));
    }
    // The first move counts even when it is rejected.
    let after_invalid = mv(1, 1, Direction::Down);
    let result = game::step(&start, &[mv(1, 1, Direction::Up), after_invalid]);
    expect_rejected(
        "el jugador 1 pidió salir del tablero y luego otro movimiento en el mismo tick",
        &result,
        after_invalid,
        Reason::TooManyMoves,
        1,
        Pos { x: 0, y: 0 },
        "el primer movimiento del tick cuenta aunque se rechace: suma a la cuenta antes de mirar el tablero",
    )
}

async fn rejection_reaches_only_the_mover() -> Result<(), Failure> {
    let game = new_game(50, 16);
    let server = support::serve(game::app(game.clone())).await?;
    let (mut ana, _) = join_ws(&server, "ana").await?;
    let (mut bea, _) = join_ws(&server, "bea").await?;
    // Ana stands at (0,0): up leaves the board.
    send_move(&mut ana, 1, "up").await?;
    sync(&mut ana, "ana").await?;
    game.tick();
    let frames = until_state(&mut ana, "ana").await?;
    let expected = json!({"type": "rejected", "tick": 1, "from": 1, "player": 1, "dir": "up", "reason": "out_of_bounds"});
    if frames.first() != Some(&expected) || frames.len() != 2 {
        return Err(Failure::new("ana movió fuera del tablero y no recibió su rechazo antes del estado")
            .expected(format!("{expected}  y luego el frame state del tick 1"))
            .got(support::render(&frames))
            .hint("en `Game::tick`, envía cada `ServerMsg::Rejected(r)` a la sesión de `r.from` antes de difundir el estado"));
    }
    let frames = until_state(&mut bea, "bea").await?;
    if frames.len() != 1 {
        return Err(
            Failure::new("bea recibió el rechazo de un movimiento de ana")
                .expected("solo el frame state del tick 1")
                .got(support::render(&frames))
                .hint("el rechazo es privado: va solo a la sesión de `from`, no a todos"),
        );
    }
    Ok(())
}

async fn loop_does_not_burst() -> Result<(), Failure> {
    tokio::time::pause();
    let game = new_game(50, 16);
    let task = tokio::spawn(game::tick_loop(game.clone(), PERIOD));
    settle().await;
    // Timers fire at millisecond granularity, rounded up: the interval's "immediate" first tick
    // needs the clock to move a little. From then on every deadline is 1 ms behind the clock.
    tokio::time::advance(Duration::from_millis(1)).await;
    settle().await;
    let start = game.state().tick;
    // The process "freezes" for five periods.
    tokio::time::advance(PERIOD * 5).await;
    settle().await;
    let after_freeze = game.state().tick;
    tokio::time::advance(PERIOD * 2).await;
    settle().await;
    let later = game.state().tick;
    task.abort();
    if after_freeze == start {
        return Err(Failure::new("tras cinco periodos sin atender, el bucle no hizo ningún tick")
            .expected(format!("un tick (el {})", start + 1))
            .got(format!("el tick sigue en {after_freeze}"))
            .hint("`tick_loop` debe usar `tokio::time::interval(period)` y llamar a `game.tick()` en cada vuelta"));
    }
    if after_freeze - start > 1 {
        return Err(Failure::new(format!(
            "tras cinco periodos atascado, el bucle disparó {} ticks seguidos",
            after_freeze - start
        ))
        .expected("un solo tick, y seguir al ritmo de siempre")
        .got(format!("del tick {start} al {after_freeze} de golpe"))
        .hint("el valor por defecto de un interval es `MissedTickBehavior::Burst`: usa `set_missed_tick_behavior(MissedTickBehavior::Skip)` (o `Delay`)"));
    }
    if later <= after_freeze {
        return Err(Failure::new("tras el atasco, el bucle dejó de hacer ticks")
            .expected("más ticks en los periodos siguientes")
            .got(format!("el tick sigue en {later}"))
            .hint("el bucle debe seguir: `loop { ticks.tick().await; game.tick(); }`"));
    }
    Ok(())
}

async fn grace_keeps_the_player() -> Result<(), Failure> {
    let game = new_game(3, 16);
    let ana = game
        .join("ana")
        .map_err(|error| Failure::new("join falló en una partida vacía").got(error.to_string()))?;
    let mut bea = game
        .join("bea")
        .map_err(|error| Failure::new("join falló con sitio de sobra").got(error.to_string()))?;
    game.disconnect(ana.id, ana.session);
    let expected = Player {
        id: ana.id,
        name: "ana".into(),
        pos: Pos { x: 0, y: 0 },
        score: 0,
        connected: false,
    };
    for tick in 0..3u64 {
        let state = game.state();
        if state.players.get(&ana.id) != Some(&expected) {
            return Err(Failure::new(format!(
                "ana se desconectó en el tick 0 con 3 ticks de gracia, y en el tick {tick} su jugador no está como debía"
            ))
            .expected(to_json(&expected))
            .got(to_json(&state.players.get(&ana.id)))
            .hint("`disconnect` no quita al jugador: lo marca `connected: false` y apunta `disconnected_at`"));
        }
        game.tick();
    }
    let state = game.state();
    if state.players.contains_key(&ana.id) {
        return Err(Failure::new("pasados los 3 ticks de gracia, ana sigue en la partida")
            .expected("sin el jugador 1 en el tick 3")
            .got(to_json(&state.players.get(&ana.id)))
            .hint("en `tick`, quita a quien cumple `tick - disconnected_at >= grace_ticks` (su sesión y su jugador)"));
    }
    let mut last = None;
    while let Ok(frame) = bea.outbox.try_recv() {
        last = Some(frame);
    }
    let gone = matches!(&last, Some(ServerMsg::State { tick: 3, players, .. }) if players.iter().all(|p| p.id != ana.id));
    if !gone {
        return Err(
            Failure::new("el último estado que recibió bea no refleja la salida de ana")
                .expected("un state del tick 3 sin el jugador 1")
                .got(to_json(&last))
                .hint("retira a los jugadores caducados antes de construir el frame que difundes"),
        );
    }
    Ok(())
}

async fn rejoin_returns_the_same_player() -> Result<(), Failure> {
    let game = new_game(50, 16);
    let server = support::serve(game::app(game.clone())).await?;
    let (mut ana, welcome) = join_ws(&server, "ana").await?;
    let token = welcome["token"].as_str().unwrap_or_default().to_owned();
    // Ana walks to the coin at (2,0): one point.
    for _ in 0..2 {
        send_move(&mut ana, 1, "right").await?;
        sync(&mut ana, "ana").await?;
        game.tick();
        until_state(&mut ana, "ana").await?;
    }
    let before = game.state().players.get(&1).cloned();
    hang_up(ana).await;
    if let Err(state) = wait_for_state(&game, |state| {
        state
            .players
            .get(&1)
            .is_some_and(|player| !player.connected)
    })
    .await
    {
        return Err(Failure::new("ana cerró su WebSocket y su jugador no quedó desconectado")
            .expected("el jugador 1 con `connected: false` (sigue en la partida, en su gracia)")
            .got(to_json(&state.players.get(&1)))
            .hint("cuando el bucle de la conexión termina sin `leave`, llama a `game.disconnect(id, session)`"));
    }
    let mut back = WsClient::connect(&server.ws_url("/ws")).await?;
    back.send_json(&json!({"type": "rejoin", "token": token}))
        .await?;
    let (again, skipped) = back.recv_type("welcome").await.map_err(|failure| {
        failure.hint("`rejoin` con un token válido debe responder welcome con el mismo id")
    })?;
    if again["id"] != 1 || again["token"] != token.as_str() {
        return Err(Failure::new("ana volvió con su token y no recuperó su jugador")
            .expected(r#"{"type":"welcome","id":1,"token":(el mismo),…}"#)
            .got(format!("{}  {again}", support::render(&skipped)))
            .hint("`ClientMsg::Rejoin` → `game.rejoin(&token)`: busca la sesión por token y devuelve su id"));
    }
    let mut expected = before.clone();
    if let Some(player) = expected.as_mut() {
        player.connected = true;
    }
    let now = game.state().players.get(&1).cloned();
    if now != expected || before.as_ref().is_none_or(|player| player.score != 1) {
        return Err(
            Failure::new("tras volver, el jugador de ana no es el que dejó")
                .expected(format!(
                    "{} (misma casilla y puntos, conectado)",
                    to_json(&expected)
                ))
                .got(to_json(&now))
                .hint("`rejoin` no crea un jugador nuevo: marca el existente `connected: true`"),
        );
    }
    game.tick();
    let frames = until_state(&mut back, "ana (de vuelta)").await?;
    let state = frames.last().cloned().unwrap_or_default();
    if player_in(&state, 1).is_none_or(|player| player["connected"] != true) {
        return Err(Failure::new(
            "la conexión nueva de ana no recibe el estado con ella conectada",
        )
        .expected("un state con el jugador 1 y `connected: true`")
        .got(support::render(&frames))
        .hint("`rejoin` abre una cola nueva para la sesión nueva y la devuelve en `Joined`"));
    }
    Ok(())
}

async fn rejects_unknown_and_expired_tokens() -> Result<(), Failure> {
    let game = new_game(2, 16);
    let server = support::serve(game::app(game.clone())).await?;
    let mut stranger = WsClient::connect(&server.ws_url("/ws")).await?;
    stranger
        .send_json(&json!({"type": "rejoin", "token": "no-existe"}))
        .await?;
    let answer = stranger.recv_json().await.map_err(|failure| {
        failure
            .expected(r#"{"type":"error","code":"unknown_token",…}"#)
            .hint("con `Err(error)` de `game.rejoin`, envía `ServerMsg::error(error.code(), ..)`")
    })?;
    if answer["type"] != "error" || answer["code"] != "unknown_token" {
        return Err(Failure::new("un rejoin con un token inventado no se rechazó")
            .expected(r#"{"type":"error","code":"unknown_token",…}"#)
            .got(answer.to_string())
            .hint("`rejoin` devuelve `Err(JoinError::UnknownToken)` si ninguna sesión tiene ese token"));
    }
    // The connection stays usable after a refusal.
    sync(&mut stranger, "quien trajo un token inventado").await?;

    let (ana, welcome) = join_ws(&server, "ana").await?;
    let token = welcome["token"].as_str().unwrap_or_default().to_owned();
    hang_up(ana).await;
    if let Err(state) = wait_for_state(&game, |state| {
        state
            .players
            .get(&1)
            .is_some_and(|player| !player.connected)
    })
    .await
    {
        return Err(Failure::new("ana cerró su WebSocket y su jugador no quedó desconectado")
            .expected("el jugador 1 con `connected: false`")
            .got(to_json(&state.players.get(&1)))
            .hint("cuando el bucle de la conexión termina sin `leave`, llama a `game.disconnect(id, session)`"));
    }
    game.tick();
    game.tick();
    let mut late = WsClient::connect(&server.ws_url("/ws")).await?;
    late.send_json(&json!({"type": "rejoin", "token": token}))
        .await?;
    let answer = late.recv_json().await.map_err(|failure| {
        failure
            .expected(r#"{"type":"error","code":"unknown_token",…} al volver pasada la gracia"#)
            .hint("un `rejoin` con un token que ya no existe se contesta con `unknown_token`, nunca con silencio")
    })?;
    if answer["type"] != "error" || answer["code"] != "unknown_token" {
        return Err(Failure::new("ana volvió pasada su gracia (2 ticks) y se le aceptó el token")
            .expected(r#"{"type":"error","code":"unknown_token",…}"#)
            .got(answer.to_string())
            .hint("al caducar la gracia, quita también la sesión (con su token), no solo el jugador"));
    }
    Ok(())
}

async fn stale_session_does_not_disconnect() -> Result<(), Failure> {
    let game = new_game(50, 16);
    let mut old = game
        .join("ana")
        .map_err(|error| Failure::new("join falló en una partida vacía").got(error.to_string()))?;
    let mut new = game.rejoin(&old.token).map_err(|error| {
        Failure::new("rejoin con el token de un jugador conectado falló")
            .expected("el mismo jugador, con una sesión nueva")
            .got(error.to_string())
            .hint("un jugador puede volver aunque el servidor aún no haya visto caer su conexión vieja")
    })?;
    if new.id != old.id || new.session == old.session {
        return Err(
            Failure::new("rejoin no abrió una sesión nueva para el mismo jugador")
                .expected(format!(
                    "id {} y una session distinta de {}",
                    old.id, old.session
                ))
                .got(format!("id {}, session {}", new.id, new.session))
                .hint("da un número de sesión nuevo en cada join y rejoin (`open_session`)"),
        );
    }
    // The old connection notices it was replaced and ends, as a handler would.
    game.disconnect(old.id, old.session);
    let connected = game
        .state()
        .players
        .get(&old.id)
        .map(|player| player.connected);
    if connected != Some(true) {
        return Err(Failure::new("el cierre de la conexión vieja desconectó al jugador que ya había vuelto")
            .expected("el jugador sigue `connected: true`")
            .got(format!("connected = {}", to_json(&connected)))
            .hint("en `disconnect`, compara `session` con la sesión actual del jugador: si es otra, no hagas nada"));
    }
    game.tick();
    let got_state = matches!(new.outbox.try_recv(), Ok(ServerMsg::State { tick: 1, .. }));
    let old_closed = loop {
        match old.outbox.try_recv() {
            Ok(_) => continue,
            Err(TryRecvError::Disconnected) => break true,
            Err(TryRecvError::Empty) => break false,
        }
    };
    if !got_state || !old_closed {
        return Err(Failure::new("tras el rejoin, los frames no van a la conexión nueva")
            .expected("el state del tick 1 en la cola nueva, y la cola vieja cerrada")
            .got(format!(
                "state en la cola nueva: {got_state}; cola vieja cerrada: {old_closed}"
            ))
            .hint("en `rejoin`, sustituye el `Sender` de la sesión por el de la cola nueva: soltar el viejo la cierra"));
    }
    game.disconnect(new.id, new.session);
    let connected = game
        .state()
        .players
        .get(&new.id)
        .map(|player| player.connected);
    if connected != Some(false) {
        return Err(
            Failure::new("el cierre de la conexión actual no desconectó al jugador")
                .expected("`connected: false`")
                .got(format!("connected = {}", to_json(&connected)))
                .hint("con la sesión actual, `disconnect` sí marca al jugador desconectado"),
        );
    }
    Ok(())
}

async fn malformed_frames_get_errors() -> Result<(), Failure> {
    let game = new_game(50, 16);
    let server = support::serve(game::app(game.clone())).await?;
    let (mut ana, _) = join_ws(&server, "ana").await?;
    let bad = [
        ("JSON roto", "esto no es json".to_owned()),
        ("un tipo desconocido", json!({"type": "volar"}).to_string()),
        (
            "una dirección que no existe",
            json!({"type": "move", "player": 1, "dir": "diagonal"}).to_string(),
        ),
        (
            "un move sin jugador",
            json!({"type": "move", "dir": "up"}).to_string(),
        ),
    ];
    for (what, text) in &bad {
        ana.send_text(text).await?;
        let answer = ana.recv_json().await.map_err(|failure| {
            Failure::new(format!("tras enviar {what}, no llegó respuesta"))
                .expected(r#"{"type":"error","code":"bad_frame",…}"#)
                .got(failure.got.unwrap_or(failure.what))
                .hint("si `serde_json::from_str::<ClientMsg>` falla, contesta `ServerMsg::error(\"bad_frame\", ..)` y sigue en el bucle")
        })?;
        if answer["type"] != "error" || answer["code"] != "bad_frame" {
            return Err(
                Failure::new(format!("{what} no recibió el error bad_frame"))
                    .expected(r#"{"type":"error","code":"bad_frame",…}"#)
                    .got(answer.to_string())
                    .hint("un frame que no es un `ClientMsg` válido se contesta con `bad_frame`"),
            );
        }
    }
    let binary = tokio::time::timeout(
        support::WAIT,
        futures_util::SinkExt::send(ana.stream(), Message::binary(vec![1u8, 2, 3])),
    )
    .await;
    if !matches!(binary, Ok(Ok(()))) {
        return Err(Failure::new("no se pudo enviar un frame binario"));
    }
    let answer = ana.recv_json().await.map_err(|failure| {
        failure
            .expected(r#"{"type":"error","code":"bad_frame",…} por un frame binario"#)
            .hint("`Message::Binary(_)` también es un frame que no entiendes: contesta `bad_frame` y sigue en el bucle")
    })?;
    if answer["type"] != "error" || answer["code"] != "bad_frame" {
        return Err(Failure::new("un frame binario no recibió el error bad_frame")
            .expected(r#"{"type":"error","code":"bad_frame",…}"#)
            .got(answer.to_string())
            .hint("`Message::Binary(_)` también es un frame que no entiendes: contesta `bad_frame`"));
    }
    sync(&mut ana, "ana").await.map_err(|failure| {
        failure.hint("tras un frame malformado la conexión sigue abierta: contesta el error y vuelve al bucle")
    })?;
    let state = game.state();
    if state
        .players
        .get(&1)
        .is_none_or(|player| !player.connected || player.pos != Pos { x: 0, y: 0 })
    {
        return Err(Failure::new("los frames malformados cambiaron al jugador")
            .expected("el jugador 1 en (0,0), conectado")
            .got(to_json(&state.players.get(&1)))
            .hint("un frame malformado no se convierte en movimiento ni cierra la sesión"));
    }
    Ok(())
}

async fn slow_reader_is_dropped() -> Result<(), Failure> {
    let game = new_game(50, 4);
    let mut slow = game
        .join("lento")
        .map_err(|error| Failure::new("join falló en una partida vacía").got(error.to_string()))?;
    let mut fast = game
        .join("rapido")
        .map_err(|error| Failure::new("join falló con sitio de sobra").got(error.to_string()))?;
    for tick in 1..=10u64 {
        game.tick();
        let got = fast.outbox.try_recv();
        if !matches!(&got, Ok(ServerMsg::State { tick: t, .. }) if *t == tick) {
            return Err(Failure::new(format!(
                "con un jugador que no lee, el que sí lee no recibió el estado del tick {tick}"
            ))
            .expected(format!("un state del tick {tick} en su cola"))
            .got(format!("{got:?}"))
            .hint(
                "un cliente lento no debe afectar a los demás: `try_send` a cada cola, sin esperar",
            ));
        }
    }
    let mut queued = 0;
    let closed = loop {
        match slow.outbox.try_recv() {
            Ok(_) => queued += 1,
            Err(TryRecvError::Disconnected) => break true,
            Err(TryRecvError::Empty) => break false,
        }
    };
    if queued > 4 || !closed {
        return Err(Failure::new(
            "el jugador que no lee acumuló frames sin límite o siguió conectado",
        )
        .expected("como mucho 4 frames en su cola (`GameConfig::outbox`) y la cola cerrada")
        .got(format!("{queued} frames; cola cerrada: {closed}"))
        .hint("crea cada cola con `mpsc::channel(config.outbox)`; con `TrySendError::Full`, `mark_disconnected` (suelta su `Sender`)"));
    }
    let connected = game
        .state()
        .players
        .get(&slow.id)
        .map(|player| player.connected);
    if connected != Some(false) {
        return Err(
            Failure::new("el jugador lento no quedó marcado como desconectado")
                .expected("`connected: false`: puede volver con su token durante la gracia")
                .got(format!("connected = {}", to_json(&connected)))
                .hint(
                    "un cliente al que no podemos escribir está, a efectos del juego, desconectado",
                ),
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Integración
// ---------------------------------------------------------------------------------------------

async fn move_before_join_is_refused() -> Result<(), Failure> {
    let game = new_game(50, 16);
    let server = support::serve(game::app(game.clone())).await?;
    let mut client = WsClient::connect(&server.ws_url("/ws")).await?;
    send_move(&mut client, 1, "down").await?;
    let answer = client.recv_json().await.map_err(|failure| {
        failure
            .expected(r#"{"type":"error","code":"not_joined",…}"#)
            .hint("en `handshake`, un `move` o un `leave` antes de `join` se contesta con `not_joined` (y sigues esperando el join)")
    })?;
    if answer["type"] != "error" || answer["code"] != "not_joined" {
        return Err(
            Failure::new("un move antes de join no recibió el error not_joined")
                .expected(r#"{"type":"error","code":"not_joined",…}"#)
                .got(answer.to_string())
                .hint("sin jugador no hay a quién mover: contesta `not_joined`"),
        );
    }
    if !game.state().players.is_empty() {
        return Err(
            Failure::new("un move antes de join creó o movió un jugador")
                .expected("ningún jugador")
                .got(to_json(&game.state().players)),
        );
    }
    client
        .send_json(&json!({"type": "join", "name": "ana"}))
        .await?;
    let (welcome, _) = client.recv_type("welcome").await.map_err(|failure| {
        failure.hint("tras un not_joined, la conexión sigue esperando su join")
    })?;
    if welcome["id"] != 1 {
        return Err(Failure::new("el join tras el error no dio el jugador 1")
            .expected(r#"{"type":"welcome","id":1,…}"#)
            .got(welcome.to_string()));
    }
    Ok(())
}

async fn real_loop_broadcasts_over_websocket() -> Result<(), Failure> {
    let game = new_game(50, 16);
    let server = support::serve(game::app(game.clone())).await?;
    let ticker = tokio::spawn(game::tick_loop(game.clone(), Duration::from_millis(20)));
    let result = async {
        let (mut ana, _) = join_ws(&server, "ana").await?;
        let (mut bea, _) = join_ws(&server, "bea").await?;
        for (client, who) in [(&mut ana, "ana"), (&mut bea, "bea")] {
            let mut ticks = Vec::new();
            for _ in 0..3 {
                let frames = until_state(client, who).await?;
                ticks.push(
                    frames
                        .last()
                        .map(|frame| frame["tick"].clone())
                        .unwrap_or_default(),
                );
            }
            let increasing = ticks
                .windows(2)
                .all(|pair| pair[0].as_u64() < pair[1].as_u64());
            if !increasing {
                return Err(Failure::new(format!(
                    "con `tick_loop` cada 20 ms, «{who}» no recibió estados de ticks sucesivos"
                ))
                .expected("tres frames state con `tick` creciente")
                .got(to_json(&ticks))
                .hint(
                    "`tick_loop` llama a `game.tick()` en cada vuelta, y `tick` difunde el estado",
                ));
            }
        }
        Ok(())
    }
    .await;
    ticker.abort();
    result
}

async fn three_player_transcript_matches() -> Result<(), Failure> {
    let game = new_game(50, 16);
    let server = support::serve(game::app(game.clone())).await?;
    let (mut ana, ana_welcome) = join_ws(&server, "ana").await?;
    let (mut bea, bea_welcome) = join_ws(&server, "bea").await?;
    let (mut caro, caro_welcome) = join_ws(&server, "caro").await?;
    let caro_token = caro_welcome["token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut seen_ana = vec![ana_welcome];
    let mut seen_bea = vec![bea_welcome];
    let mut seen_caro = vec![caro_welcome];

    // Tick 1: everybody sees everybody.
    game.tick();
    seen_ana.extend(until_state(&mut ana, "ana").await?);
    seen_bea.extend(until_state(&mut bea, "bea").await?);
    seen_caro.extend(until_state(&mut caro, "caro").await?);

    // Tick 2: one valid move each, plus the invalid ones (none interact across players, so the
    // order in which the three connections deliver them does not matter).
    send_move(&mut ana, 1, "down").await?;
    send_move(&mut bea, 2, "down").await?;
    send_move(&mut caro, 1, "right").await?;
    send_move(&mut caro, 3, "right").await?;
    send_move(&mut caro, 3, "down").await?;
    seen_ana.extend(sync(&mut ana, "ana").await?);
    seen_bea.extend(sync(&mut bea, "bea").await?);
    seen_caro.extend(sync(&mut caro, "caro").await?);
    game.tick();
    seen_ana.extend(until_state(&mut ana, "ana").await?);
    seen_bea.extend(until_state(&mut bea, "bea").await?);
    seen_caro.extend(until_state(&mut caro, "caro").await?);

    // Tick 3: ana leaves.
    ana.send_json(&json!({"type": "leave"})).await?;
    if let Err(state) = wait_for_state(&game, |state| !state.players.contains_key(&1)).await {
        return Err(Failure::new("ana envió leave y sigue en la partida")
            .got(to_json(&state.players.get(&1)))
            .hint("`ClientMsg::Leave` → `game.leave(id)`"));
    }
    game.tick();
    seen_bea.extend(until_state(&mut bea, "bea").await?);
    seen_caro.extend(until_state(&mut caro, "caro").await?);

    // Tick 4: caro's connection drops.
    hang_up(caro).await;
    if let Err(state) = wait_for_state(&game, |state| {
        state
            .players
            .get(&3)
            .is_some_and(|player| !player.connected)
    })
    .await
    {
        return Err(
            Failure::new("caro cerró su WebSocket y no quedó desconectada")
                .got(to_json(&state.players.get(&3)))
                .hint("al terminar el bucle sin `leave`, `game.disconnect(id, session)`"),
        );
    }
    game.tick();
    seen_bea.extend(until_state(&mut bea, "bea").await?);

    // Tick 5: caro comes back with her token.
    let mut back = WsClient::connect(&server.ws_url("/ws")).await?;
    back.send_json(&json!({"type": "rejoin", "token": caro_token}))
        .await?;
    let (welcome, skipped) = back.recv_type("welcome").await?;
    let mut seen_back = skipped;
    seen_back.push(welcome);
    game.tick();
    seen_bea.extend(until_state(&mut bea, "bea").await?);
    seen_back.extend(until_state(&mut back, "caro (de vuelta)").await?);

    let transcript = json!({
        "ana": redact(&seen_ana),
        "bea": redact(&seen_bea),
        "caro": redact(&seen_caro),
        "caro_de_vuelta": redact(&seen_back),
    });
    support::snapshot(
        "ej05_three_players",
        &transcript,
        "lee el diff frame a frame: cada cliente ve su welcome, un state por tick, y sus rechazos (solo los suyos) justo antes del state de ese tick",
    )
}
