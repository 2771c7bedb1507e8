//! Núcleo · WebSockets: rooms, broadcast, history, idempotent sends, presence, typing and
//! private rooms.

use serde_json::{Value, json};

use super::client::{id_of, project, random};
use crate::checks::registry::{Env, Failure};
use crate::checks::support::render;

pub const BROADCAST: &str = "une a una sala y difunde cada mensaje a todos, el emisor incluido";
pub const HISTORY: &str = "guarda los mensajes en orden y el historial repite el frame en vivo";
pub const IDEMPOTENT: &str = "un client_id repetido no duplica el mensaje";
pub const PRESENCE: &str = "avisa con presence cuando alguien entra y sale de la sala";
pub const TYPING: &str = "reenvía typing a los demás, no a quien escribe";
pub const PRIVATE: &str = "las salas privadas solo admiten a sus miembros";
pub const ROOMS: &str = "una conexión atiende varias salas y leave deja de entregar";

/// Fails unless `frame` is the `message` of the contract for `room`, `user` and `text`.
fn check_message(frame: &Value, room: &str, user: &str, text: &str) -> Result<(), Failure> {
    let ts_ok = frame["ts"]
        .as_str()
        .is_some_and(|ts| chrono::DateTime::parse_from_rfc3339(ts).is_ok());
    if frame["type"] == "message"
        && frame["room"] == room
        && frame["user"] == user
        && frame["text"] == text
        && frame["id"].is_u64()
        && ts_ok
    {
        return Ok(());
    }
    Err(Failure::new("el frame message no tiene la forma del contrato")
        .expected(format!(
            "{{\"type\":\"message\",\"room\":\"{room}\",\"id\":N,\"user\":\"{user}\",\"text\":(el texto exacto),\"ts\":\"RFC 3339\"}}"
        ))
        .got(frame.to_string())
        .hint("el texto se guarda y se envía exactamente como llegó; `id` es un entero por sala"))
}

fn names(online: &Value) -> Vec<String> {
    online
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|name| name.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub async fn broadcast(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let bea = project.user("bea").await?;
    let room = project.room(&ana.token, "difusion", false).await?;
    let mut a = project.ws(&ana.token).await?;
    let joined = a.join(&room).await?;
    if !names(&joined["online"]).contains(&ana.name) || !joined["history"].is_array() {
        return Err(Failure::new("el frame joined no tiene la forma del contrato")
            .expected(format!(
                "{{\"type\":\"joined\",\"room\":\"{room}\",\"online\":[…\"{}\"…],\"history\":[]}}",
                ana.name
            ))
            .got(joined.to_string())
            .hint("`online` lista a los usuarios conectados a la sala, quien se une incluido"));
    }
    let mut b = project.ws(&bea.token).await?;
    let joined = b.join(&room).await?;
    let online = names(&joined["online"]);
    if !online.contains(&ana.name) || !online.contains(&bea.name) {
        return Err(
            Failure::new("`online` del joined no lista a los dos usuarios de la sala")
                .expected(format!(
                    "[\"{}\", \"{}\"] en cualquier orden",
                    ana.name, bea.name
                ))
                .got(joined["online"].to_string()),
        );
    }
    // Unicode, spaces and markup travel untouched.
    let text = format!("  hola ñandú 🎉 <b>{}</b>  ", random());
    let echo = a.say(&room, &text).await?;
    check_message(&echo, &room, &ana.name, &text)?;
    let received = b.echo(&room, &text).await.map_err(|failure| {
        failure.hint("send guarda el mensaje y lo difunde a TODAS las conexiones de la sala")
    })?;
    check_message(&received, &room, &ana.name, &text)?;
    if id_of(&received) != id_of(&echo) {
        return Err(Failure::new(
            "el emisor y el receptor ven ids distintos para el mismo mensaje",
        )
        .expected(echo.to_string())
        .got(received.to_string()));
    }
    Ok(())
}

pub async fn history(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let room = project.room(&ana.token, "historial", false).await?;
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    let mut sent = Vec::new();
    for n in 1..=3 {
        sent.push(a.say(&room, &format!("mensaje {n}")).await?);
    }
    let ids: Vec<u64> = sent.iter().map(id_of).collect();
    if !ids.windows(2).all(|pair| pair[0] < pair[1]) {
        return Err(
            Failure::new("los ids de los mensajes no crecen en orden de envío")
                .expected("ids estrictamente crecientes")
                .got(format!("{ids:?}")),
        );
    }
    let answer = project
        .get(&format!("/rooms/{room}/messages"), Some(&ana.token))
        .await?;
    if answer.status != 200 || answer.body["messages"] != Value::Array(sent.clone()) {
        return Err(Failure::new("GET /rooms/{id}/messages no devuelve los mensajes tal como se difundieron")
            .expected(format!("200 {{\"messages\":{},\"has_more\":false}}", render(&sent)))
            .got(answer.describe())
            .hint("cada elemento del historial es idéntico al frame message en vivo, en orden ascendente de id"));
    }
    if answer.body["has_more"] != false {
        return Err(Failure::new(
            "falta `has_more` (o no es false) en el historial de una sala con 3 mensajes",
        )
        .got(answer.describe()));
    }
    let pages = [
        ("limit=2".to_owned(), sent[1..].to_vec()),
        (format!("after={}&limit=1", ids[0]), sent[1..2].to_vec()),
        (format!("before={}", ids[2]), sent[..2].to_vec()),
        (
            format!("after={}&before={}", ids[0], ids[2]),
            sent[1..2].to_vec(),
        ),
    ];
    for (query, expected) in pages {
        let answer = project
            .get(&format!("/rooms/{room}/messages?{query}"), Some(&ana.token))
            .await?;
        if answer.body["messages"] != Value::Array(expected.clone()) {
            return Err(Failure::new(format!("la paginación ?{query} no devuelve lo que pide el contrato"))
                .expected(render(&expected))
                .got(answer.describe())
                .hint("sin cursor: los `limit` más nuevos; before: los más nuevos por debajo; after: los más antiguos por encima; siempre en orden ascendente"));
        }
    }
    let mut b = project.ws(&ana.token).await?;
    let joined = b.join(&room).await?;
    if joined["history"] != Value::Array(sent.clone()) {
        return Err(Failure::new("el historial del joined no repite los mensajes de la sala")
            .expected(render(&sent))
            .got(joined["history"].to_string())
            .hint("sin since, joined lleva los últimos 50 mensajes, idénticos a los frames en vivo"));
    }
    Ok(())
}

pub async fn idempotent(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let bea = project.user("bea").await?;
    let room = project.room(&ana.token, "idempotencia", false).await?;
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    let mut b = project.ws(&bea.token).await?;
    b.join(&room).await?;
    let client_id = format!("c-{}", random());
    let send =
        json!({ "type": "send", "room": room, "text": "una sola vez", "client_id": client_id });
    a.send(&send).await?;
    let first = a.echo(&room, "una sola vez").await?;
    if first["client_id"] != client_id {
        return Err(
            Failure::new("el frame message no repite el client_id del send")
                .expected(format!("\"client_id\":\"{client_id}\" en el eco"))
                .got(first.to_string())
                .hint("el client_id viaja en el frame message (en vivo y en el historial)"),
        );
    }
    // The retry: same client_id, same text.
    a.send(&send).await?;
    let again = a.echo(&room, "una sola vez").await?;
    if again != first {
        return Err(Failure::new("repetir un send con el mismo client_id no devuelve el mensaje original")
            .expected(first.to_string())
            .got(again.to_string())
            .hint("guarda (usuario, sala, client_id) 10 minutos y responde al emisor con el frame original, sin guardar nada nuevo"));
    }
    // Sentinel: the next message bea sees must be this one, not a copy of the first.
    let next = a.say(&room, "después del reintento").await?;
    let seen = b.echo(&room, "una sola vez").await?;
    let following = b
        .recv_where("el siguiente mensaje de la sala", |frame| {
            frame["type"] == "message"
        })
        .await?;
    if following != next {
        return Err(Failure::new(
            "el reintento con el mismo client_id se difundió otra vez a la sala",
        )
        .expected(format!("tras {seen}, el siguiente mensaje: {next}"))
        .got(following.to_string())
        .hint("un send repetido no se guarda ni se difunde: solo responde al emisor"));
    }
    let answer = project
        .get(&format!("/rooms/{room}/messages"), Some(&ana.token))
        .await?;
    let stored = answer.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if stored != vec![first.clone(), next.clone()] {
        return Err(
            Failure::new("el historial no tiene exactamente un mensaje por client_id")
                .expected(render(&[first, next]))
                .got(answer.describe()),
        );
    }
    Ok(())
}

pub async fn presence(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let bea = project.user("bea").await?;
    let room = project.room(&ana.token, "presencia", false).await?;
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    let mut b = project.ws(&bea.token).await?;
    b.join(&room).await?;
    let is_presence = |status: &'static str| {
        let (room, user) = (room.clone(), bea.name.clone());
        move |frame: &Value| {
            frame["type"] == "presence"
                && frame["room"] == room.as_str()
                && frame["user"] == user.as_str()
                && frame["status"] == status
        }
    };
    a.recv_where(
        &format!("{{\"type\":\"presence\",\"room\":\"{room}\",\"user\":\"{}\",\"status\":\"online\"}}", bea.name),
        is_presence("online"),
    )
    .await
    .map_err(|failure| failure.hint("cuando la primera conexión de un usuario se une a una sala, los demás reciben presence online"))?;
    b.close().await;
    a.recv_where(
        &format!("{{\"type\":\"presence\",\"room\":\"{room}\",\"user\":\"{}\",\"status\":\"offline\"}}", bea.name),
        is_presence("offline"),
    )
    .await
    .map_err(|failure| failure.hint("cuando la última conexión de un usuario sale (o se cierra), los demás reciben presence offline"))?;
    Ok(())
}

pub async fn typing(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let bea = project.user("bea").await?;
    let room = project.room(&ana.token, "escribiendo", false).await?;
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    let mut b = project.ws(&bea.token).await?;
    b.join(&room).await?;
    b.send(&json!({ "type": "typing", "room": room })).await?;
    let frame = a
        .recv_where(
            &format!(
                "{{\"type\":\"typing\",\"room\":\"{room}\",\"user\":\"{}\"}}",
                bea.name
            ),
            |frame| frame["type"] == "typing",
        )
        .await
        .map_err(|failure| {
            failure.hint("typing se reenvía a las conexiones de los demás usuarios de la sala")
        })?;
    if frame["room"] != room.as_str() || frame["user"] != bea.name.as_str() {
        return Err(Failure::new("el frame typing no dice sala y usuario")
            .expected(format!(
                "{{\"type\":\"typing\",\"room\":\"{room}\",\"user\":\"{}\"}}",
                bea.name
            ))
            .got(frame.to_string()));
    }
    let before_pong = b.sync().await?;
    if let Some(own) = before_pong.iter().find(|frame| frame["type"] == "typing") {
        return Err(Failure::new("quien escribe recibe su propio typing")
            .expected("typing solo para los demás usuarios")
            .got(own.to_string()));
    }
    let history = project
        .get(&format!("/rooms/{room}/messages"), Some(&ana.token))
        .await?;
    if history.body["messages"]
        .as_array()
        .is_some_and(|list| !list.is_empty())
    {
        return Err(Failure::new("typing se guardó en el historial").got(history.describe()));
    }
    Ok(())
}

pub async fn private_rooms(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let bea = project.user("bea").await?;
    let room = project.room(&ana.token, "privada", true).await?;
    let listed = |answer: &super::client::Answer| {
        answer.body.as_array().is_some_and(|rooms| {
            rooms
                .iter()
                .any(|entry| entry["id"] == room.as_str() && entry["private"] == true)
        })
    };
    let rooms = project.get("/rooms", Some(&ana.token)).await?;
    if !listed(&rooms) {
        return Err(
            Failure::new("GET /rooms no lista la sala privada a su creadora")
                .expected(format!(
                    "un elemento {{\"id\":\"{room}\",\"private\":true,…}}"
                ))
                .got(rooms.describe()),
        );
    }
    let rooms = project.get("/rooms", Some(&bea.token)).await?;
    if listed(&rooms) {
        return Err(Failure::new("GET /rooms lista una sala privada a quien no es miembro")
            .got(rooms.describe())
            .hint("GET /rooms devuelve las salas públicas y las privadas a las que pertenece quien pregunta"));
    }
    let mut b = project.ws(&bea.token).await?;
    b.send(&json!({ "type": "join", "room": room })).await?;
    b.expect_error("unirse a una sala privada sin ser miembro", "not_member")
        .await?;
    project
        .get(&format!("/rooms/{room}/messages"), Some(&bea.token))
        .await?
        .expect_error(
            "leer el historial de una sala privada sin ser miembro",
            403,
            "forbidden",
        )?;
    let invite = json!({ "username": bea.name });
    let answer = project
        .post(
            &format!("/rooms/{room}/members"),
            Some(&bea.token),
            &json!({ "username": "nadie_existe" }),
        )
        .await?;
    answer.expect_error("invitar sin ser la creadora ni admin", 403, "forbidden")?;
    let answer = project
        .post(&format!("/rooms/{room}/members"), Some(&ana.token), &invite)
        .await?;
    if answer.status != 201 || answer.body["username"] != bea.name.as_str() {
        return Err(
            Failure::new("la creadora no pudo invitar a la sala privada")
                .expected(format!(
                    "201 {{\"room\":\"{room}\",\"username\":\"{}\"}}",
                    bea.name
                ))
                .got(answer.describe()),
        );
    }
    let rooms = project.get("/rooms", Some(&bea.token)).await?;
    if !listed(&rooms) {
        return Err(Failure::new(
            "tras la invitación, GET /rooms no lista la sala privada a la invitada",
        )
        .got(rooms.describe())
        .hint("una invitación invalida la caché de GET /rooms"));
    }
    b.join(&room)
        .await
        .map_err(|failure| failure.hint("un miembro invitado puede unirse a la sala privada"))?;
    Ok(())
}

pub async fn many_rooms(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let bea = project.user("bea").await?;
    let first = project.room(&ana.token, "uno", false).await?;
    let second = project.room(&ana.token, "dos", false).await?;
    let mut a = project.ws(&ana.token).await?;
    a.join(&first).await?;
    a.join(&second).await?;
    let mut b = project.ws(&bea.token).await?;
    b.join(&first).await?;
    b.join(&second).await?;
    a.say(&first, "me voy").await?;
    a.send(&json!({ "type": "leave", "room": first })).await?;
    let left = a
        .recv_where("la respuesta al leave", |frame| frame["type"] != "presence")
        .await?;
    if left != json!({ "type": "left", "room": first }) {
        return Err(Failure::new("leave no se respondió con left")
            .expected(format!("{{\"type\":\"left\",\"room\":\"{first}\"}}"))
            .got(left.to_string()));
    }
    b.say(&first, "¿sigues ahí?").await?;
    b.say(&second, "en la otra sala").await?;
    let got = a
        .recv_where("un mensaje", |frame| frame["type"] == "message")
        .await?;
    if got["room"] != second.as_str() || got["text"] != "en la otra sala" {
        return Err(
            Failure::new("tras leave, la conexión siguió recibiendo mensajes de esa sala")
                .expected(format!("solo el mensaje de «{second}»"))
                .got(got.to_string())
                .hint("una conexión lleva varias salas; leave deja de entregarle la que abandona"),
        );
    }
    Ok(())
}
