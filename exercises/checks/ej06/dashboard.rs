//! Núcleo · Server-Sent Events: the dashboard's `stats` and `activity` streams, resuming with
//! `Last-Event-ID`, and the HTML page.

use std::time::Duration;

use eventsource_stream::Event;
use serde_json::Value;

use super::client::{id_of, project, random};
use crate::checks::registry::{Env, Failure};

pub const STATS: &str = "el panel emite stats cada segundo con los contadores del contrato";
pub const ACTIVITY: &str = "el panel emite activity de cada join, message y leave, sin el texto";
pub const RESUME: &str =
    "Last-Event-ID recupera la actividad perdida y una conexión nueva no recibe atrasos";
pub const PAGE: &str = "sirve el panel HTML en /dashboard";

/// How long an activity event may take to reach the stream.
const EVENT_WAIT: Duration = Duration::from_secs(5);

fn is_count(value: &Value) -> bool {
    value.is_u64()
}

fn stats_problem(data: &Value) -> Option<&'static str> {
    for field in ["connections", "users_online", "messages_total"] {
        if !is_count(&data[field]) {
            return Some("connections, users_online y messages_total son enteros");
        }
    }
    let jobs_ok = ["pending", "running", "done", "failed", "dead"]
        .iter()
        .all(|status| is_count(&data["jobs"][status]));
    if !jobs_ok {
        return Some(
            "jobs es {\"pending\",\"running\",\"done\",\"failed\",\"dead\"}, todos enteros",
        );
    }
    let rooms_ok = data["rooms"].as_array().is_some_and(|rooms| {
        rooms.iter().all(|room| {
            room["room"].is_string()
                && is_count(&room["online"])
                && is_count(&room["messages_per_min"])
        })
    });
    if !rooms_ok {
        return Some("rooms es [{\"room\",\"online\",\"messages_per_min\"}]");
    }
    if !data["ts"].is_string() {
        return Some("ts es la hora RFC 3339");
    }
    None
}

pub async fn stats(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let admin = project.admin_token().await?;
    // `?token=`, as the dashboard page's EventSource sends it.
    let mut sse = project
        .sse_with_query_token(&admin)
        .await
        .map_err(|failure| {
            failure
                .hint("EventSource no puede enviar cabeceras: acepta también el token en ?token=")
        })?;
    let mut times = Vec::new();
    // The first may come at once; the next ones, about a second apart.
    for _ in 0..3 {
        let (_, data) = sse
            .next_where(
                "un evento stats",
                Duration::from_millis(2500),
                |event, _| event.event == "stats",
            )
            .await
            .map_err(|failure| failure.hint("el panel emite `event: stats` cada segundo"))?;
        if let Some(problem) = stats_problem(&data) {
            return Err(
                Failure::new("los datos de stats no tienen la forma del contrato")
                    .expected(problem)
                    .got(data.to_string()),
            );
        }
        times.push(tokio::time::Instant::now());
    }
    // Two events in a row must not be a burst: about a second apart.
    let gap = times[2] - times[1];
    if gap < Duration::from_millis(300) {
        return Err(Failure::new("dos eventos stats llegaron casi a la vez")
            .expected("uno cada segundo")
            .got(format!("{} ms entre ellos", gap.as_millis())));
    }
    Ok(())
}

/// Whether `event` is an activity of `kind` in `room`.
fn activity_in<'a>(room: &'a str, kind: &'a str) -> impl Fn(&Event, &Value) -> bool + 'a {
    move |event, data| event.event == "activity" && data["room"] == room && data["kind"] == kind
}

pub async fn activity(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let admin = project.admin_token().await?;
    let ana = project.user("ana").await?;
    let room = project.room(&ana.token, "actividad", false).await?;
    let mut sse = project.sse(&admin, None).await?;
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    let secret = format!("texto-secreto-{}", random());
    let echo = a.say(&room, &secret).await?;
    a.send(&serde_json::json!({ "type": "leave", "room": room }))
        .await?;
    a.recv_type("left").await?;
    let mut last_id = 0u64;
    for kind in ["join", "message", "leave"] {
        let (event, data) = sse
            .next_where(
                &format!("el evento activity «{kind}» de la sala {room}"),
                EVENT_WAIT,
                activity_in(&room, kind),
            )
            .await
            .map_err(|failure| {
                failure.hint("cada join, leave, message y transición de trabajo emite `event: activity` con su `id:`")
            })?;
        let id = event.id.trim().parse::<u64>().unwrap_or(0);
        if id <= last_id {
            return Err(
                Failure::new("los eventos activity no llevan un id: numérico creciente")
                    .expected(format!("id: mayor que {last_id}"))
                    .got(format!("id: «{}» en {}", event.id, event.data))
                    .hint("el id permite reanudar con Last-Event-ID"),
            );
        }
        last_id = id;
        if data["user"] != ana.name.as_str() || !data["ts"].is_string() {
            return Err(Failure::new("el evento activity no dice quién ni cuándo")
                .expected(format!(
                    "{{\"kind\":\"{kind}\",\"room\":\"{room}\",\"user\":\"{}\",\"ts\",…}}",
                    ana.name
                ))
                .got(data.to_string()));
        }
        if kind == "message" && data["message_id"].as_u64() != Some(id_of(&echo)) {
            return Err(
                Failure::new("el activity de un mensaje no lleva su message_id")
                    .expected(format!("\"message_id\":{}", id_of(&echo)))
                    .got(data.to_string()),
            );
        }
        if event.data.contains(&secret) {
            return Err(Failure::new("el panel muestra el texto de los mensajes")
                .expected("activity sin el texto del mensaje")
                .got(event.data.clone()));
        }
    }
    Ok(())
}

pub async fn resume(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let admin = project.admin_token().await?;
    let ana = project.user("ana").await?;
    let room = project.room(&ana.token, "reanudar", false).await?;
    let mut first = project.sse(&admin, None).await?;
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    let (join, _) = first
        .next_where(
            "el activity del join",
            EVENT_WAIT,
            activity_in(&room, "join"),
        )
        .await?;
    drop(first);
    // Missed while disconnected.
    let echo = a.say(&room, "mientras no mirabas").await?;
    a.send(&serde_json::json!({ "type": "leave", "room": room }))
        .await?;
    a.recv_type("left").await?;
    let mut resumed = project.sse(&admin, Some(&join.id)).await?;
    let (message, data) = resumed
        .next_where(
            &format!("el activity del mensaje perdido (reanudando con Last-Event-ID: {})", join.id),
            EVENT_WAIT,
            |event, data| event.event == "activity" && data["room"] == room.as_str(),
        )
        .await
        .map_err(|failure| failure.hint("con Last-Event-ID, el stream envía primero los activity posteriores a ese id (se guardan los últimos 1000)"))?;
    if data["kind"] != "message" || data["message_id"].as_u64() != Some(id_of(&echo)) {
        return Err(Failure::new(
            "al reanudar con Last-Event-ID no llegó primero lo que se perdió",
        )
        .expected(format!(
            "el activity message {} de la sala (el join {} ya se había visto)",
            id_of(&echo),
            join.id
        ))
        .got(format!("id: {} {}", message.id, message.data)));
    }
    let (leave, _) = resumed
        .next_where(
            "el activity del leave perdido",
            EVENT_WAIT,
            activity_in(&room, "leave"),
        )
        .await?;
    drop(resumed);
    let leave_id = leave.id.trim().parse::<u64>().unwrap_or(0);
    // A fresh connection gets no backlog: the first event of this room is the new join.
    let mut fresh = project.sse(&admin, None).await?;
    a.join(&room).await?;
    let (event, data) = fresh
        .next_where("el activity del nuevo join", EVENT_WAIT, |event, data| {
            event.event == "activity" && data["room"] == room.as_str()
        })
        .await?;
    let id = event.id.trim().parse::<u64>().unwrap_or(0);
    if data["kind"] != "join" || id <= leave_id {
        return Err(
            Failure::new("una conexión nueva al panel recibió actividad atrasada")
                .expected(format!(
                    "solo lo que ocurre desde que se conecta (un join con id > {leave_id})"
                ))
                .got(format!("id: {} {}", event.id, event.data))
                .hint("sin Last-Event-ID el stream empieza en vivo, sin atrasos"),
        );
    }
    Ok(())
}

pub async fn page(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let answer = project.get("/dashboard", None).await?;
    let html = answer
        .header("content-type")
        .is_some_and(|value| value.starts_with("text/html"));
    if answer.status != 200 || !html || !answer.text.to_lowercase().contains("<html") {
        return Err(Failure::new("GET /dashboard no sirve la página del panel")
            .expected("200 con Content-Type: text/html")
            .got(format!(
                "{} {}",
                answer.status,
                answer.header("content-type").unwrap_or("(sin Content-Type)")
            ))
            .hint("la página usa EventSource('/dashboard/events?token=…') para mostrar el panel en vivo"));
    }
    Ok(())
}
