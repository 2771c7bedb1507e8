//! The Redis backend: every node of a cluster keeps its state in one Redis, so that several
//! nodes behind a load balancer act as one server.
//!
//! One file per job, like the traits: `store` (users and rooms), `history` (the message log and
//! the broadcast of messages), `presence`, `fanout` (publishing events and the listener that hands them to the
//! local hub), `limiter` (login attempts) and `quota` (rooms created per user). Every step that
//! must not be interleaved with another node's is one Lua script (the `*.lua` files beside this
//! one): Redis runs a script from start to end without running anything else in between.
//!
//! # Key layout
//! Every key and channel starts with a prefix (`chat` by default), so that several apps (or
//! tests) can share one Redis. `{room}` and `{user}` never contain `:`, so keys cannot collide.
//!
//! | key | type | what |
//! |---|---|---|
//! | `{p}:user:{username}` | string | the user's [`UserRecord`](crate::domain::UserRecord) as JSON |
//! | `{p}:email:{lowercased e-mail}` | string | the username that owns the address |
//! | `{p}:rooms` | hash | room id → the [`Room`](crate::domain::Room) as JSON |
//! | `{p}:members:{room}` | set | usernames |
//! | `{p}:seq:{room}` | string | the room's last message id |
//! | `{p}:history:{room}` | sorted set | message frames scored by id, the newest `CHAT_HISTORY_LIMIT` |
//! | `{p}:epoch:{room}` | string | the room's history epoch; made on first read, so a Redis emptied (or this key deleted) gives a new one |
//! | `{p}:cid:{room}:{user}:{client_id}` | string | the id a `client_id` got (expires after 600 s) |
//! | `{p}:online:{room}` | sorted set | users scored by when their newest connection expires (ms) |
//! | `{p}:conns:{room}:{user}` | sorted set | the user's connection ids scored by expiry (ms) |
//! | `{p}:sessions:{user}` | sorted set | all the user's connection ids, joined or not, scored by expiry (ms) |
//! | `{p}:login:{username}` | string | login attempts in the current window (expires with it) |
//! | `{p}:room_quota:{user}` | sorted set | tickets of the rooms the user created in the last hour, scored by when (ms) |
//! | `{p}:events` | channel | every room event (format in `fanout.rs`) |

mod fanout;
mod history;
mod limiter;
mod presence;
pub(crate) mod pubsub;
mod quota;
mod store;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{ErrorKind, RedisError};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{EventSink, HealthCheck, StoreError, StoreResult};
use crate::supervisor::Supervisor;

/// The supervised task that hands the events of the Redis channel to this node's hub.
pub const LISTENER_TASK: &str = "escucha de eventos de Redis";
/// The supervised task that keeps this node's connections in the Redis presence.
pub const PRESENCE_HEARTBEAT_TASK: &str = "latido de presencia";

/// How long one command may wait for Redis before it fails as `Unavailable`. The library's
/// default (0.5 s) is tight for a busy test machine; a stuck request should still fail fast.
pub(crate) const RESPONSE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long one attempt to (re)connect may take. A connection to a frozen Redis is accepted by
/// the kernel and then never answers its handshake; without this limit a reconnection (which
/// every command waits for) could hang for the library's default.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How many times a reconnection retries before the commands waiting on it fail. The library's
/// default (6, with a doubling wait) makes every request wait ~9 s while Redis is down; with 1
/// a reconnection gives up within about `2 × CONNECT_TIMEOUT`, and the next command tries again.
/// The manager never re-sends a command that timed out: it fails with the timeout.
const CONNECT_RETRIES: usize = 1;

/// Connects to Redis and builds every backend on it. `prefix` namespaces every key and channel
/// (default "chat"; tests use a unique one per app so that apps can share a server, and two nodes
/// of one cluster use the same one). Background tasks (the pub/sub listener, the presence
/// heartbeat) are spawned on `tasks` under the app's `supervisor` (which restarts them and tells
/// `/ready` about those that keep failing) and stop when `shutdown` is cancelled.
///
/// Returns only once the listener is subscribed, so an event published right after start-up
/// reaches this node's hub.
pub async fn backends(
    url: &str,
    prefix: &str,
    sink: Arc<dyn EventSink>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
    supervisor: &Supervisor,
) -> Result<super::Backends, StoreError> {
    let limit = crate::config::DEFAULT_HISTORY_LIMIT;
    backends_keeping(url, prefix, limit, sink, tasks, shutdown, supervisor).await
}

/// Like [`backends`], keeping the newest `history_limit` messages of each room (at least one).
pub async fn backends_keeping(
    url: &str,
    prefix: &str,
    history_limit: usize,
    sink: Arc<dyn EventSink>,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
    supervisor: &Supervisor,
) -> Result<super::Backends, StoreError> {
    let (client, conn) = connect(url).await?;
    let keys = Keys::new(prefix);

    // Both tasks are supervised: without the listener this node would deliver no more events,
    // without the heartbeat its users would drop out of presence.
    let listener = fanout::Listener::subscribe(client.clone(), keys.events(), sink.clone()).await?;
    let restarts =
        fanout::Listener::restarts(listener, client, keys.events(), sink, shutdown.clone());
    supervisor.spawn(tasks, LISTENER_TASK, shutdown.clone(), restarts);
    let presence = Arc::new(presence::RedisPresence::new(conn.clone(), keys.clone()));
    let heartbeat = presence.clone();
    let stop = shutdown.clone();
    supervisor.spawn(tasks, PRESENCE_HEARTBEAT_TASK, shutdown, move || {
        heartbeat.clone().heartbeat(stop.clone())
    });

    Ok(super::Backends {
        users: Arc::new(store::RedisUsers::new(conn.clone(), keys.clone())),
        rooms: Arc::new(store::RedisRooms::new(conn.clone(), keys.clone())),
        messages: Arc::new(history::RedisLog::new(
            conn.clone(),
            keys.clone(),
            history_limit,
        )),
        presence,
        fanout: Arc::new(fanout::RedisFanout::new(conn.clone(), keys.clone())),
        login_limiter: Arc::new(limiter::RedisLoginLimiter::new(conn.clone(), keys.clone())),
        room_quota: Arc::new(quota::RedisRoomQuota::new(conn.clone(), keys)),
        health: Some(Arc::new(RedisHealth { conn })),
    })
}

/// Opens a client and a connection manager with this crate's timeouts and retries. Every part of
/// the server that talks to Redis (backends, dashboard, cache, jobs) connects through here.
///
/// The manager reconnects by itself: a command fails while Redis is away, the next ones work.
///
/// Only start-up connects, so a failure says in Spanish what `REDIS_URL` points to (without its
/// password) and what to do: the binary prints it as it is.
pub(crate) async fn connect(url: &str) -> StoreResult<(redis::Client, ConnectionManager)> {
    let client = redis::Client::open(url).map_err(|error| unreachable(url, &error))?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(RESPONSE_TIMEOUT))
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_max_delay(Duration::from_millis(500))
        .set_number_of_retries(CONNECT_RETRIES);
    let conn = client
        .get_connection_manager_with_config(config)
        .await
        .map_err(|error| unreachable(url, &error))?;
    Ok((client, conn))
}

/// Why Redis could not be reached at start-up, and what to do about it.
fn unreachable(url: &str, error: &RedisError) -> StoreError {
    let why = if error.is_connection_refusal() {
        "rechazó la conexión (¿está redis-server en marcha en esa dirección y puerto?)".to_owned()
    } else if error.is_timeout() {
        "no respondió a tiempo (¿es la dirección correcta? ¿lo bloquea un cortafuegos?)".to_owned()
    } else if error.kind() == ErrorKind::AuthenticationFailed {
        "rechazó el usuario o la contraseña de la URL".to_owned()
    } else if error.kind() == ErrorKind::InvalidClientConfig {
        "la URL no es válida: escribe redis://host:puerto".to_owned()
    } else {
        format!("falló al conectar ({error})")
    };
    StoreError::Unavailable(format!(
        "no se pudo conectar con Redis en {} (REDIS_URL): {why}. Arranca Redis \
         (redis-server --port 6379), corrige REDIS_URL o quítala para guardarlo todo en memoria \
         (un solo nodo)",
        crate::config::redacted_redis_url(url)
    ))
}

/// Builds every key name in one place, so the layout above is easy to check and to change.
#[derive(Debug, Clone)]
struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    fn user(&self, username: &str) -> String {
        format!("{}:user:{username}", self.prefix)
    }

    /// `email_key` is already lowercased ([`crate::domain::Email::key`]).
    fn email(&self, email_key: &str) -> String {
        format!("{}:email:{email_key}", self.prefix)
    }

    fn rooms(&self) -> String {
        format!("{}:rooms", self.prefix)
    }

    fn members(&self, room: &str) -> String {
        format!("{}:members:{room}", self.prefix)
    }

    fn seq(&self, room: &str) -> String {
        format!("{}:seq:{room}", self.prefix)
    }

    fn history(&self, room: &str) -> String {
        format!("{}:history:{room}", self.prefix)
    }

    fn epoch(&self, room: &str) -> String {
        format!("{}:epoch:{room}", self.prefix)
    }

    fn client_id(&self, room: &str, user: &str, client_id: &str) -> String {
        format!("{}:cid:{room}:{user}:{client_id}", self.prefix)
    }

    fn online(&self, room: &str) -> String {
        format!("{}:online:{room}", self.prefix)
    }

    fn conns(&self, room: &str, user: &str) -> String {
        format!("{}:conns:{room}:{user}", self.prefix)
    }

    fn sessions(&self, user: &str) -> String {
        format!("{}:sessions:{user}", self.prefix)
    }

    fn login(&self, username: &str) -> String {
        format!("{}:login:{username}", self.prefix)
    }

    fn room_quota(&self, user: &str) -> String {
        format!("{}:room_quota:{user}", self.prefix)
    }

    fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }
}

/// Maps a Redis failure to the backend's error: a reply of the wrong shape means that Redis holds
/// something we never write (corrupt data); anything else (refused, timed out, dropped) means
/// that Redis is unavailable right now.
pub(crate) fn store_error(err: RedisError) -> StoreError {
    match err.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => StoreError::Corrupt(err.to_string()),
        _ => StoreError::Unavailable(err.to_string()),
    }
}

/// Parses JSON read from Redis; bad JSON is corrupt data, never a panic.
fn from_json<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> StoreResult<T> {
    serde_json::from_str(json).map_err(|err| StoreError::Corrupt(format!("{what}: {err}")))
}

/// Serializes a record before storing it. Our records are plain structs, so this cannot fail in
/// practice; if it ever did, the record is what is wrong, hence `Corrupt`.
fn to_json<T: serde::Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|err| StoreError::Corrupt(err.to_string()))
}

/// `/ready` asks Redis for a `PING`.
struct RedisHealth {
    conn: ConnectionManager,
}

#[async_trait]
impl HealthCheck for RedisHealth {
    fn name(&self) -> &'static str {
        "redis"
    }

    async fn check(&self) -> StoreResult<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
            .map_err(store_error)
    }
}
