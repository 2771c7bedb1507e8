//! The WebSocket endpoint `/ws`: the upgrade (Origin check, then authentication), the protocol
//! frames, the per-connection loop and the local hub.
//!
//! The upgrade handler takes from the router's state only the handles it uses (`FromRef`), and
//! builds the connection's [`connection::Handles`] from them: nothing here knows the server that
//! assembles the router.

pub mod connection;
pub mod hub;
pub mod origin;
pub mod protocol;

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{FromRef, FromRequestParts, State, WebSocketUpgrade};
use axum::http::header::{HOST, ORIGIN};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::connection::Handles;
use self::hub::Hub;
use self::origin::OriginPolicy;
use crate::auth::tokens::Tokens;
use crate::auth::{AuthUser, TokenPlace};
use crate::backend::Backends;
use crate::cache::Cache;
use crate::config::Config;
use crate::connections::{Slot, UserConnections};
use crate::dashboard::Dashboard;
use crate::error::ApiError;
use crate::events::ActivityFeed;
use crate::jobs::Jobs;
use crate::server::OpenFiles;

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

/// The `/ws` route, for any router state that provides the handles [`upgrade`] takes.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<OriginPolicy>: FromRef<S>,
    Arc<Tokens>: FromRef<S>,
    OpenFiles: FromRef<S>,
    UserConnections: FromRef<S>,
    Arc<Config>: FromRef<S>,
    Backends: FromRef<S>,
    Arc<Hub>: FromRef<S>,
    ActivityFeed: FromRef<S>,
    Dashboard: FromRef<S>,
    Cache: FromRef<S>,
    Jobs: FromRef<S>,
    TaskTracker: FromRef<S>,
    CancellationToken: FromRef<S>,
{
    Router::new().route("/ws", get(upgrade))
}

// ANCHOR: upgrade
/// The caller of `/ws`, checked in the contract's order: an `Origin` the server allows, when
/// there is one (else 403), then a valid token from `Authorization: Bearer` or `?token=`, which
/// is all a browser's `WebSocket` can send (else 401).
struct Caller(AuthUser);

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<OriginPolicy>: FromRef<S>,
    Arc<Tokens>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        if let Some(origin) = parts.headers.get(ORIGIN) {
            let host = parts.headers.get(HOST).and_then(|host| host.to_str().ok());
            let origins = Arc::<OriginPolicy>::from_ref(state);
            let allowed = origin
                .to_str()
                .is_ok_and(|origin| origins.allows(origin, host));
            if !allowed {
                return Err(ApiError::Forbidden("origen no permitido".into()));
            }
        }
        let tokens = Arc::<Tokens>::from_ref(state);
        AuthUser::from_token(parts, &tokens, TokenPlace::HeaderOrQuery).map(Self)
    }
}

/// Checks the Origin (403), then the token (401), and only then upgrades. Takes each handle the
/// connection uses from the router's state, and nothing else.
#[expect(
    clippy::too_many_arguments,
    reason = "one `State` per handle the connection uses, which is the point"
)]
async fn upgrade(
    Caller(user): Caller,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(open_files): State<OpenFiles>,
    State(connections): State<UserConnections>,
    State(config): State<Arc<Config>>,
    State(backends): State<Backends>,
    State(hub): State<Arc<Hub>>,
    State(activity): State<ActivityFeed>,
    State(dashboard): State<Dashboard>,
    State(cache): State<Cache>,
    State(jobs): State<Jobs>,
    State(tasks): State<TaskTracker>,
    State(shutdown): State<CancellationToken>,
) -> Response {
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
    if open_files.near_limit() {
        return ApiError::Unavailable(
            "el servidor no admite más conexiones ahora; inténtalo más tarde".into(),
        )
        .into_response();
    }
    let slot = match connections.acquire(&user.username).await {
        Ok(slot) => slot,
        Err(refused) => return refused.into_response(),
    };
    let server = Handles {
        config,
        backends,
        hub,
        activity,
        dashboard,
        cache,
        jobs,
        tasks,
        shutdown,
    };
    accept(upgrade, server, user, slot)
}
// ANCHOR_END: upgrade

// ANCHOR: accept
/// Replaces tungstenite's generous defaults (64 MiB messages, 16 MiB frames, unbounded write
/// buffer) with the contract's limits, and runs the connection as a task the server tracks.
/// The connection holds its user's `slot` until it ends (or until a failed upgrade drops it).
fn accept(upgrade: WebSocketUpgrade, server: Handles, user: AuthUser, slot: Slot) -> Response {
    let tasks = server.tasks.clone();
    // The callback stays in the upgrade's task for as long as the connection lives, even after
    // it ran: it holds one pointer to what it hands over, not a second copy of the handles.
    let start = Box::new((server, user, slot));
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .on_upgrade(move |socket| {
            let (server, user, slot) = *start;
            tasks.track_future(connection::run(socket, server, user, slot))
        })
}
// ANCHOR_END: accept
