//! `/rooms`, `/rooms/{id}/messages`, `/rooms/{id}/members`.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{existing_room, managed_private_room, may_access};
use crate::auth::AuthUser;
use crate::auth::tokens::Tokens;
use crate::backend::{Audience, Backends, HistoryQuery, RoomEvent};
use crate::cache::{Cache, Cached};
use crate::config::Config;
use crate::domain::{Room, RoomId, RoomName, Username};
use crate::error::{ApiError, extract};

/// The REST rooms, on any state that holds the handles they use.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Backends: FromRef<S>,
    Cache: FromRef<S>,
    Arc<Config>: FromRef<S>,
    Arc<Tokens>: FromRef<S>,
{
    Router::new()
        .route("/rooms", get(list_rooms).post(create_room))
        .route("/rooms/{id}/messages", get(messages))
        .route("/rooms/{id}/members", post(invite))
        .route("/rooms/{id}/members/{username}", delete(remove_member))
}

/// A room as `GET /rooms` shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "Una sala: `members` y `online` son recuentos (miembros y usuarios conectados ahora)"
)]
pub struct RoomSummary {
    #[schema(example = "general", pattern = "^[a-z0-9-]{1,32}$")]
    pub id: String,
    #[schema(example = "General")]
    pub name: String,
    pub private: bool,
    pub members: u64,
    pub online: u64,
}

async fn summary(backends: &Backends, room: Room) -> Result<RoomSummary, ApiError> {
    let room_id =
        RoomId::parse(&room.id).map_err(|_| ApiError::Unavailable("id de sala corrupto".into()))?;
    let members = backends.rooms.member_count(&room_id).await?;
    let online = backends.presence.online(&room_id).await?.len() as u64;
    Ok(RoomSummary {
        id: room.id,
        name: room.name,
        private: room.private,
        members,
        online,
    })
}

#[utoipa::path(
    get, path = "/rooms", tag = "salas",
    summary = "Listar las salas visibles",
    description = "Las salas públicas y las privadas de las que eres miembro. Se sirve desde una caché (TTL de 5 s como mucho, invalidada al crear salas, invitar, quitar a un miembro o unirse por primera vez); los usuarios conectados pueden ir hasta ese TTL por detrás.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Salas visibles", body = Vec<RoomSummary>,
            headers(("X-Cache" = String, description = "`HIT` si vino de la caché, `MISS` si se calculó"))),
        (status = 401, description = "Token ausente, inválido o caducado (`unauthorized`)", body = crate::api_schema::ErrorBody),
    ),
)]
// ANCHOR: list_rooms
async fn list_rooms(
    State(backends): State<Backends>,
    State(cache): State<Cache>,
    caller: AuthUser,
) -> Result<Cached, ApiError> {
    // Cache-aside: the cached list of this caller, or `visible_rooms` computed and cached.
    cache
        .rooms(&caller.username, || {
            visible_rooms(&backends, &caller.username)
        })
        .await
}
// ANCHOR_END: list_rooms

/// What `GET /rooms` shows `user`, read from the backends (on a cache miss).
async fn visible_rooms(backends: &Backends, user: &str) -> Result<Vec<RoomSummary>, ApiError> {
    let mut visible = Vec::new();
    for room in backends.rooms.rooms().await? {
        let room_id = RoomId::parse(&room.id)
            .map_err(|_| ApiError::Unavailable("id de sala corrupto".into()))?;
        if may_access(backends, &room_id, &room, user).await? {
            visible.push(summary(backends, room).await?);
        }
    }
    Ok(visible)
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "Sala nueva; `private` vale `false` si se omite")]
struct CreateRoom {
    #[schema(example = "proyecto-x", pattern = "^[a-z0-9-]{1,32}$")]
    id: String,
    #[schema(example = "Proyecto X")]
    name: String,
    #[serde(default)]
    private: bool,
}

/// The sliding window of `CHAT_ROOMS_PER_HOUR`.
const ROOM_QUOTA_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Takes one of the caller's room creations of the last hour: `None` for admins (exempt) or
/// with no limit configured, else the ticket to give back if the room is not created; 429 with
/// `Retry-After` when all are taken.
async fn take_room_place(
    backends: &Backends,
    limit: u64,
    caller: &AuthUser,
) -> Result<Option<String>, ApiError> {
    if caller.is_admin() || limit == 0 {
        return Ok(None);
    }
    let quota = &backends.room_quota;
    match quota
        .take(&caller.username, limit, ROOM_QUOTA_WINDOW)
        .await?
    {
        Ok(ticket) => Ok(Some(ticket)),
        Err(wait) => {
            tracing::info!(user = %caller.username, "límite de creación de salas alcanzado");
            Err(ApiError::RateLimited(wait))
        }
    }
}

#[utoipa::path(
    post, path = "/rooms", tag = "salas",
    summary = "Crear una sala",
    description = "Crea una sala; quien la crea es su primer miembro y, si es privada, quien puede invitar.",
    security(("bearer" = [])),
    request_body = CreateRoom,
    responses(
        (status = 201, description = "Sala creada", body = RoomSummary),
        (status = 401, description = "Token ausente, inválido o caducado (`unauthorized`)", body = crate::api_schema::ErrorBody),
        (status = 409, description = "Ya existe una sala con ese id (`conflict`)", body = crate::api_schema::ErrorBody),
        (status = 429, description = "Ya creaste 30 salas en la última hora (`rate_limited`; `CHAT_ROOMS_PER_HOUR`, los admins no tienen límite y los intentos rechazados no cuentan)", body = crate::api_schema::ErrorBody,
            headers(("Retry-After" = u64, description = "Segundos hasta que quede un hueco, de 1 a 3600"))),
        (status = 422, description = "El id no es un slug, o el nombre no tiene de 1 a 64 caracteres, no tiene nada visible o lleva caracteres de control o de cambio de dirección del texto (`invalid_input`)", body = crate::api_schema::ErrorBody),
    ),
)]
async fn create_room(
    State(backends): State<Backends>,
    State(cache): State<Cache>,
    State(config): State<Arc<Config>>,
    caller: AuthUser,
    extract::Json(request): extract::Json<CreateRoom>,
) -> Result<(StatusCode, Json<RoomSummary>), ApiError> {
    let room_id = RoomId::parse(&request.id)?;
    let name = RoomName::parse(&request.name)?;
    let room = Room {
        id: room_id.as_str().to_owned(),
        name: name.as_str().to_owned(),
        private: request.private,
        created_by: Some(caller.username.clone()),
    };
    // Take a place in the caller's hourly quota first (atomically, on every node), and give it
    // back if the room cannot be created: only rooms that exist count.
    let ticket = take_room_place(&backends, config.rooms_per_hour, &caller).await?;
    if let Err(error) = backends.rooms.create_room(room.clone()).await {
        if let Some(ticket) = ticket {
            let quota = &backends.room_quota;
            if let Err(error) = quota.give_back(&caller.username, &ticket).await {
                tracing::warn!(%error, user = %caller.username, "no se pudo devolver un hueco de creación de salas");
            }
        }
        return Err(error.into());
    }
    cache.invalidate_rooms().await;
    // A public room is new to everyone; a private one only to its creator (on their other tabs).
    let audience = if room.private {
        Audience::User(caller.username.clone())
    } else {
        Audience::AllUsers
    };
    rooms_changed(&backends, &room_id, audience).await;
    tracing::info!(room = %room_id, user = %caller.username, private = room.private, "sala creada");
    Ok((StatusCode::CREATED, Json(summary(&backends, room).await?)))
}

/// Query of `GET /rooms/{id}/messages`. Signed, so that a negative cursor is our 422 with a
/// clear message rather than a parse error.
#[derive(Debug, Deserialize)]
struct MessagesQuery {
    after: Option<i64>,
    before: Option<i64>,
    limit: Option<i64>,
}

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 200;

impl MessagesQuery {
    fn parse(self) -> Result<HistoryQuery, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE);
        if limit < 1 {
            return Err(ApiError::InvalidInput("limit debe ser 1 o mayor".into()));
        }
        let limit = limit.min(MAX_PAGE) as usize;
        let cursor = |value: Option<i64>| match value {
            Some(n) if n < 0 => Err(ApiError::InvalidInput(
                "los cursores no pueden ser negativos".into(),
            )),
            other => Ok(other.map(|n| n as u64)),
        };
        Ok(match (cursor(self.after)?, cursor(self.before)?) {
            (None, None) => HistoryQuery::Latest { limit },
            (None, Some(before)) => HistoryQuery::Before { before, limit },
            (Some(after), None) => HistoryQuery::After { after, limit },
            (Some(after), Some(before)) => HistoryQuery::Between {
                after,
                before,
                limit,
            },
        })
    }
}

#[utoipa::path(
    get, path = "/rooms/{id}/messages", tag = "salas",
    summary = "Historial de una sala",
    description = "Historial paginado, siempre en orden ascendente de id. Sin cursores: los `limit` más recientes. `before=N`: los `limit` más recientes por debajo de N. `after=N`: los `limit` más antiguos por encima de N. Ambos: los `limit` más antiguos estrictamente entre ellos.",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Id de la sala: slug `[a-z0-9-]{1,32}`", example = "general"),
        ("after" = Option<u64>, Query, description = "Solo mensajes con id mayor que este"),
        ("before" = Option<u64>, Query, description = "Solo mensajes con id menor que este"),
        ("limit" = Option<u64>, Query, description = "Cuántos como mucho: 50 por defecto; más de 200 se recorta a 200; menos de 1 es 422", minimum = 1),
    ),
    responses(
        (status = 200, description = "Una página del historial", body = crate::api_schema::MessagesPage),
        (status = 401, description = "Token ausente, inválido o caducado (`unauthorized`)", body = crate::api_schema::ErrorBody),
        (status = 403, description = "Sala privada de la que no eres miembro (`forbidden`)", body = crate::api_schema::ErrorBody),
        (status = 404, description = "La sala no existe (`not_found`)", body = crate::api_schema::ErrorBody),
        (status = 422, description = "`limit` menor que 1, cursor negativo o parámetro de tipo incorrecto (`invalid_input`)", body = crate::api_schema::ErrorBody),
    ),
)]
async fn messages(
    State(backends): State<Backends>,
    caller: AuthUser,
    extract::Path(id): extract::Path<String>,
    extract::Query(query): extract::Query<MessagesQuery>,
) -> Result<Response, ApiError> {
    let query = query.parse()?;
    let (room_id, room) = existing_room(&backends, &id).await?;
    if !may_access(&backends, &room_id, &room, &caller.username).await? {
        return Err(ApiError::Forbidden(
            "no eres miembro de esta sala privada".into(),
        ));
    }
    let page = backends.messages.history(&room_id, query).await?;
    // The stored frames are already JSON: splice them in instead of parsing and re-serializing.
    let frames: Vec<&str> = page
        .frames
        .iter()
        .map(|frame| frame.json.as_str())
        .collect();
    let body = format!(
        r#"{{"messages":[{}],"has_more":{}}}"#,
        frames.join(","),
        page.has_more
    );
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "A quién invitar")]
struct Invite {
    #[schema(example = "luis")]
    username: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "La invitación hecha (o que ya existía)")]
struct Invited {
    #[schema(example = "proyecto-x")]
    room: String,
    #[schema(example = "luis")]
    username: String,
}

#[utoipa::path(
    post, path = "/rooms/{id}/members", tag = "salas",
    summary = "Invitar a una sala privada",
    description = "Invita a alguien a una sala privada. Se comprueba en este orden: sala desconocida 404, sala pública 409, quien llama no es quien la creó ni admin 403, usuario desconocido 404.",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Id de la sala: slug `[a-z0-9-]{1,32}`", example = "general")),
    request_body = Invite,
    responses(
        (status = 201, description = "Invitado", body = Invited),
        (status = 200, description = "Ya era miembro", body = Invited),
        (status = 401, description = "Token ausente, inválido o caducado (`unauthorized`)", body = crate::api_schema::ErrorBody),
        (status = 403, description = "Solo quien creó la sala o un admin puede invitar (`forbidden`)", body = crate::api_schema::ErrorBody),
        (status = 404, description = "La sala o el usuario no existen (`not_found`)", body = crate::api_schema::ErrorBody),
        (status = 409, description = "La sala es pública (`conflict`)", body = crate::api_schema::ErrorBody),
        (status = 422, description = "Cuerpo mal formado (`invalid_input`)", body = crate::api_schema::ErrorBody),
    ),
)]
async fn invite(
    State(backends): State<Backends>,
    State(cache): State<Cache>,
    caller: AuthUser,
    extract::Path(id): extract::Path<String>,
    extract::Json(request): extract::Json<Invite>,
) -> Result<(StatusCode, Json<Invited>), ApiError> {
    // The order of these checks is the contract's: room, public room, caller, then user.
    let room_id = managed_private_room(&backends, &id, &caller, "invitar").await?;
    let unknown = || ApiError::NotFound(format!("el usuario «{}» no existe", request.username));
    let username = Username::parse(&request.username).map_err(|_| unknown())?;
    if backends
        .users
        .user_by_name(username.as_str())
        .await?
        .is_none()
    {
        return Err(unknown());
    }
    let added = backends
        .rooms
        .add_member(&room_id, username.as_str())
        .await?;
    if added {
        // The invitee now sees the room, and its member count grew.
        cache.invalidate_rooms().await;
        let invitee = Audience::User(username.as_str().to_owned());
        rooms_changed(&backends, &room_id, invitee).await;
    }
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if added {
        tracing::info!(room = %room_id, user = %username, by = %caller.username, "miembro invitado");
    }
    Ok((
        status,
        Json(Invited {
            room: room_id.as_str().to_owned(),
            username: username.as_str().to_owned(),
        }),
    ))
}

/// `DELETE /rooms/{id}/members/{username}` (an extension of the contract): takes a member out of
/// a private room. The same checks as an invitation, then every live connection of that user
/// leaves the room on every node and gets a `left` frame.
#[utoipa::path(
    delete, path = "/rooms/{id}/members/{username}", tag = "salas",
    summary = "Quitar a un miembro de una sala privada",
    description = "Extensión del contrato: quita a un miembro de una sala privada (quien la creó o un admin). Sus conexiones abiertas, en cualquier nodo, reciben `{\"type\":\"left\",\"room\"}` y dejan de recibir la sala al instante.",
    security(("bearer" = [])),
    params(
        ("id" = String, Path, description = "Id de la sala: slug `[a-z0-9-]{1,32}`", example = "general"),
        ("username" = String, Path, description = "El miembro que se quita", example = "luis"),
    ),
    responses(
        (status = 204, description = "Quitado"),
        (status = 401, description = "Token ausente, inválido o caducado (`unauthorized`)", body = crate::api_schema::ErrorBody),
        (status = 403, description = "Solo quien creó la sala o un admin puede quitar miembros (`forbidden`)", body = crate::api_schema::ErrorBody),
        (status = 404, description = "La sala no existe o esa persona no era miembro (`not_found`)", body = crate::api_schema::ErrorBody),
        (status = 409, description = "La sala es pública (`conflict`)", body = crate::api_schema::ErrorBody),
    ),
)]
async fn remove_member(
    State(backends): State<Backends>,
    State(cache): State<Cache>,
    caller: AuthUser,
    extract::Path((id, username)): extract::Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let room_id = managed_private_room(&backends, &id, &caller, "quitar miembros").await?;
    if !backends.rooms.remove_member(&room_id, &username).await? {
        return Err(ApiError::NotFound(format!(
            "«{username}» no es miembro de la sala"
        )));
    }
    cache.invalidate_rooms().await;
    // Before the `left`, so that a connection in the room has heard everything once it has that.
    rooms_changed(&backends, &room_id, Audience::User(username.clone())).await;
    let left = crate::ws::protocol::to_json(&crate::ws::protocol::ServerFrame::Left {
        room: room_id.as_str(),
    });
    let revoke = RoomEvent {
        room: room_id.clone(),
        message_id: None,
        audience: Audience::Revoked(username.clone()),
        frame: left.into(),
    };
    backends.fanout.publish(revoke).await?;
    tracing::info!(room = %room_id, user = %username, by = %caller.username, "miembro quitado");
    Ok(StatusCode::NO_CONTENT)
}

/// Tells the users whose list of rooms changed (`rooms_changed`, an extension of the contract:
/// see `PROTOCOL.md`), on every node, after the `GET /rooms` cache was invalidated. It is only a
/// hint to list the rooms again (clients also poll), so a failure to publish is logged and the
/// request, whose change is already stored, still succeeds.
async fn rooms_changed(backends: &Backends, room: &RoomId, audience: Audience) {
    let event = RoomEvent::rooms_changed(room.clone(), audience);
    if let Err(error) = backends.fanout.publish(event).await {
        tracing::warn!(%error, room = %room, "no se pudo avisar de que cambió la lista de salas");
    }
}
