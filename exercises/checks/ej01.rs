//! Las comprobaciones del ejercicio 1 (chat por WebSocket con salas), en el orden de las reglas
//! de `exercises/src/ej01_websocket_chat.rs`.
//!
//! Every check serves the code under test on 127.0.0.1 port 0 and talks to it with real
//! WebSocket clients; only rule 10 (the bounded queue) drives the hub directly, because a TCP
//! socket would absorb a slow client's frames in its kernel buffers for a long while.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, Message};

use super::registry::{Block, Check, Failure};
use super::support::{self, WsClient};
use crate::ej01_websocket_chat::{self as chat, Hub, Membership, ServerFrame};

const NICKS: &str = "Apodos y avisos de entrada y salida";
const SALAS: &str = "Difusión por salas";
const ERRORES: &str = "Errores y desconexiones";
const COLA: &str = "Cola acotada por conexión";
const HUB: &str = "Hub reutilizable y concurrente";

const TIMEOUT: Duration = Duration::from_secs(8);

pub fn checks() -> Vec<Check> {
    let check = |block, criterion, points, title, run| Check {
        exercise: 1,
        block,
        criterion,
        points,
        title,
        timeout: TIMEOUT,
        run,
    };
    vec![
        check(
            Block::Nucleo,
            NICKS,
            2,
            "rechaza con 400 un nick inválido antes del upgrade",
            |_| Box::pin(rejects_bad_nicks()),
        ),
        check(
            Block::Nucleo,
            NICKS,
            2,
            "da la bienvenida con los miembros de la sala",
            |_| Box::pin(welcomes_with_members()),
        ),
        check(
            Block::Nucleo,
            NICKS,
            3,
            "avisa a la sala cuando alguien entra y cuando sale",
            |_| Box::pin(announces_joins_and_leaves()),
        ),
        check(
            Block::Nucleo,
            SALAS,
            3,
            "difunde cada mensaje a toda la sala, también a quien lo escribe",
            |_| Box::pin(broadcasts_to_the_whole_room()),
        ),
        check(
            Block::Nucleo,
            SALAS,
            3,
            "difunde solo dentro de la sala",
            |_| Box::pin(broadcasts_only_within_the_room()),
        ),
        check(
            Block::Nucleo,
            SALAS,
            2,
            "la conversación coincide con la de referencia",
            |_| Box::pin(transcript_matches_the_reference()),
        ),
        check(
            Block::Calidad,
            ERRORES,
            2,
            "responde a un frame malformado con un error y la conexión sigue viva",
            |_| Box::pin(survives_malformed_frames()),
        ),
        check(
            Block::Calidad,
            ERRORES,
            1,
            "rechaza un mensaje vacío o demasiado largo con invalid_message",
            |_| Box::pin(rejects_bad_messages()),
        ),
        check(
            Block::Calidad,
            ERRORES,
            2,
            "un cliente que desaparece sale de la sala y los demás reciben left",
            |_| Box::pin(vanished_client_leaves()),
        ),
        check(
            Block::Calidad,
            COLA,
            2,
            "expulsa a un cliente lento cuando su cola se llena, sin frenar la sala",
            |_| Box::pin(kicks_slow_clients()),
        ),
        check(
            Block::Integracion,
            HUB,
            1,
            "el hub difunde también lo que llega de fuera del WebSocket",
            |_| Box::pin(hub_broadcasts_from_outside()),
        ),
        check(
            Block::Integracion,
            HUB,
            1,
            "diez clientes a la vez reciben cada mensaje una vez y en orden",
            |_| Box::pin(ten_clients_in_order()),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Helpers

/// Connects `nick` to `room` and returns the client and its `welcome` frame.
async fn join(
    server: &support::Server,
    nick: &str,
    room: &str,
) -> Result<(WsClient, Value), Failure> {
    let mut client =
        WsClient::connect(&server.ws_url(&format!("/ws?nick={nick}&room={room}"))).await?;
    let welcome = client.recv_json().await.map_err(|failure| {
        failure
            .expected(format!("un frame welcome para «{nick}» nada más conectar"))
            .hint("Al empezar `handle_socket`, tras `hub.join`, manda `ServerFrame::Welcome`. Mira la Pista 3.")
    })?;
    if welcome["type"] != "welcome" {
        return Err(
            Failure::new(format!("lo primero que recibió «{nick}» no fue su welcome"))
                .expected("{\"type\":\"welcome\",\"room\":…,\"nick\":…,\"members\":[…]}")
                .got(welcome.to_string())
                .hint("Manda el welcome antes de entrar en el bucle del `select!`."),
        );
    }
    Ok((client, welcome))
}

async fn send_message(client: &mut WsClient, text: &str) -> Result<(), Failure> {
    client
        .send_json(&json!({"type": "message", "text": text}))
        .await
}

/// Sends a `ping` and returns every frame that arrived before its `pong`: the sentinel that proves
/// something did NOT arrive without waiting for a timeout.
async fn frames_before_pong(client: &mut WsClient) -> Result<Vec<Value>, Failure> {
    client.send_json(&json!({"type": "ping"})).await?;
    let (_pong, before) = client.recv_type("pong").await.map_err(|failure| {
        failure.hint("Contesta `{\"type\":\"ping\"}` con `ServerFrame::Pong`: las comprobaciones lo usan para saber que no llegó nada más.")
    })?;
    Ok(before)
}

/// Receives the next frame and requires it to be `expected` exactly.
async fn expect_frame(
    client: &mut WsClient,
    who: &str,
    expected: Value,
    hint: &str,
) -> Result<(), Failure> {
    let got = client
        .recv_json()
        .await
        .map_err(|failure| failure.expected(expected.to_string()).hint(hint.to_owned()))?;
    if got == expected {
        Ok(())
    } else {
        Err(Failure::new(format!("«{who}» recibió otro frame"))
            .expected(expected.to_string())
            .got(got.to_string())
            .hint(hint.to_owned()))
    }
}

/// Waits, bounded, until the hub lists exactly `want` in `room`.
async fn wait_members(hub: &Hub, room: &str, want: &[&str]) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + support::WAIT;
    loop {
        let members = hub.members(room);
        if members == want {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::new(format!("el hub no tiene los miembros esperados en «{room}»"))
                .expected(format!("{want:?}"))
                .got(format!("{members:?}"))
                .hint("Cuando la conexión termina (como sea), llama a `hub.leave(&room, id)` al salir del bucle."));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Núcleo

async fn rejects_bad_nicks() -> Result<(), Failure> {
    let server = support::serve(chat::app()).await?;
    let long = format!("/ws?nick={}", "a".repeat(21));
    let cases = [
        ("/ws?nick=", "un nick vacío"),
        ("/ws?nick=ana%20maria", "un nick con espacios"),
        ("/ws?nick=ana!", "un nick con «!»"),
        (long.as_str(), "un nick de 21 caracteres"),
        ("/ws", "sin ?nick="),
        ("/ws?nick=ana&room=sala%20mala", "una sala con espacios"),
    ];
    for (path, case) in cases {
        let url = server.ws_url(path);
        let status = match tokio::time::timeout(
            support::WAIT,
            tokio_tungstenite::connect_async(&url),
        )
        .await
        {
            Err(_) => {
                return Err(Failure::new(format!(
                    "con {case} el servidor no respondió a tiempo"
                )));
            }
            Ok(Ok(_)) => {
                return Err(Failure::new(format!("con {case} se abrió el WebSocket"))
                    .expected(format!("400 Bad Request antes del upgrade ({path})"))
                    .got("101 Switching Protocols")
                    .hint("Valida `nick` y `room` con `validate_name` ANTES de `upgrade.on_upgrade(...)`."));
            }
            Ok(Err(tungstenite::Error::Http(response))) => response.status(),
            Ok(Err(error)) => {
                return Err(Failure::new(format!("con {case} la conexión falló sin respuesta HTTP"))
                    .expected("400 Bad Request")
                    .got(error.to_string())
                    .hint("Responde `(StatusCode::BAD_REQUEST, motivo).into_response()`; ¿el handler entra en pánico?"));
            }
        };
        if status != 400 {
            return Err(Failure::new(format!("con {case} la respuesta no fue 400"))
                .expected("400 Bad Request")
                .got(status.to_string())
                .hint("Los parámetros son `Option`: si falta el nick o no vale, devuelve 400 tú mismo."));
        }
    }
    // A valid nick still connects: the rule is about rejecting only what is invalid.
    join(&server, "ana_1-B", "general").await?;
    Ok(())
}

async fn welcomes_with_members() -> Result<(), Failure> {
    let server = support::serve(chat::app()).await?;
    let (_bea, welcome) = join(&server, "bea", "sala").await?;
    let expected = json!({"type": "welcome", "room": "sala", "nick": "bea", "members": ["bea"]});
    if welcome != expected {
        return Err(
            Failure::new("el welcome de la primera en entrar no es el esperado")
                .expected(expected.to_string())
                .got(welcome.to_string())
                .hint("`Hub::join` devuelve en `members` los apodos de la sala, él incluido."),
        );
    }
    let (_ana, welcome) = join(&server, "ana", "sala").await?;
    let expected =
        json!({"type": "welcome", "room": "sala", "nick": "ana", "members": ["ana", "bea"]});
    if welcome != expected {
        return Err(
            Failure::new("el welcome de la segunda no lista a los dos, ordenados")
                .expected(expected.to_string())
                .got(welcome.to_string())
                .hint("Ordena los apodos (`nicks.sort()`) después de insertar al que entra."),
        );
    }
    // Without `?room=` the room is `general`.
    let mut client = WsClient::connect(&server.ws_url("/ws?nick=carla")).await?;
    let welcome = client.recv_json().await.map_err(|failure| {
        failure
            .expected("el welcome de «carla», que entró sin ?room=")
            .hint("Sin `?room=` la sala es `general`: no respondas 400 ni cierres la conexión.")
    })?;
    if welcome["room"] != "general" {
        return Err(Failure::new("sin ?room= la sala no es general")
            .expected("\"room\": \"general\"")
            .got(welcome.to_string())
            .hint("`params.room.unwrap_or_else(|| \"general\".to_owned())`."));
    }
    Ok(())
}

async fn announces_joins_and_leaves() -> Result<(), Failure> {
    let server = support::serve(chat::app()).await?;
    let (mut ana, _) = join(&server, "ana", "sala").await?;
    let (mut bea, _) = join(&server, "bea", "sala").await?;
    expect_frame(
        &mut ana,
        "ana",
        json!({"type": "joined", "room": "sala", "nick": "bea"}),
        "En `Hub::join`, difunde `ServerFrame::Joined` a los demás miembros de la sala. Si «ana» \
         recibió su propio joined, difundes después de guardarla: `broadcast` llega a toda la \
         sala, así que difunde antes de insertar al que entra (Pista 2).",
    )
    .await?;
    let before = frames_before_pong(&mut bea).await?;
    if !before.is_empty() {
        return Err(Failure::new("quien entra recibió algo más que su welcome")
            .expected("solo el welcome (el joined es para los demás)")
            .got(support::render(&before))
            .hint("Al difundir el joined, salta al que acaba de entrar: él ya tiene su welcome."));
    }
    bea.stream()
        .close(None)
        .await
        .map_err(|error| Failure::new("no se pudo cerrar el WebSocket").got(error.to_string()))?;
    expect_frame(
        &mut ana,
        "ana",
        json!({"type": "left", "room": "sala", "nick": "bea"}),
        "Al salir del bucle (el cliente mandó Close), llama a `hub.leave`, que difunde `ServerFrame::Left`.",
    )
    .await
}

async fn broadcasts_to_the_whole_room() -> Result<(), Failure> {
    let server = support::serve(chat::app()).await?;
    let (mut ana, _) = join(&server, "ana", "sala").await?;
    let (mut bea, _) = join(&server, "bea", "sala").await?;
    send_message(&mut bea, "hola a todos").await?;
    let expected =
        json!({"type": "message", "room": "sala", "nick": "bea", "text": "hola a todos"});
    for (who, client) in [("ana", &mut ana), ("bea", &mut bea)] {
        let (frame, _) = client.recv_type("message").await.map_err(|failure| {
            failure.hint(format!(
                "«{who}» no recibió el mensaje: ¿difundes cada `ClientFrame::Message` con `hub.broadcast(&room, …)` a TODA la sala, quien escribe incluido?"
            ))
        })?;
        if frame != expected {
            return Err(Failure::new(format!("«{who}» recibió un mensaje distinto"))
                .expected(expected.to_string())
                .got(frame.to_string())
                .hint("El mensaje lleva la sala, el apodo de quien lo escribió y su texto."));
        }
    }
    Ok(())
}

async fn broadcasts_only_within_the_room() -> Result<(), Failure> {
    let server = support::serve(chat::app()).await?;
    let (mut ana, _) = join(&server, "ana", "rust").await?;
    let (mut bea, _) = join(&server, "bea", "python").await?;
    send_message(&mut ana, "solo para rust").await?;
    // Ana's own copy proves the broadcast already happened, so Bea's queue has it by now if it leaked.
    ana.recv_type("message").await.map_err(|failure| {
        failure.hint("Quien escribe también recibe su mensaje: difunde a toda su sala.")
    })?;
    let before = frames_before_pong(&mut bea).await?;
    if before.iter().any(|frame| frame["type"] == "message") {
        return Err(Failure::new("un mensaje de la sala «rust» llegó a la sala «python»")
            .expected("nada antes del pong de bea")
            .got(support::render(&before))
            .hint("Guarda a cada miembro en SU sala (`rooms[room][id]`) y difunde solo a `rooms.get(room)`. Mira la Pista 1."));
    }
    Ok(())
}

async fn transcript_matches_the_reference() -> Result<(), Failure> {
    let server = support::serve(chat::app()).await?;
    let (mut ana, ana_welcome) = join(&server, "ana", "general").await?;
    let (mut bea, bea_welcome) = join(&server, "bea", "general").await?;
    let mut ana_frames = vec![ana_welcome];
    let mut bea_frames = vec![bea_welcome];
    ana_frames.push(transcript_step(&mut ana, "ana", "el joined de bea").await?);
    send_message(&mut ana, "hola, bea").await?;
    ana_frames.push(transcript_step(&mut ana, "ana", "su propio «hola, bea»").await?);
    bea_frames.push(transcript_step(&mut bea, "bea", "el «hola, bea» de ana").await?);
    send_message(&mut bea, "¡hola, ana!").await?;
    bea_frames.push(transcript_step(&mut bea, "bea", "su propio «¡hola, ana!»").await?);
    ana_frames.push(transcript_step(&mut ana, "ana", "el «¡hola, ana!» de bea").await?);
    bea_frames.extend(frames_before_pong(&mut bea).await?);
    // Bea vanishes: the TCP connection closes without a WebSocket Close frame.
    drop(bea);
    ana_frames.push(
        transcript_step(
            &mut ana,
            "ana",
            "el left de bea (bea cortó la conexión sin frame de cierre)",
        )
        .await?,
    );
    ana_frames.extend(frames_before_pong(&mut ana).await?);
    let transcript = json!({"ana": ana_frames, "bea": bea_frames});
    support::snapshot(
        "ej01_conversacion",
        &transcript,
        "Compara tus frames con la tabla del protocolo (arriba del ejercicio): mismos `type`, mismos campos y en el mismo orden.",
    )
}

/// One frame of the reference conversation; if none comes, say which one was due.
async fn transcript_step(client: &mut WsClient, who: &str, what: &str) -> Result<Value, Failure> {
    client.recv_json().await.map_err(|failure| {
        failure
            .expected(format!("que «{who}» reciba {what}"))
            .hint("Sigue la conversación en la tabla del protocolo: welcome, joined a los demás, cada mensaje a toda la sala (también a quien lo escribe) y left al desaparecer. La regla que falle por separado te dirá cuál falta.")
    })
}

// ---------------------------------------------------------------------------------------------
// Calidad

async fn survives_malformed_frames() -> Result<(), Failure> {
    let server = support::serve(chat::app()).await?;
    let (mut ana, _) = join(&server, "ana", "sala").await?;
    let cases: [(&str, Message); 3] = [
        ("un texto que no es JSON", Message::text("esto no es json")),
        ("un type desconocido", Message::text(r#"{"type":"dance"}"#)),
        ("un frame binario", Message::binary(vec![1u8, 2, 3])),
    ];
    for (case, frame) in cases {
        tokio::time::timeout(
            support::WAIT,
            futures_util::SinkExt::send(ana.stream(), frame),
        )
        .await
        .map_err(|_| Failure::new("el envío no terminó a tiempo"))?
        .map_err(|error| Failure::new("no se pudo enviar el frame").got(error.to_string()))?;
        let (reply, _) = ana.recv_type("error").await.map_err(|failure| {
            failure
                .expected(format!("un frame error con code invalid_frame por {case}"))
                .hint("No cierres la conexión por un frame malo: responde `ServerFrame::Error` y sigue en el bucle. Un `Message::Binary(_)` no pasa por `parse_client_frame`: contéstalo tú con invalid_frame (Pista 2).")
        })?;
        if reply["type"] != "error" || reply["code"] != "invalid_frame" {
            return Err(Failure::new(format!("la respuesta a {case} no es el error esperado"))
                .expected("{\"type\":\"error\",\"code\":\"invalid_frame\",\"message\":\"…\"}")
                .got(reply.to_string())
                .hint("`parse_client_frame` convierte el error de serde en `ServerFrame::Error { code: \"invalid_frame\", … }`; un `Message::Binary` también es invalid_frame."));
        }
    }
    send_message(&mut ana, "sigo aquí").await?;
    ana.recv_type("message").await.map_err(|failure| {
        failure.hint(
            "Tras un frame malformado la conexión debe seguir funcionando: no salgas del bucle.",
        )
    })?;
    Ok(())
}

async fn rejects_bad_messages() -> Result<(), Failure> {
    let server = support::serve(chat::app()).await?;
    let (mut ana, _) = join(&server, "ana", "sala").await?;
    let too_long = "a".repeat(chat::MAX_TEXT_CHARS + 1);
    let just_right = "ñ".repeat(chat::MAX_TEXT_CHARS);
    for (case, text) in [
        ("vacío", ""),
        ("de solo espacios", "   "),
        ("demasiado largo", too_long.as_str()),
    ] {
        send_message(&mut ana, text).await?;
        let (reply, _) = ana.recv_type("error").await.map_err(|failure| {
            failure.expected(format!("un error invalid_message por un mensaje {case}"))
        })?;
        if reply["type"] != "error" || reply["code"] != "invalid_message" {
            return Err(Failure::new(format!("un mensaje {case} no recibió invalid_message"))
                .expected("{\"type\":\"error\",\"code\":\"invalid_message\",\"message\":\"…\"}")
                .got(reply.to_string())
                .hint("En `parse_client_frame`, mide `text.trim().chars().count()`: 0 o más de MAX_TEXT_CHARS es invalid_message."));
        }
    }
    // The limit counts characters, not bytes: 500 «ñ» (1000 bytes) is a valid message.
    send_message(&mut ana, &just_right).await?;
    let reply = loop {
        let frame = ana.recv_json().await.map_err(|failure| {
            failure
                .expected("el mensaje de 500 «ñ», difundido (o un error)")
                .hint("Un mensaje de exactamente MAX_TEXT_CHARS caracteres es válido: difúndelo.")
        })?;
        if frame["type"] == "message" || frame["type"] == "error" {
            break frame;
        }
    };
    if reply["type"] != "message" {
        return Err(Failure::new(
            "un mensaje de exactamente MAX_TEXT_CHARS caracteres (con ñ) fue rechazado",
        )
        .expected("que se difunda: el límite es en caracteres, no en bytes")
        .got(reply.to_string())
        .hint("Usa `.chars().count()`, no `.len()` (que cuenta bytes)."));
    }
    Ok(())
}

async fn vanished_client_leaves() -> Result<(), Failure> {
    let hub = Arc::new(Hub::new());
    let server = support::serve(chat::app_with_hub(hub.clone())).await?;
    let (mut ana, _) = join(&server, "ana", "sala").await?;
    let (bea, _) = join(&server, "bea", "sala").await?;
    ana.recv_type("joined").await?;
    // Dropping the client closes the TCP connection without a WebSocket Close frame.
    drop(bea);
    let (left, _) = ana.recv_type("left").await.map_err(|failure| {
        failure.hint("Un cliente que desaparece hace que `socket.recv()` devuelva `None` o `Err`: sal del bucle y llama a `hub.leave`.")
    })?;
    if left["nick"] != "bea" {
        return Err(Failure::new("el left no es de bea").got(left.to_string()));
    }
    wait_members(&hub, "sala", &["ana"]).await
}

async fn kicks_slow_clients() -> Result<(), Failure> {
    let hub = Hub::new();
    let slow = hub.join("sala", "lento");
    let mut fast = hub.join("sala", "rapida");
    let mut fast_got = Vec::new();
    let frame = ServerFrame::Message {
        room: "sala".into(),
        nick: "rapida".into(),
        text: "¿hay alguien?".into(),
    };
    // Nobody reads `slow.frames`; `fast` drains its queue after every broadcast.
    for _ in 0..chat::QUEUE_CAPACITY + 5 {
        hub.broadcast("sala", &frame);
        while let Ok(frame) = fast.frames.try_recv() {
            fast_got.push(frame);
        }
    }
    let members = hub.members("sala");
    if members != ["rapida"] {
        return Err(Failure::new("el cliente que no lee sigue en la sala")
            .expected("[\"rapida\"] tras QUEUE_CAPACITY + 5 difusiones sin que «lento» lea")
            .got(format!("{members:?}"))
            .hint("En `broadcast`, un `TrySendError::Full` significa que ese cliente no lee: sácalo con `leave` (fuera del mutex). Mira la Pista 1."));
    }
    let left = ServerFrame::Left {
        room: "sala".into(),
        nick: "lento".into(),
    };
    if !fast_got.contains(&left) {
        return Err(
            Failure::new("la sala no recibió el left del cliente expulsado")
                .expected(format!("{left:?} entre los frames de «rapida»"))
                .got(format!("{} frames, ninguno es ese left", fast_got.len()))
                .hint("Expulsar es salir: usa `self.leave(room, id)`, que avisa a los demás."),
        );
    }
    let Membership { mut frames, .. } = slow;
    let mut queued = 0;
    loop {
        match frames.try_recv() {
            Ok(_) => queued += 1,
            Err(tokio::sync::mpsc::error::TryRecvError::Empty) => {
                return Err(Failure::new("la cola del cliente expulsado sigue abierta")
                    .expected("que `frames.recv()` devuelva `None` (el hub soltó su `Sender`)")
                    .got(format!("{queued} frames y la cola abierta"))
                    .hint("Quita al `Member` del mapa: al soltar su `Sender` su cola se cierra y su conexión termina."));
            }
            Err(tokio::sync::mpsc::error::TryRecvError::Disconnected) => break,
        }
    }
    if queued > chat::QUEUE_CAPACITY {
        return Err(Failure::new("la cola no está acotada")
            .expected(format!("como mucho {} frames", chat::QUEUE_CAPACITY))
            .got(format!("{queued} frames"))
            .hint("Crea la cola con `mpsc::channel(QUEUE_CAPACITY)`, nunca `unbounded_channel`."));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Integración

async fn hub_broadcasts_from_outside() -> Result<(), Failure> {
    let hub = Arc::new(Hub::new());
    let server = support::serve(chat::app_with_hub(hub.clone())).await?;
    let (mut ana, _) = join(&server, "ana", "avisos").await?;
    wait_members(&hub, "avisos", &["ana"]).await?;
    let notice = ServerFrame::Message {
        room: "avisos".into(),
        nick: "servidor".into(),
        text: "mantenimiento a las 22:00".into(),
    };
    let delivered = hub.broadcast("avisos", &notice);
    let expected = json!({"type": "message", "room": "avisos", "nick": "servidor", "text": "mantenimiento a las 22:00"});
    let hint = "`app_with_hub` debe usar el hub que recibe (no uno nuevo), y cada conexión debe escribir al socket lo que llega a su cola.";
    let (got, _) = ana
        .recv_type("message")
        .await
        .map_err(|failure| failure.hint(hint))?;
    if got != expected {
        return Err(Failure::new("el aviso llegó distinto")
            .expected(expected.to_string())
            .got(got.to_string())
            .hint(hint));
    }
    if delivered != 1 {
        return Err(
            Failure::new("`broadcast` no devolvió a cuántos miembros llegó")
                .expected("1")
                .got(delivered.to_string())
                .hint("Cuenta los `try_send` que dieron `Ok`."),
        );
    }
    Ok(())
}

async fn ten_clients_in_order() -> Result<(), Failure> {
    const CLIENTS: usize = 10;
    // 10 × 2 messages plus 9 joined notices fit in one queue (32) even if nothing drained it:
    // a correct server never kicks anyone here, whatever the scheduling.
    const EACH: usize = 2;
    let server = support::serve(chat::app()).await?;
    let mut clients = Vec::new();
    for n in 0..CLIENTS {
        clients.push(join(&server, &format!("c{n}"), "multitud").await?.0);
    }
    for round in 0..EACH {
        for (n, client) in clients.iter_mut().enumerate() {
            send_message(client, &format!("{n}:{round}")).await?;
        }
    }
    for (n, client) in clients.iter_mut().enumerate() {
        let mut next = [0usize; CLIENTS];
        for _ in 0..CLIENTS * EACH {
            let (frame, _) = client.recv_type("message").await.map_err(|failure| {
                failure.hint(format!(
                    "«c{n}» no recibió los {} mensajes de la sala",
                    CLIENTS * EACH
                ))
            })?;
            let text = frame["text"].as_str().unwrap_or_default();
            let parsed = text.split_once(':').and_then(|(from, round)| {
                Some((from.parse::<usize>().ok()?, round.parse::<usize>().ok()?))
            });
            let Some((from, round)) = parsed.filter(|(from, _)| *from < CLIENTS) else {
                return Err(
                    Failure::new(format!("«c{n}» recibió un mensaje inesperado"))
                        .got(frame.to_string()),
                );
            };
            if round != next[from] {
                return Err(Failure::new(format!("«c{n}» recibió los mensajes de «c{from}» desordenados o repetidos"))
                    .expected(format!("«{from}:{}»", next[from]))
                    .got(text.to_owned())
                    .hint("Cada conexión escribe los frames en el orden en que llegan a su cola: una sola tarea por conexión, una sola cola."));
            }
            next[from] += 1;
        }
        let extra = frames_before_pong(client).await?;
        if extra.iter().any(|frame| frame["type"] == "message") {
            return Err(Failure::new(format!("«c{n}» recibió mensajes de más"))
                .got(support::render(&extra))
                .hint("Cada mensaje se difunde una vez: no lo reenvíes desde cada conexión."));
        }
    }
    Ok(())
}
