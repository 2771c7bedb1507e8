//! Configuration from flags and environment variables (every flag has an env var twin).
//!
//! `chat --help` lists them all; the README has the same table in Spanish.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// How many messages each room keeps unless configured (`CHAT_HISTORY_LIMIT`).
pub const DEFAULT_HISTORY_LIMIT: usize = 10_000;

/// Settings of one server process.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat",
    version,
    about = "Servidor de chat en tiempo real (semana 10)"
)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CHAT_ADDR", default_value = "0.0.0.0:8000")]
    pub addr: SocketAddr,

    /// Redis URL; when unset everything lives in this process (a single node).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key and channel: nodes of one cluster share it.
    #[arg(long, env = "CHAT_REDIS_PREFIX", default_value = "chat")]
    pub redis_prefix: String,

    /// How often each node checks that Redis still holds its bootstrap (ms): a Redis that came
    /// back empty is bootstrapped again and clients resync within about twice this.
    #[arg(long, env = "CHAT_BOOTSTRAP_CHECK_MS", default_value_t = 2_000)]
    pub bootstrap_check_ms: u64,

    /// HS256 secret for the JWTs; generated at start-up when unset (tokens then die with the
    /// process, and nodes of a cluster would not accept each other's tokens).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Lifetime of an access token, in seconds.
    #[arg(long, env = "CHAT_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub token_ttl_secs: u64,

    /// Comma-separated exact origins allowed to open `/ws`; when unset, `http://localhost:*`,
    /// `http://127.0.0.1:*` and the request's own `Host` are allowed.
    #[arg(long, env = "CHAT_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,

    /// Username of the admin account created at start-up.
    #[arg(long, env = "CHAT_ADMIN_USERNAME", default_value = "admin")]
    pub admin_username: String,

    /// Password of the admin account; when unset a random one is generated and printed once.
    #[arg(long, env = "CHAT_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// E-mail of the admin account.
    #[arg(long, env = "CHAT_ADMIN_EMAIL", default_value = "admin@chat.local")]
    pub admin_email: String,

    /// Seconds between the server's WebSocket pings.
    #[arg(long, env = "CHAT_PING_INTERVAL_SECS", default_value_t = 30)]
    pub ping_interval_secs: u64,

    /// Seconds of silence after which a WebSocket peer is dropped.
    #[arg(long, env = "CHAT_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,

    /// Seconds that shutdown waits for connections to close before giving up on them.
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// Most WebSocket connections one user may have open at once, across every node; one more
    /// is refused with 429 before the upgrade.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_USER", default_value_t = 100)]
    pub max_connections_per_user: usize,

    /// Seconds a client has to send a complete request head (request line and headers), from
    /// when the server starts waiting for it (the connection's start, or the end of the previous
    /// answer on a kept-alive connection); arriving bytes do not restart the clock.
    #[arg(long, env = "CHAT_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// File descriptors kept for everything that is not a client socket (Redis, files, short
    /// requests such as `/health`): once open sockets would use them, new WebSockets get 503.
    #[arg(long, env = "CHAT_FD_RESERVE", default_value_t = 64)]
    pub fd_reserve: usize,

    /// Seconds a WebSocket's slot in the per-user count lives in Redis without its node's
    /// heartbeat (every third of this): the connections of a node that died stop counting
    /// after it.
    #[arg(long, env = "CHAT_CONNECTION_LEASE_SECS", default_value_t = 30)]
    pub connection_lease_secs: u64,

    /// Seconds between the `: keep-alive` comments of a dashboard's SSE stream (sent on their
    /// own timer, whatever else the stream sends, so proxies never see an idle connection).
    #[arg(long, env = "CHAT_SSE_KEEPALIVE_SECS", default_value_t = 15)]
    pub sse_keepalive_secs: u64,

    /// Longest a registration or login waits for a password-hashing slot, in milliseconds;
    /// past that it is answered 503 with `Retry-After` (load shedding: a login storm cannot
    /// queue without bound).
    #[arg(long, env = "CHAT_HASH_WAIT_MS", default_value_t = 2000)]
    pub hash_wait_ms: u64,

    /// Rooms one user may create in any sliding hour (admins are exempt; refused attempts do
    /// not count); one more is 429 with `Retry-After`. 0: no limit.
    #[arg(long, env = "CHAT_ROOMS_PER_HOUR", default_value_t = 30)]
    pub rooms_per_hour: u64,

    /// Messages kept per room: appending one more drops the oldest (ids keep increasing, and a
    /// `since`/`after` older than what is kept starts at the oldest kept). At least 1.
    #[arg(long, env = "CHAT_HISTORY_LIMIT", default_value_t = DEFAULT_HISTORY_LIMIT)]
    pub history_limit: usize,

    /// Background jobs: mention e-mails (SMTP or outbox), retries, the periodic sweep. They live
    /// beside the code that uses them, in [`crate::jobs::JobsConfig`].
    #[command(flatten)]
    pub jobs: crate::jobs::JobsConfig,

    /// The TTLs of the cache of `GET /rooms` and `GET /admin/stats`, in
    /// [`crate::cache::CacheConfig`].
    #[command(flatten)]
    pub cache: crate::cache::CacheConfig,
}

impl Config {
    /// The defaults, ignoring flags but not environment variables.
    pub fn from_env() -> Self {
        Self::parse_from(["chat"])
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_secs.max(1))
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    pub fn token_ttl(&self) -> Duration {
        Duration::from_secs(self.token_ttl_secs.max(1))
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    /// How long a request may wait for a password-hashing slot.
    pub fn hash_wait(&self) -> Duration {
        Duration::from_millis(self.hash_wait_ms)
    }

    /// The dashboard's keep-alive period (at least one second).
    pub fn sse_keepalive(&self) -> Duration {
        Duration::from_secs(self.sse_keepalive_secs.max(1))
    }

    /// The header-read timeout (at least one second).
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs.max(1))
    }

    /// How many messages each room keeps (at least one).
    pub fn history_limit(&self) -> usize {
        self.history_limit.max(1)
    }

    /// How often the bootstrap sentinel is checked (at least every 100 ms).
    pub fn bootstrap_check(&self) -> Duration {
        Duration::from_millis(self.bootstrap_check_ms.max(100))
    }

    /// The lease of a connection slot in Redis (at least one second).
    pub fn connection_lease(&self) -> Duration {
        Duration::from_secs(self.connection_lease_secs.max(1))
    }
}
