//! Rooms over REST: list, create, history pages and invitations.

pub mod routes;

use crate::auth::AuthUser;
use crate::backend::Backends;
use crate::domain::{Room, RoomId};
use crate::error::ApiError;

/// The room, or the contract's 404.
pub async fn existing_room(backends: &Backends, id: &str) -> Result<(RoomId, Room), ApiError> {
    let not_found = || ApiError::NotFound(format!("la sala «{id}» no existe"));
    let room_id = RoomId::parse(id).map_err(|_| not_found())?;
    let room = backends.rooms.room(&room_id).await?.ok_or_else(not_found)?;
    Ok((room_id, room))
}

/// The id of a private room whose members `caller` may change (its creator, or an admin), or
/// the contract's errors in its order: unknown room 404, public room 409, caller 403. `action`
/// names what was attempted, for the 403's message.
pub async fn managed_private_room(
    backends: &Backends,
    id: &str,
    caller: &AuthUser,
    action: &str,
) -> Result<RoomId, ApiError> {
    let (room_id, room) = existing_room(backends, id).await?;
    if !room.private {
        return Err(ApiError::Conflict(
            "las salas públicas no tienen lista de miembros: cualquiera puede unirse".into(),
        ));
    }
    if room.created_by.as_deref() != Some(caller.username.as_str()) && !caller.is_admin() {
        return Err(ApiError::Forbidden(format!(
            "solo quien creó la sala o un admin puede {action}"
        )));
    }
    Ok(room_id)
}

/// Whether the user may read and write the room: public rooms are open to everyone, private
/// ones to their members.
pub async fn may_access(
    backends: &Backends,
    room_id: &RoomId,
    room: &Room,
    user: &str,
) -> Result<bool, ApiError> {
    if !room.private {
        return Ok(true);
    }
    Ok(backends.rooms.is_member(room_id, user).await?)
}
