//! Rooms over REST: list, create, history pages and invitations.

pub mod routes;

use crate::app::AppState;
use crate::domain::{Room, RoomId};
use crate::error::ApiError;

/// The room, or the contract's 404.
pub async fn existing_room(state: &AppState, id: &str) -> Result<(RoomId, Room), ApiError> {
    let not_found = || ApiError::NotFound(format!("la sala «{id}» no existe"));
    let room_id = RoomId::parse(id).map_err(|_| not_found())?;
    let room = state
        .backends
        .rooms
        .room(&room_id)
        .await?
        .ok_or_else(not_found)?;
    Ok((room_id, room))
}

/// Whether the user may read and write the room: public rooms are open to everyone, private
/// ones to their members.
pub async fn may_access(
    state: &AppState,
    room_id: &RoomId,
    room: &Room,
    user: &str,
) -> Result<bool, ApiError> {
    if !room.private {
        return Ok(true);
    }
    Ok(state.backends.rooms.is_member(room_id, user).await?)
}
