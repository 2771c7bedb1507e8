//! `/rooms`, `/rooms/{id}/messages`, `/rooms/{id}/members`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{existing_room, may_access};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::backend::{Audience, HistoryQuery, RoomEvent};
use crate::domain::{Room, RoomId, Username};
use crate::error::{ApiError, extract};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/rooms", get(list_rooms).post(create_room))
        .route("/rooms/{id}/messages", get(messages))
        .route("/rooms/{id}/members", post(invite))
        .route("/rooms/{id}/members/{username}", delete(remove_member))
}

/// A room as `GET /rooms` shows it.
#[derive(Debug, Serialize)]
pub struct RoomSummary {
    pub id: String,
    pub name: String,
    pub private: bool,
    pub members: u64,
    pub online: u64,
}

async fn summary(state: &AppState, room: Room) -> Result<RoomSummary, ApiError> {
    let room_id =
        RoomId::parse(&room.id).map_err(|_| ApiError::Unavailable("id de sala corrupto".into()))?;
    let members = state.backends.rooms.member_count(&room_id).await?;
    let online = state.backends.presence.online(&room_id).await?.len() as u64;
    Ok(RoomSummary {
        id: room.id,
        name: room.name,
        private: room.private,
        members,
        online,
    })
}

async fn list_rooms(
    State(state): State<AppState>,
    caller: AuthUser,
) -> Result<Json<Vec<RoomSummary>>, ApiError> {
    let mut visible = Vec::new();
    for room in state.backends.rooms.rooms().await? {
        let room_id = RoomId::parse(&room.id)
            .map_err(|_| ApiError::Unavailable("id de sala corrupto".into()))?;
        if may_access(&state, &room_id, &room, &caller.username).await? {
            visible.push(summary(&state, room).await?);
        }
    }
    Ok(Json(visible))
}

#[derive(Debug, Deserialize)]
struct CreateRoom {
    id: String,
    name: String,
    #[serde(default)]
    private: bool,
}

async fn create_room(
    State(state): State<AppState>,
    caller: AuthUser,
    extract::Json(request): extract::Json<CreateRoom>,
) -> Result<(StatusCode, Json<RoomSummary>), ApiError> {
    let room_id = RoomId::parse(&request.id)?;
    let name = request.name.trim();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(ApiError::InvalidInput(
            "el nombre de la sala debe tener de 1 a 64 caracteres".into(),
        ));
    }
    let room = Room {
        id: room_id.as_str().to_owned(),
        name: name.to_owned(),
        private: request.private,
        created_by: Some(caller.username.clone()),
    };
    state.backends.rooms.create_room(room.clone()).await?;
    tracing::info!(room = %room_id, user = %caller.username, private = room.private, "room created");
    Ok((StatusCode::CREATED, Json(summary(&state, room).await?)))
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

async fn messages(
    State(state): State<AppState>,
    caller: AuthUser,
    extract::Path(id): extract::Path<String>,
    extract::Query(query): extract::Query<MessagesQuery>,
) -> Result<Response, ApiError> {
    let query = query.parse()?;
    let (room_id, room) = existing_room(&state, &id).await?;
    if !may_access(&state, &room_id, &room, &caller.username).await? {
        return Err(ApiError::Forbidden(
            "no eres miembro de esta sala privada".into(),
        ));
    }
    let page = state.backends.messages.history(&room_id, query).await?;
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

#[derive(Debug, Deserialize)]
struct Invite {
    username: String,
}

#[derive(Debug, Serialize)]
struct Invited {
    room: String,
    username: String,
}

async fn invite(
    State(state): State<AppState>,
    caller: AuthUser,
    extract::Path(id): extract::Path<String>,
    extract::Json(request): extract::Json<Invite>,
) -> Result<(StatusCode, Json<Invited>), ApiError> {
    // The order of these checks is the contract's.
    let (room_id, room) = existing_room(&state, &id).await?;
    if !room.private {
        return Err(ApiError::Conflict(
            "las salas públicas no necesitan invitación".into(),
        ));
    }
    if room.created_by.as_deref() != Some(caller.username.as_str()) && !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "solo quien creó la sala o un admin puede invitar".into(),
        ));
    }
    let unknown = || ApiError::NotFound(format!("el usuario «{}» no existe", request.username));
    let username = Username::parse(&request.username).map_err(|_| unknown())?;
    if state
        .backends
        .users
        .user_by_name(username.as_str())
        .await?
        .is_none()
    {
        return Err(unknown());
    }
    let added = state
        .backends
        .rooms
        .add_member(&room_id, username.as_str())
        .await?;
    let status = if added {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    if added {
        tracing::info!(room = %room_id, user = %username, by = %caller.username, "member invited");
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
async fn remove_member(
    State(state): State<AppState>,
    caller: AuthUser,
    extract::Path((id, username)): extract::Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (room_id, room) = existing_room(&state, &id).await?;
    if !room.private {
        return Err(ApiError::Conflict(
            "las salas públicas no tienen lista de miembros que editar".into(),
        ));
    }
    if room.created_by.as_deref() != Some(caller.username.as_str()) && !caller.is_admin() {
        return Err(ApiError::Forbidden(
            "solo quien creó la sala o un admin puede quitar miembros".into(),
        ));
    }
    if !state
        .backends
        .rooms
        .remove_member(&room_id, &username)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "«{username}» no es miembro de la sala"
        )));
    }
    let left = crate::ws::protocol::to_json(&crate::ws::protocol::ServerFrame::Left {
        room: room_id.as_str(),
    });
    let revoke = RoomEvent {
        room: room_id.clone(),
        message_id: None,
        audience: Audience::Revoked(username.clone()),
        frame: left.into(),
    };
    state.backends.fanout.publish(revoke).await?;
    tracing::info!(room = %room_id, user = %username, by = %caller.username, "member removed");
    Ok(StatusCode::NO_CONTENT)
}
