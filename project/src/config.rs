//! Configuration from flags and environment variables (every flag has an env var twin).
//!
//! `chat --help` lists them all; the README has the same table. The fields' doc comments are in
//! Spanish because clap prints them as that help, which learners read.
//!
//! [`Config::from_args`] is what the binary uses: it reads flags and environment, and then
//! [`Config::check`] refuses every value that would be accepted but mean nothing (an origin that
//! is not one, zero attempts, a timeout of zero seconds…), with one Spanish sentence that names
//! the variable and says what to write instead. A wrong setting stops the start-up; it is never
//! silently "corrected".

use std::fmt::Display;
use std::net::SocketAddr;
use std::time::Duration;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};

use crate::domain::{Email, Password, Username};

mod jobs;

pub use jobs::JobsConfig;

/// How many messages each room keeps unless configured (`CHAT_HISTORY_LIMIT`).
pub const DEFAULT_HISTORY_LIMIT: usize = 10_000;

/// The longest a setting in seconds may be (a year): beyond it a deadline computed from "now"
/// could overflow, and no timeout of the chat needs more.
pub const MAX_SECS: u64 = 365 * 24 * 3600;

/// The longest TTL the contract allows.
pub const MAX_TTL: Duration = Duration::from_secs(5);
/// TTL of `GET /rooms` by default (`CHAT_CACHE_ROOMS_TTL_MS`).
pub const ROOMS_TTL: Duration = Duration::from_secs(5);
/// TTL of `GET /admin/stats` by default (`CHAT_CACHE_STATS_TTL_MS`): shorter, since its counts
/// move every second.
pub const STATS_TTL: Duration = Duration::from_secs(2);

/// The cache's settings (flags and environment variables, flattened into [`Config`]), read by
/// the cache (`cache/`). Their doc comments are Spanish: they are `chat --help`'s text.
#[derive(Debug, Clone, clap::Args)]
pub struct CacheConfig {
    /// Vida en caché de una respuesta de `GET /rooms`, en ms (de 1 a 5000, el límite del
    /// contrato); crear una sala, invitar o quitar a alguien la invalida antes.
    #[arg(
        long = "cache-rooms-ttl-ms",
        env = "CHAT_CACHE_ROOMS_TTL_MS",
        default_value_t = ROOMS_TTL.as_millis() as u64
    )]
    pub rooms_ttl_ms: u64,

    /// Vida en caché de una respuesta de `GET /admin/stats`, en ms (de 1 a 5000).
    #[arg(
        long = "cache-stats-ttl-ms",
        env = "CHAT_CACHE_STATS_TTL_MS",
        default_value_t = STATS_TTL.as_millis() as u64
    )]
    pub stats_ttl_ms: u64,
}

impl CacheConfig {
    /// How long a `GET /rooms` answer stays cached.
    pub fn rooms_ttl(&self) -> Duration {
        Duration::from_millis(self.rooms_ttl_ms)
    }

    /// How long a `GET /admin/stats` answer stays cached.
    pub fn stats_ttl(&self) -> Duration {
        Duration::from_millis(self.stats_ttl_ms)
    }
}

/// The help page: clap's layout with Spanish headings.
const HELP_TEMPLATE: &str = "\
{before-help}{about-with-newline}
Uso: {usage}

{all-args}{after-help}";

/// Settings of one server process.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "chat",
    version,
    about = "Servidor de chat en tiempo real (proyecto final de la semana 10)",
    long_about = "Servidor de chat en tiempo real (proyecto final de la semana 10).\n\n\
        Cada opción tiene una variable de entorno gemela (entre corchetes): \
        `CHAT_ADDR=127.0.0.1:8080 chat` es lo mismo que `chat --addr 127.0.0.1:8080`. \
        Un valor sin sentido (un origen que no es un origen, 0 intentos…) detiene el arranque \
        con un mensaje que dice qué poner.",
    help_template = HELP_TEMPLATE,
    override_usage = "chat [OPCIONES]",
    next_help_heading = "Opciones",
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct Config {
    /// Dirección y puerto donde escucha el chat, como 127.0.0.1:8000 (0.0.0.0: todas las
    /// interfaces, para que entren otras máquinas).
    #[arg(long, env = "CHAT_ADDR", default_value = "0.0.0.0:8000")]
    pub addr: SocketAddr,

    /// URL de Redis, redis://host:puerto; sin ella todo vive en este proceso (un solo nodo).
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefijo de cada clave y canal de Redis: los nodos de un mismo clúster lo comparten.
    #[arg(long, env = "CHAT_REDIS_PREFIX", default_value = "chat")]
    pub redis_prefix: String,

    /// Con Redis: cada cuánto (ms, como mínimo 100) comprueba cada nodo que Redis conserva su
    /// inicialización; si volvió vacío, la rehace y los clientes se resincronizan en unas dos
    /// veces este tiempo.
    #[arg(long, env = "CHAT_BOOTSTRAP_CHECK_MS", default_value_t = 2_000)]
    pub bootstrap_check_ms: u64,

    /// Secreto HS256 de los tokens JWT, el mismo en todos los nodos; sin él se genera uno al
    /// arrancar (los tokens mueren con el proceso y los nodos no aceptan los de los demás).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Vida de un token de acceso, en segundos.
    #[arg(long, env = "CHAT_TOKEN_TTL_SECS", default_value_t = 3600)]
    pub token_ttl_secs: u64,

    /// Orígenes exactos que pueden abrir /ws, separados por comas (scheme://host[:puerto]);
    /// sin ella se permiten http://localhost:*, http://127.0.0.1:* y el propio Host de la
    /// petición.
    #[arg(long, env = "CHAT_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,

    /// Usuario de la cuenta de administración que se crea al arrancar.
    #[arg(long, env = "CHAT_ADMIN_USERNAME", default_value = "admin")]
    pub admin_username: String,

    /// Contraseña de la cuenta de administración (8 caracteres o más); sin ella se genera una
    /// aleatoria y se imprime una vez.
    #[arg(long, env = "CHAT_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// E-mail de la cuenta de administración.
    #[arg(long, env = "CHAT_ADMIN_EMAIL", default_value = "admin@chat.local")]
    pub admin_email: String,

    /// Segundos entre los pings WebSocket del servidor.
    #[arg(long, env = "CHAT_PING_INTERVAL_SECS", default_value_t = 30)]
    pub ping_interval_secs: u64,

    /// Segundos de silencio tras los que se corta una conexión WebSocket (más que
    /// CHAT_PING_INTERVAL_SECS, para que el pong tenga tiempo de llegar).
    #[arg(long, env = "CHAT_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub idle_timeout_secs: u64,

    /// Segundos que el apagado espera a que se cierren las conexiones y terminen los trabajos
    /// en marcha (0: no espera).
    #[arg(long, env = "CHAT_SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// WebSockets abiertos a la vez por usuario, sumando todos los nodos; uno más se rechaza
    /// con 429 antes del upgrade.
    #[arg(long, env = "CHAT_MAX_CONNECTIONS_PER_USER", default_value_t = 100)]
    pub max_connections_per_user: usize,

    /// Segundos para recibir la cabecera completa de una petición, desde que el servidor
    /// empieza a esperarla; los bytes que llegan no reinician la cuenta (contra slowloris).
    #[arg(long, env = "CHAT_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// Descriptores de fichero reservados para lo que no son clientes (Redis, ficheros,
    /// peticiones cortas como /health): cuando los sockets llegarían a ellos, los WebSocket
    /// nuevos reciben 503.
    #[arg(long, env = "CHAT_FD_RESERVE", default_value_t = 64)]
    pub fd_reserve: usize,

    /// Con Redis: segundos que vive la plaza de un WebSocket en la cuenta por usuario si su
    /// nodo deja de renovarla (lo hace cada tercio de este tiempo).
    #[arg(long, env = "CHAT_CONNECTION_LEASE_SECS", default_value_t = 30)]
    pub connection_lease_secs: u64,

    /// Segundos entre los comentarios `: keep-alive` del flujo SSE del panel (con su propio
    /// temporizador, para que ningún proxy vea la conexión inactiva).
    #[arg(long, env = "CHAT_SSE_KEEPALIVE_SECS", default_value_t = 15)]
    pub sse_keepalive_secs: u64,

    /// Lo más que un registro o un login espera un hueco para calcular el hash de la
    /// contraseña, en ms; después recibe 503 con Retry-After (0: no espera).
    #[arg(long, env = "CHAT_HASH_WAIT_MS", default_value_t = 2000)]
    pub hash_wait_ms: u64,

    /// Salas que un usuario puede crear en cualquier hora deslizante (los admins no tienen
    /// límite); una más es 429 con Retry-After. 0: sin límite.
    #[arg(long, env = "CHAT_ROOMS_PER_HOUR", default_value_t = 30)]
    pub rooms_per_hour: u64,

    /// Mensajes que guarda cada sala (1 o más): al añadir uno más se borra el más antiguo.
    #[arg(long, env = "CHAT_HISTORY_LIMIT", default_value_t = DEFAULT_HISTORY_LIMIT)]
    pub history_limit: usize,

    /// Background jobs: mention e-mails (SMTP or outbox), retries, the periodic sweep. They live
    /// beside the code that uses them, in [`JobsConfig`] (a leaf of `jobs` that imports nothing).
    #[command(flatten)]
    pub jobs: JobsConfig,

    /// The TTLs of the cache of `GET /rooms` and `GET /admin/stats`: [`CacheConfig`].
    #[command(flatten)]
    pub cache: CacheConfig,

    /// Muestra esta ayuda (-h la resume).
    #[arg(short = 'h', long, action = ArgAction::Help, help_heading = "Ayuda")]
    help: Option<bool>,

    /// Muestra la versión.
    #[arg(short = 'V', long, action = ArgAction::Version, help_heading = "Ayuda")]
    version: Option<bool>,
}

/// A setting that the chat refuses to start with, and why, in Spanish.
///
/// The message names the environment variable (and its flag), so that whoever reads it knows
/// what to change, and says what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ConfigError {
    /// The environment variable of the refused setting (`CHAT_ADDR`, `REDIS_URL`…); empty for a
    /// command line that does not parse (an unknown flag).
    pub setting: &'static str,
    message: String,
}

impl ConfigError {
    /// "`SETTING (--flag)` = «value»: why; what to do." `value` is `None` for secrets.
    fn new(setting: &'static str, value: Option<&dyn Display>, why: impl Display) -> Self {
        let name = match flag_of(setting) {
            Some(flag) => format!("{setting} (--{flag})"),
            None => setting.to_owned(),
        };
        let message = match value {
            Some(value) => format!("{name} = «{value}»: {why}"),
            None => format!("{name}: {why}"),
        };
        Self { setting, message }
    }
}

/// The long flag whose environment twin is `setting`.
fn flag_of(setting: &str) -> Option<String> {
    Config::command()
        .get_arguments()
        .find(|arg| arg.get_env().is_some_and(|env| env == setting))
        .and_then(|arg| arg.get_long().map(str::to_owned))
}

impl Config {
    /// The defaults, ignoring flags but not environment variables (and not checked: tests and
    /// lessons adjust the result before building an app).
    pub fn from_env() -> Self {
        Self::parse_from(["chat"])
    }

    // ANCHOR: from_args
    /// What the binary runs with: flags and environment, then [`Config::check`]. `--help` and
    /// `--version` print and exit, as clap does; anything else wrong is a [`ConfigError`].
    pub fn from_args() -> Result<Self, ConfigError> {
        let matches = Self::command()
            .try_get_matches()
            .map_err(|error| match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    error.exit()
                }
                _ => unparsable(&error),
            })?;
        let config = Self::from_arg_matches(&matches).map_err(|error| unparsable(&error))?;
        config.check()?;
        Ok(config)
    }
    // ANCHOR_END: from_args

    /// Refuses the first value that would be accepted but mean nothing.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.check_network()?;
        self.check_accounts()?;
        self.check_timing()?;
        self.check_jobs()?;
        self.check_cache()
    }

    fn check_network(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.redis_url {
            check_redis_url(url)?;
        }
        if self.redis_prefix.trim().is_empty() {
            return Err(ConfigError::new(
                "CHAT_REDIS_PREFIX",
                Some(&self.redis_prefix),
                "el prefijo no puede estar vacío; usa el valor por defecto, chat, u otro nombre \
                 que compartan todos los nodos",
            ));
        }
        if let Some(list) = &self.allowed_origins {
            check_origins(list)?;
        }
        at_least(
            "CHAT_MAX_CONNECTIONS_PER_USER",
            self.max_connections_per_user as u64,
            1,
            "con 0 nadie podría abrir un WebSocket",
        )
    }

    fn check_accounts(&self) -> Result<(), ConfigError> {
        if let Some(secret) = &self.jwt_secret
            && secret.is_empty()
        {
            return Err(ConfigError::new(
                "JWT_SECRET",
                None,
                "está definido pero vacío; pon un secreto largo (openssl rand -hex 32) o quita \
                 la variable para que se genere uno al arrancar",
            ));
        }
        Username::parse(&self.admin_username).map_err(|invalid| {
            ConfigError::new("CHAT_ADMIN_USERNAME", Some(&self.admin_username), invalid)
        })?;
        if let Some(password) = &self.admin_password {
            Password::parse(password).map_err(|invalid| {
                ConfigError::new(
                    "CHAT_ADMIN_PASSWORD",
                    None,
                    format!(
                        "{invalid}; pon una más larga o quita la variable para que se genere una"
                    ),
                )
            })?;
        }
        Email::parse(&self.admin_email).map_err(|invalid| {
            ConfigError::new("CHAT_ADMIN_EMAIL", Some(&self.admin_email), invalid)
        })?;
        Ok(())
    }

    fn check_timing(&self) -> Result<(), ConfigError> {
        let zero = "con 0 no tiene sentido";
        seconds(
            "CHAT_TOKEN_TTL_SECS",
            self.token_ttl_secs,
            1,
            "un token de 0 s caduca al nacer",
        )?;
        seconds("CHAT_PING_INTERVAL_SECS", self.ping_interval_secs, 1, zero)?;
        seconds("CHAT_IDLE_TIMEOUT_SECS", self.idle_timeout_secs, 1, zero)?;
        if self.idle_timeout_secs <= self.ping_interval_secs {
            return Err(ConfigError::new(
                "CHAT_IDLE_TIMEOUT_SECS",
                Some(&self.idle_timeout_secs),
                format!(
                    "debe ser mayor que CHAT_PING_INTERVAL_SECS ({}): si no, una conexión sana \
                     se corta antes de que el servidor le envíe su ping; sube este valor o baja \
                     el intervalo",
                    self.ping_interval_secs
                ),
            ));
        }
        seconds(
            "CHAT_SHUTDOWN_GRACE_SECS",
            self.shutdown_grace_secs,
            0,
            zero,
        )?;
        seconds(
            "CHAT_HEADER_TIMEOUT_SECS",
            self.header_timeout_secs,
            1,
            "con 0 ninguna petición llegaría a tiempo",
        )?;
        seconds(
            "CHAT_CONNECTION_LEASE_SECS",
            self.connection_lease_secs,
            1,
            zero,
        )?;
        seconds("CHAT_SSE_KEEPALIVE_SECS", self.sse_keepalive_secs, 1, zero)?;
        at_least(
            "CHAT_BOOTSTRAP_CHECK_MS",
            self.bootstrap_check_ms,
            100,
            "comprobar Redis más a menudo solo lo carga",
        )?;
        at_most(
            "CHAT_BOOTSTRAP_CHECK_MS",
            self.bootstrap_check_ms,
            MAX_SECS * 1000,
        )?;
        at_most("CHAT_HASH_WAIT_MS", self.hash_wait_ms, MAX_SECS * 1000)?;
        at_least(
            "CHAT_HISTORY_LIMIT",
            self.history_limit as u64,
            1,
            "una sala que no guarda ningún mensaje no tiene historial que recuperar",
        )
    }

    fn check_jobs(&self) -> Result<(), ConfigError> {
        let jobs = &self.jobs;
        if let Some(url) = &jobs.smtp_url {
            check_smtp_url(url)?;
        }
        if jobs.mail_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(ConfigError::new(
                "CHAT_MAIL_FROM",
                Some(&jobs.mail_from),
                "no es un remitente válido; escribe una dirección, con o sin nombre, como \
                 Chat <no-responder@chat.local>",
            ));
        }
        seconds(
            "CHAT_MENTION_EMAIL_WINDOW_SECS",
            jobs.mention_email_window_secs,
            0,
            "",
        )?;
        at_least(
            "CHAT_JOB_MAX_ATTEMPTS",
            u64::from(jobs.max_attempts),
            1,
            "un trabajo necesita al menos un intento (1 = sin reintentos)",
        )?;
        at_least(
            "CHAT_JOB_BACKOFF_MS",
            jobs.backoff_ms,
            1,
            "reintentar sin esperar martillea al servidor de correo que acaba de fallar",
        )?;
        at_most("CHAT_JOB_BACKOFF_MS", jobs.backoff_ms, MAX_SECS * 1000)?;
        seconds(
            "CHAT_JOB_TIMEOUT_SECS",
            jobs.attempt_timeout_secs,
            1,
            "con 0 todos los intentos fallarían por tiempo",
        )?;
        if jobs.concurrency == 0 && self.redis_url.is_none() {
            return Err(ConfigError::new(
                "CHAT_JOB_CONCURRENCY",
                Some(&0),
                "sin REDIS_URL la cola está en este proceso y nadie más ejecutaría sus trabajos; \
                 usa 1 o más, o define REDIS_URL para que otro nodo los ejecute",
            ));
        }
        seconds(
            "CHAT_JOB_SWEEP_INTERVAL_SECS",
            jobs.sweep_interval_secs,
            1,
            "con 0 el barrido no pararía nunca",
        )?;
        Ok(())
    }

    fn check_cache(&self) -> Result<(), ConfigError> {
        let max = MAX_TTL.as_millis() as u64;
        for (setting, ttl) in [
            ("CHAT_CACHE_ROOMS_TTL_MS", self.cache.rooms_ttl_ms),
            ("CHAT_CACHE_STATS_TTL_MS", self.cache.stats_ttl_ms),
        ] {
            if !(1..=max).contains(&ttl) {
                return Err(ConfigError::new(
                    setting,
                    Some(&ttl),
                    format!(
                        "debe estar entre 1 y {max} ms (el contrato no deja servir respuestas \
                         de más de 5 s)"
                    ),
                ));
            }
        }
        Ok(())
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

/// `value` must be at least `min`; `why` says what a smaller one would do.
fn at_least(setting: &'static str, value: u64, min: u64, why: &str) -> Result<(), ConfigError> {
    if value >= min {
        return Ok(());
    }
    Err(ConfigError::new(
        setting,
        Some(&value),
        format!("{why}; usa {min} o más"),
    ))
}

/// `value` must be at most `max`.
fn at_most(setting: &'static str, value: u64, max: u64) -> Result<(), ConfigError> {
    if value <= max {
        return Ok(());
    }
    Err(ConfigError::new(
        setting,
        Some(&value),
        format!("es demasiado grande; usa como mucho {max} (un año)"),
    ))
}

/// A setting in seconds: at least `min`, at most [`MAX_SECS`].
fn seconds(setting: &'static str, value: u64, min: u64, why: &str) -> Result<(), ConfigError> {
    at_least(setting, value, min, why)?;
    at_most(setting, value, MAX_SECS)
}

/// Translates clap's refusal (English) into one Spanish sentence that names the setting.
fn unparsable(error: &clap::Error) -> ConfigError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};

    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        Some(ContextValue::Strings(texts)) => texts.first().cloned(),
        _ => None,
    };
    let argument = context(ContextKind::InvalidArg).unwrap_or_default();
    // "--addr <ADDR>" → the argument whose long flag is "addr".
    let long = argument
        .trim_start_matches('-')
        .split([' ', '='])
        .next()
        .unwrap_or_default()
        .to_owned();
    let setting = Config::command()
        .get_arguments()
        .find(|arg| arg.get_long() == Some(long.as_str()))
        .and_then(|arg| arg.get_env())
        .and_then(|env| env.to_str())
        .and_then(|env| KNOWN_SETTINGS.iter().copied().find(|known| *known == env));
    match (error.kind(), setting) {
        (ErrorKind::InvalidValue | ErrorKind::ValueValidation, Some(setting)) => {
            let value = context(ContextKind::InvalidValue).unwrap_or_default();
            let expected = match setting {
                "CHAT_ADDR" => {
                    "se espera una dirección IP y un puerto, como 127.0.0.1:8000 o 0.0.0.0:8000"
                }
                "CHAT_OUTBOX" => "se espera la ruta de una carpeta, como ./outbox",
                _ => "se espera un número entero sin signo, como 30",
            };
            ConfigError::new(setting, Some(&value), expected)
        }
        (ErrorKind::UnknownArgument, _) => ConfigError {
            setting: "",
            message: format!("opción desconocida «{argument}»; mira las que hay con chat --help"),
        },
        _ => ConfigError {
            setting: "",
            message: format!(
                "la línea de órdenes no es válida ({}); mira chat --help",
                error.kind()
            ),
        },
    }
}

/// Every environment variable of [`Config`], so that [`ConfigError::setting`] can be `'static`.
const KNOWN_SETTINGS: &[&str] = &[
    "CHAT_ADDR",
    "REDIS_URL",
    "CHAT_REDIS_PREFIX",
    "CHAT_BOOTSTRAP_CHECK_MS",
    "JWT_SECRET",
    "CHAT_TOKEN_TTL_SECS",
    "CHAT_ALLOWED_ORIGINS",
    "CHAT_ADMIN_USERNAME",
    "CHAT_ADMIN_PASSWORD",
    "CHAT_ADMIN_EMAIL",
    "CHAT_PING_INTERVAL_SECS",
    "CHAT_IDLE_TIMEOUT_SECS",
    "CHAT_SHUTDOWN_GRACE_SECS",
    "CHAT_MAX_CONNECTIONS_PER_USER",
    "CHAT_HEADER_TIMEOUT_SECS",
    "CHAT_FD_RESERVE",
    "CHAT_CONNECTION_LEASE_SECS",
    "CHAT_SSE_KEEPALIVE_SECS",
    "CHAT_HASH_WAIT_MS",
    "CHAT_ROOMS_PER_HOUR",
    "CHAT_HISTORY_LIMIT",
    "SMTP_URL",
    "CHAT_OUTBOX",
    "CHAT_MAIL_FROM",
    "CHAT_MENTION_EMAIL_WINDOW_SECS",
    "CHAT_MENTION_EMAILS_PER_HOUR",
    "CHAT_JOB_MAX_ATTEMPTS",
    "CHAT_JOB_BACKOFF_MS",
    "CHAT_JOB_TIMEOUT_SECS",
    "CHAT_JOB_CONCURRENCY",
    "CHAT_JOB_SWEEP_INTERVAL_SECS",
    "CHAT_JOB_RETENTION_SECS",
    "CHAT_CACHE_ROOMS_TTL_MS",
    "CHAT_CACHE_STATS_TTL_MS",
];

/// `REDIS_URL` must be a URL the Redis client can use (`redis://host:port`, or
/// `redis+unix:///path`).
fn check_redis_url(url: &str) -> Result<(), ConfigError> {
    if url.trim().is_empty() {
        return Err(ConfigError::new(
            "REDIS_URL",
            Some(&url),
            "está definida pero vacía; quítala (unset REDIS_URL) para guardarlo todo en memoria, \
             o pon redis://host:puerto",
        ));
    }
    match redis::Client::open(url) {
        Ok(_) => Ok(()),
        Err(_) => Err(ConfigError::new(
            "REDIS_URL",
            Some(&redacted_redis_url(url)),
            "no es una URL de Redis; escribe redis://host:puerto, como redis://127.0.0.1:6379",
        )),
    }
}

/// The URL with its password (if any) replaced by `***`, fit for a log or an error message.
pub fn redacted_redis_url(url: &str) -> String {
    match redis::parse_redis_url(url) {
        Some(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        // Not a URL: whatever follows a '@' may be a password, so only the part after it.
        None => match url.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => url.to_owned(),
        },
    }
}

/// `SMTP_URL` is `smtp://host[:port]` (the mailer speaks plain SMTP, see `jobs/email.rs`).
fn check_smtp_url(url: &str) -> Result<(), ConfigError> {
    let refuse = || {
        ConfigError::new(
            "SMTP_URL",
            Some(&url),
            "escribe smtp://host:puerto, como smtp://127.0.0.1:1025 (sin TLS), o quita la \
             variable para escribir los e-mails como ficheros .eml",
        )
    };
    let rest = url.strip_prefix("smtp://").ok_or_else(refuse)?;
    let rest = rest.trim_end_matches('/');
    let host = match rest.rsplit_once(':') {
        Some((host, port)) => {
            port.parse::<u16>()
                .ok()
                .filter(|port| *port > 0)
                .ok_or_else(refuse)?;
            host
        }
        None => rest,
    };
    if host.is_empty() || !host.chars().all(is_host_char) {
        return Err(refuse());
    }
    Ok(())
}

/// Each comma-separated entry must be an origin as browsers send it: `scheme://host[:port]`,
/// with no path (a trailing `/` is forgiven), user or query. An empty list would let no browser
/// in, which nobody means: they mean the default, so it is refused too.
fn check_origins(list: &str) -> Result<(), ConfigError> {
    let entries: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .collect();
    if entries.is_empty() {
        return Err(ConfigError::new(
            "CHAT_ALLOWED_ORIGINS",
            Some(&list),
            "no contiene ningún origen, así que ningún navegador podría conectar; pon orígenes \
             como https://chat.example.com,http://localhost:8000 o quita la variable para usar \
             los de por defecto",
        ));
    }
    for origin in entries {
        if !is_origin(origin.trim_end_matches('/')) {
            return Err(ConfigError::new(
                "CHAT_ALLOWED_ORIGINS",
                Some(&origin),
                "no es un origen: cada uno es scheme://host[:puerto], sin ruta, como \
                 https://chat.example.com o http://192.168.1.20:8000, separados por comas",
            ));
        }
    }
    Ok(())
}

/// `scheme://host[:port]`: an RFC 3986 scheme, a DNS name, an IPv4 address or a bracketed IPv6
/// one, and an optional port from 1 to 65535.
fn is_origin(origin: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else {
        return false;
    };
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    let (host_ok, port) = match authority.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) => (v6.parse::<std::net::Ipv6Addr>().is_ok(), port),
            None => return false,
        },
        None => {
            let (host, port) = authority.split_at(authority.find(':').unwrap_or(authority.len()));
            let name_ok = !host.is_empty()
                && host.chars().all(is_host_char)
                && !host.starts_with(['.', '-'])
                && !host.ends_with(['.', '-']);
            (name_ok, port)
        }
    };
    let port_ok = port.is_empty()
        || port.strip_prefix(':').is_some_and(|digits| {
            digits.bytes().all(|b| b.is_ascii_digit())
                && digits.parse::<u16>().is_ok_and(|port| port > 0)
        });
    scheme_ok && host_ok && port_ok
}

/// Letters, digits, `-` and `.`: what a DNS name or an IPv4 address is made of.
fn is_host_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '.'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_scheme_host_and_an_optional_port() {
        for good in [
            "https://chat.example.com",
            "http://localhost:8000",
            "http://192.168.1.20:8000",
            "http://[::1]:8000",
            "http://[::1]",
            "chrome-extension://abcdef",
        ] {
            assert!(is_origin(good), "{good} is an origin");
        }
        for bad in [
            "not an origin",
            "localhost:8000",
            "http://",
            "http://:8000",
            "http://localhost:",
            "http://localhost:0",
            "http://localhost:99999",
            "http://localhost/chat",
            "http://ana@localhost",
            "http://localhost?x=1",
            "http://[zz]:80",
            "http://[::1]8000",
            "null",
            "*",
        ] {
            assert!(!is_origin(bad), "{bad} is not an origin");
        }
        assert!(check_origins("https://a.example, http://localhost:8000/").is_ok());
        assert!(check_origins(" , ").is_err());
    }

    #[test]
    fn every_refusal_names_its_variable_and_its_flag() {
        let mut config = Config::from_env();
        config.jobs.max_attempts = 0;
        let error = config.check().unwrap_err();
        assert_eq!(error.setting, "CHAT_JOB_MAX_ATTEMPTS");
        assert!(
            error
                .to_string()
                .starts_with("CHAT_JOB_MAX_ATTEMPTS (--job-max-attempts) = «0»:"),
            "{error}"
        );
    }

    #[test]
    fn every_setting_is_known() {
        let command = Config::command();
        let envs: Vec<_> = command
            .get_arguments()
            .filter_map(|arg| arg.get_env())
            .collect();
        for env in &envs {
            assert!(
                KNOWN_SETTINGS.iter().any(|known| env == known),
                "{env:?} is missing from KNOWN_SETTINGS"
            );
        }
        assert_eq!(envs.len(), KNOWN_SETTINGS.len());
    }

    #[test]
    fn redis_passwords_never_reach_a_message() {
        assert_eq!(
            redacted_redis_url("redis://:hunter22@127.0.0.1:6379"),
            "redis://:***@127.0.0.1:6379"
        );
        assert_eq!(
            redacted_redis_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert!(!redacted_redis_url("nonsense:hunter22@x").contains("hunter22"));
    }
}
