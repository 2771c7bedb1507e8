//! The WebSocket endpoint `/ws`: the upgrade (Origin check, then authentication), the protocol
//! frames, the per-connection loop and the local hub.

pub mod connection;
pub mod hub;
pub mod origin;
pub mod protocol;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::http::header::{HOST, ORIGIN};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;

/// Largest message (after reassembling fragments) and frame a client may send: 64 KiB.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How much tungstenite reads from the socket at a time, and the buffer each connection keeps
/// for it, talking or not. It bounds a read, not a message: a larger frame (up to
/// [`MAX_MESSAGE_BYTES`]) grows the buffer for as long as it takes to arrive. Client frames are
/// a few hundred bytes, so 1 KiB reads most of them at once; it was 4 KiB, and the 3 KiB saved
/// per connection are 30 MiB at 10,000 idle connections (`bench/RESULTS.md`).
const READ_BUFFER: usize = 1024;
/// Bytes of unsent data a connection may buffer before writes fail (tungstenite's default is
/// unbounded). Each write is flushed at once, so this bounds a single frame, and a larger one
/// could never be sent. The largest is a `joined` with 1,000 messages of 4,000 characters
/// (up to 6 bytes each when JSON escapes them): about 25 MiB.
const MAX_WRITE_BUFFER: usize = 32 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

#[derive(Debug, Deserialize)]
struct WsQuery {
    token: Option<String>,
}

// ANCHOR: upgrade
/// Checks the Origin (403), then the token (401), and only then upgrades.
async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<WsQuery>, QueryRejection>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Some(origin) = headers.get(ORIGIN) {
        let host = headers.get(HOST).and_then(|host| host.to_str().ok());
        let allowed = origin
            .to_str()
            .is_ok_and(|origin| state.origins.allows(origin, host));
        if !allowed {
            return ApiError::Forbidden("origen no permitido".into()).into_response();
        }
    }
    let header_token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_owned());
    let token = header_token.or_else(|| query.ok().and_then(|Query(query)| query.token));
    let Some(user) = token
        .as_deref()
        .and_then(|token| state.tokens.verify(token))
    else {
        return ApiError::bad_token().into_response();
    };
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            return ApiError::InvalidInput(format!(
                "se esperaba un upgrade a WebSocket: {rejection}"
            ))
            .into_response();
        }
    };
    // Capacity, before the upgrade: the process's open files (a WebSocket holds a descriptor for
    // as long as it lives), then the user's own connections across every node.
    if state.open_files.near_limit() {
        return ApiError::Unavailable(
            "el servidor no admite más conexiones ahora; inténtalo más tarde".into(),
        )
        .into_response();
    }
    let slot = match state.connections.acquire(&user.username).await {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    accept(upgrade, state, user, slot)
}
// ANCHOR_END: upgrade

// ANCHOR: accept
/// Replaces tungstenite's generous defaults (64 MiB messages, 16 MiB frames, unbounded write
/// buffer) with the contract's limits, and runs the connection as a task the server tracks.
/// The connection holds its user's `slot` until it ends (or until a failed upgrade drops it).
fn accept(
    upgrade: WebSocketUpgrade,
    state: AppState,
    user: AuthUser,
    slot: crate::connections::Slot,
) -> Response {
    let tasks = state.tasks.clone();
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            tasks.track_future(async move {
                let _slot = slot;
                connection::run(socket, state, user).await;
            })
        })
}
// ANCHOR_END: accept
