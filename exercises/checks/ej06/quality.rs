//! Calidad: connections (close 1009 and 1013, Origin), errors and recovery (`since`, invalid
//! frames, HTTP errors) and performance and limits (rate limit, cache, fan-out).

use std::time::Duration;

use futures_util::SinkExt;
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::client::{Project, id_of, project, random};
use crate::checks::registry::{Env, Failure};
use crate::checks::support::{WAIT, render};

pub const TOO_BIG: &str = "cierra con 1009 un mensaje de más de 64 KiB";
pub const SLOW_CONSUMER: &str = "cierra con 1013 a un cliente que no lee, sin frenar la sala";
pub const ORIGIN: &str = "rechaza con 403 un Origin ajeno antes de autenticar";
pub const SINCE: &str = "al reconectar con since recibe exactamente lo que se perdió";
pub const BAD_FRAMES: &str = "cada frame inválido recibe su error y la conexión sigue abierta";
pub const HTTP_ERRORS: &str = "los errores HTTP llevan el cuerpo JSON y el código del contrato";
pub const RATE_LIMIT: &str = "limita cada conexión a 20 frames/s con ráfaga de 40";
pub const CACHE: &str = "GET /rooms pasa por una caché con X-Cache e invalidación";
pub const FAN_OUT: &str = "difunde un mensaje a 50 conexiones a la vez sin perder ninguna";

pub async fn too_big(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let room = project.room(&ana.token, "grande", false).await?;
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    // Under 64 KiB: only a too_long error, and the connection stays.
    let text = "a".repeat(60_000);
    a.send(&json!({ "type": "send", "room": room, "text": text }))
        .await?;
    a.expect_error("un send de 60 000 caracteres", "too_long")
        .await?;
    a.sync().await?;
    let text = "a".repeat(70_000);
    let frame = json!({ "type": "send", "room": room, "text": text }).to_string();
    let sent = tokio::time::timeout(WAIT, a.client.stream().send(Message::text(frame))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return Err(Failure::new("no pude enviar el mensaje de 70 KB").got(format!("{sent:?}")));
    }
    match a.closed(WAIT).await? {
        Some(1009) => Ok(()),
        code => Err(Failure::new("un mensaje de más de 64 KiB no cerró la conexión con 1009")
            .expected("un frame Close con el código 1009 (Message Too Big)")
            .got(match code {
                Some(code) => format!("Close {code}"),
                None => "la conexión se cortó sin frame Close".to_owned(),
            })
            .hint("limita el tamaño de mensaje del WebSocket a 64 KiB (max_message_size) y responde Close 1009")),
    }
}

pub async fn slow_consumer(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let lenta = project.user("lenta").await?;
    let room = project.room(&ana.token, "lenta", false).await?;
    let mut slow = project.ws_small_window(&lenta.token).await?;
    slow.join(&room).await?;
    // From here on `slow` reads nothing. A watcher reads everything.
    let mut watcher = project.ws(&ana.token).await?;
    watcher.join(&room).await?;
    let big = "🎉".repeat(3990);
    let mut sent = 0usize;
    let mut gone = false;
    // Each new connection starts with a full burst of 40 frames.
    'flood: for round in 0..60 {
        let mut flooder = project.ws(&ana.token).await?;
        flooder.join(&room).await?;
        let mut texts = Vec::new();
        for n in 0..35 {
            let text = format!("{round}-{n} {big}");
            flooder
                .send(&json!({ "type": "send", "room": room, "text": text }))
                .await?;
            texts.push(text);
        }
        for text in &texts {
            flooder.echo(&room, text).await?;
            sent += 1;
        }
        flooder.close().await;
        // The watcher must keep up: a slow consumer never slows the room.
        let mut seen = 0;
        while seen < texts.len() {
            let frame = watcher.recv().await.map_err(|failure| {
                failure.hint(
                    "un cliente que no lee no debe frenar a los demás: cola acotada por conexión",
                )
            })?;
            match frame["type"].as_str() {
                Some("message") => seen += 1,
                Some("presence")
                    if frame["user"] == lenta.name.as_str() && frame["status"] == "offline" =>
                {
                    gone = true;
                }
                _ => {}
            }
        }
        if gone {
            break 'flood;
        }
    }
    let code = slow.closed(Duration::from_secs(10)).await.map_err(|failure| {
        failure
            .expected("un frame Close 1013 tras desbordar la cola de salida de la conexión")
            .hint("cada conexión tiene una cola de salida acotada; si se desborda, ciérrala con 1013 para que el cliente se recupere con since")
    })?;
    if code != Some(1013) {
        return Err(Failure::new(format!(
            "un cliente que no leía {sent} mensajes grandes no se cerró con 1013"
        ))
        .expected("Close 1013 (Try Again Later)")
        .got(match code {
            Some(code) => format!("Close {code}"),
            None => "la conexión se cortó sin frame Close".to_owned(),
        }));
    }
    Ok(())
}

pub async fn origin(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    for (what, token) in [
        ("sin token", None),
        ("con un token válido", Some(ana.token.as_str())),
    ] {
        let url = match token {
            Some(token) => project.ws_url(token),
            None => project.ws_url("").replace("?token=", ""),
        };
        let mut request = url
            .as_str()
            .into_client_request()
            .map_err(|error| Failure::new("URL no válida").got(error.to_string()))?;
        request.headers_mut().insert(
            "origin",
            HeaderValue::from_static("http://sitio-malicioso.example"),
        );
        let result = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await;
        let got = match result {
            Err(_) => return Err(Failure::new("el upgrade a WebSocket no respondió a tiempo")),
            Ok(Ok(_)) => "101 Switching Protocols".to_owned(),
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response))) => {
                let body: Value = response
                    .body()
                    .as_deref()
                    .and_then(|body| serde_json::from_slice(body).ok())
                    .unwrap_or(Value::Null);
                if response.status() == 403 && body["error"]["code"] == "forbidden" {
                    continue;
                }
                format!("{} {body}", response.status().as_u16())
            }
            Ok(Err(error)) => error.to_string(),
        };
        return Err(Failure::new(format!("/ws aceptó o rechazó mal un Origin ajeno {what}"))
            .expected("403 con {\"error\":{\"code\":\"forbidden\",…}}, antes de mirar el token")
            .got(got)
            .hint("un navegador de otro sitio no debe abrir el WebSocket: comprueba Origin (si viene) contra la lista permitida antes de autenticar"));
    }
    Ok(())
}

pub async fn since(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let bea = project.user("bea").await?;
    let room = project.room(&ana.token, "recupera", false).await?;
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    let seen = a.say(&room, "antes de cortar").await?;
    let mut b = project.ws(&bea.token).await?;
    let joined = b.join(&room).await?;
    let last = joined["history"]
        .as_array()
        .and_then(|history| history.last())
        .map(id_of)
        .unwrap_or(0);
    if last != id_of(&seen) {
        return Err(Failure::new("el joined no trae el historial de la sala")
            .expected(format!("history con el mensaje {}", id_of(&seen)))
            .got(joined.to_string()));
    }
    b.close().await;
    let mut missed = Vec::new();
    for n in 1..=3 {
        missed.push(a.say(&room, &format!("perdido {n}")).await?);
    }
    let mut b = project.ws(&bea.token).await?;
    let joined = b
        .join_with(json!({ "type": "join", "room": room, "since": last }))
        .await?;
    if joined["history"] != Value::Array(missed.clone()) {
        return Err(Failure::new(format!(
            "join con since={last} no devuelve exactamente los mensajes perdidos"
        ))
        .expected(render(&missed))
        .got(joined["history"].to_string())
        .hint(
            "con since, history son los mensajes con id > since (ni uno perdido, ni uno repetido)",
        ));
    }
    if joined["truncated"] == true {
        return Err(
            Failure::new("joined marca truncated con solo 3 mensajes perdidos")
                .got(joined.to_string()),
        );
    }
    // After the recovery, live messages continue without duplicates.
    let live = a.say(&room, "ya de vuelta").await?;
    let next = b
        .recv_where("el siguiente mensaje", |frame| frame["type"] == "message")
        .await?;
    if next != live {
        return Err(Failure::new(
            "tras recuperar con since llegó un mensaje repetido o fuera de orden",
        )
        .expected(live.to_string())
        .got(next.to_string()));
    }
    Ok(())
}

pub async fn bad_frames(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let room = project.room(&ana.token, "errores", false).await?;
    let missing = format!("no-existe-{}", random());
    let mut a = project.ws(&ana.token).await?;
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "un texto que no es JSON",
            "esto no es json".to_owned(),
            "invalid_frame",
        ),
        ("un array JSON", "[1,2,3]".to_owned(), "invalid_frame"),
        (
            "un objeto sin type",
            json!({ "room": room }).to_string(),
            "invalid_frame",
        ),
        (
            "un type desconocido",
            json!({ "type": "bailar" }).to_string(),
            "unknown_type",
        ),
        (
            "un send sin text",
            json!({ "type": "send", "room": room }).to_string(),
            "invalid_frame",
        ),
        (
            "un join a una sala que no existe",
            json!({ "type": "join", "room": missing }).to_string(),
            "not_found",
        ),
        (
            "un send a una sala sin unirse",
            json!({ "type": "send", "room": room, "text": "hola" }).to_string(),
            "not_member",
        ),
        (
            "un leave de una sala sin unirse",
            json!({ "type": "leave", "room": room }).to_string(),
            "not_member",
        ),
    ];
    for (what, text, code) in &cases {
        a.client.send_text(text).await?;
        a.expect_error(what, code).await?;
    }
    a.join(&room).await?;
    let contents = [
        (
            "un texto solo de espacios",
            " \t \n ".to_owned(),
            "empty_text",
        ),
        ("un texto de 4001 caracteres", "ñ".repeat(4001), "too_long"),
    ];
    for (what, text, code) in &contents {
        a.send(&json!({ "type": "send", "room": room, "text": text }))
            .await?;
        a.expect_error(what, code).await?;
    }
    // 4,000 code points (8,000 bytes) are allowed: the limit counts characters, not bytes.
    a.say(&room, &"ñ".repeat(4000)).await.map_err(|failure| {
        failure.hint("el límite de 4000 caracteres cuenta puntos de código Unicode, no bytes")
    })?;
    let sent = tokio::time::timeout(
        WAIT,
        a.client.stream().send(Message::binary(vec![1u8, 2, 3])),
    )
    .await;
    if !matches!(sent, Ok(Ok(()))) {
        return Err(Failure::new("no pude enviar un frame binario").got(format!("{sent:?}")));
    }
    a.expect_error("un frame binario", "invalid_frame").await?;
    a.sync().await.map_err(|failure| {
        failure.hint("tras un error la conexión sigue abierta y atendiendo frames")
    })?;
    Ok(())
}

pub async fn http_errors(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let token = Some(ana.token.as_str());
    project
        .get(&format!("/no-existe-{}", random()), None)
        .await?
        .expect_error("una ruta que no existe", 404, "not_found")?;
    let malformed = project
        .http
        .post(project.url("/auth/register"))
        .header("content-type", "application/json")
        .body("{\"username\": ");
    project
        .send("POST /auth/register con JSON mal formado", malformed)
        .await?
        .expect_error("un JSON mal formado", 422, "invalid_input")?;
    let huge = json!({ "username": "x", "password": "y".repeat(70_000), "email": "z@example.com" });
    project
        .post("/auth/register", None, &huge)
        .await?
        .expect_error("un cuerpo de más de 64 KiB", 413, "payload_too_large")?;
    project
        .get("/rooms", None)
        .await?
        .expect_error("GET /rooms sin token", 401, "unauthorized")?;
    project
        .get(&format!("/rooms/no-existe-{}/messages", random()), token)
        .await?
        .expect_error("el historial de una sala que no existe", 404, "not_found")?;
    for query in ["limit=0", "limit=abc", "before=-1"] {
        project
            .get(&format!("/rooms/general/messages?{query}"), token)
            .await?
            .expect_error(
                &format!("GET /rooms/general/messages?{query}"),
                422,
                "invalid_input",
            )?;
    }
    project
        .post(
            "/rooms",
            token,
            &json!({ "id": "No Es Un Slug!", "name": "x", "private": false }),
        )
        .await?
        .expect_error(
            "crear una sala con un id que no es un slug",
            422,
            "invalid_input",
        )?;
    project
        .post(
            "/rooms",
            token,
            &json!({ "id": "general", "name": "General", "private": false }),
        )
        .await?
        .expect_error("crear una sala que ya existe", 409, "conflict")?;
    Ok(())
}

pub async fn rate_limit(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let room = project.room(&ana.token, "limite", false).await?;
    let mut a = project.ws(&ana.token).await?;
    let started = tokio::time::Instant::now();
    // The join is the first of the connection's frames.
    a.join(&room).await?;
    const SENDS: usize = 60;
    for n in 0..SENDS {
        a.send(&json!({ "type": "send", "room": room, "text": format!("ráfaga {n}") }))
            .await?;
    }
    let (mut stored, mut limited) = (0usize, 0usize);
    while stored + limited < SENDS {
        let frame = a.recv().await.map_err(|failure| {
            failure
                .expected(format!(
                    "{SENDS} respuestas: un eco o un error rate_limited por send"
                ))
                .got(format!("{stored} ecos y {limited} errores"))
                .hint("cada frame descartado por el límite recibe su propio error")
        })?;
        match (frame["type"].as_str(), frame["code"].as_str()) {
            (Some("message"), _) => stored += 1,
            (Some("error"), Some("rate_limited")) => limited += 1,
            (Some("error"), _) => {
                return Err(
                    Failure::new("un send de la ráfaga recibió un error inesperado")
                        .got(frame.to_string()),
                );
            }
            _ => {}
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let accepted = stored + 1;
    let ceiling = 40 + (20.0 * elapsed).ceil() as usize + 1;
    if limited == 0 || accepted > ceiling {
        return Err(Failure::new(format!("{} frames seguidos no chocaron con el límite de 20/s", SENDS + 1))
            .expected(format!("como mucho {ceiling} aceptados (ráfaga de 40 + 20/s) y el resto rate_limited"))
            .got(format!("{accepted} aceptados, {limited} rate_limited en {elapsed:.2} s"))
            .hint("un limitador por conexión (token bucket o GCRA, p. ej. governor): 20 frames/s, ráfaga de 40; todo frame cuenta"));
    }
    if accepted < 40 {
        return Err(
            Failure::new("el límite corta antes de la ráfaga de 40 de una conexión nueva")
                .expected("al menos 40 frames aceptados")
                .got(format!("{accepted} aceptados")),
        );
    }
    let history = project
        .get(
            &format!("/rooms/{room}/messages?limit=200"),
            Some(&ana.token),
        )
        .await?;
    let count = history.body["messages"].as_array().map_or(0, Vec::len);
    if count != stored {
        return Err(
            Failure::new("los sends descartados por el límite se guardaron igualmente")
                .expected(format!("{stored} mensajes en el historial"))
                .got(format!("{count}")),
        );
    }
    Ok(())
}

async fn rooms_listing(project: &Project, token: &str) -> Result<(String, Value), Failure> {
    let answer = project.get("/rooms", Some(token)).await?;
    if answer.status != 200 || !answer.body.is_array() {
        return Err(Failure::new("GET /rooms no devuelve la lista de salas")
            .expected("200 [{\"id\",\"name\",\"private\",\"members\",\"online\"}]")
            .got(answer.describe()));
    }
    let cache = answer.header("x-cache").unwrap_or("").to_ascii_uppercase();
    Ok((cache, answer.body))
}

pub async fn cache(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let (first, _) = rooms_listing(&project, &ana.token).await?;
    let (second, listed) = rooms_listing(&project, &ana.token).await?;
    if first != "MISS" || second != "HIT" {
        return Err(Failure::new("GET /rooms no pasa por la caché (cabecera X-Cache)")
            .expected("X-Cache: MISS la primera vez de un usuario nuevo y X-Cache: HIT la siguiente")
            .got(format!("«{first}» y luego «{second}»"))
            .hint("cache-aside con TTL ≤ 5 s (Redis o en memoria); cada respuesta lleva X-Cache: HIT o MISS"));
    }
    let shape_ok = listed.as_array().is_some_and(|rooms| {
        rooms.iter().all(|room| {
            room["id"].is_string()
                && room["private"].is_boolean()
                && room["members"].is_u64()
                && room["online"].is_u64()
        })
    });
    if !shape_ok {
        return Err(Failure::new("los elementos de GET /rooms no tienen la forma del contrato")
            .expected("[{\"id\",\"name\",\"private\",\"members\",\"online\"}] con members y online enteros")
            .got(listed.to_string()));
    }
    let room = project.room(&ana.token, "cache", false).await?;
    let (after, listed) = rooms_listing(&project, &ana.token).await?;
    let has_room = listed
        .as_array()
        .is_some_and(|rooms| rooms.iter().any(|entry| entry["id"] == room.as_str()));
    if after != "MISS" || !has_room {
        return Err(Failure::new("crear una sala no invalida la caché de GET /rooms")
            .expected(format!("X-Cache: MISS y la sala «{room}» en la lista"))
            .got(format!("X-Cache: «{after}», sala en la lista: {has_room}"))
            .hint("las escrituras que cambian la lista (crear sala, invitar, primer join) invalidan la caché"));
    }
    let admin = project.admin_token().await?;
    let stats = project.get("/admin/stats", Some(&admin)).await?;
    let header = stats.header("x-cache").unwrap_or("").to_ascii_uppercase();
    if stats.status != 200 || !(header == "HIT" || header == "MISS") {
        return Err(
            Failure::new("GET /admin/stats no pasa por la caché (cabecera X-Cache)")
                .expected("200 con X-Cache: HIT o MISS")
                .got(format!("{} X-Cache: «{header}»", stats.status)),
        );
    }
    Ok(())
}

pub async fn fan_out(env: Env) -> Result<(), Failure> {
    const CONNECTIONS: usize = 50;
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let bea = project.user("bea").await?;
    let room = project.room(&ana.token, "multitud", false).await?;
    let mut listeners = Vec::with_capacity(CONNECTIONS);
    for _ in 0..CONNECTIONS {
        let mut ws = project.ws(&bea.token).await?;
        ws.join(&room).await?;
        listeners.push(ws);
    }
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    let started = tokio::time::Instant::now();
    let text = format!("para todos {}", random());
    a.say(&room, &text).await?;
    let waits = listeners.iter_mut().map(|ws| ws.echo(&room, &text));
    let results = futures_util::future::join_all(waits).await;
    let missing = results.iter().filter(|result| result.is_err()).count();
    if missing > 0 {
        return Err(Failure::new(format!(
            "{missing} de {CONNECTIONS} conexiones de la sala no recibieron el mensaje"
        ))
        .expected("el mensaje en cada conexión de la sala")
        .hint("difunde a todas las conexiones (varias del mismo usuario incluidas) sin bloquear por ninguna"));
    }
    let elapsed = started.elapsed();
    if elapsed > Duration::from_secs(2) {
        return Err(Failure::new("difundir a 50 conexiones tardó demasiado")
            .expected("menos de 2 s")
            .got(format!("{} ms", elapsed.as_millis())));
    }
    Ok(())
}
