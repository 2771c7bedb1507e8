//! HTTP errors: one enum, one JSON shape (`{"error":{"code","message"}}`), one place that maps
//! them to status codes. Handlers return `Result<_, ApiError>` and use `?`.
//!
//! And [`StartupError`], why the binary could not start: one Spanish line for a person, never a
//! backtrace.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::backend::StoreError;
use crate::config::ConfigError;
use crate::domain::Invalid;

/// Every error a REST route (or a refused WebSocket upgrade) can answer.
/// `Clone`, so that the requests that waited for one cached computation can share its error.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("demasiados intentos; vuelve a intentarlo en {} s", retry_after_secs(*.0))]
    RateLimited(Duration),
    #[error("el cuerpo de la petición supera los 64 KiB")]
    PayloadTooLarge,
    #[error("{0}")]
    Unavailable(String),
    /// 503 `unavailable` with `Retry-After`: the server sheds this request (its hashing pool
    /// is full) and says when trying again makes sense.
    #[error("el servidor está ocupado; vuelve a intentarlo en {} s", retry_after_secs(*.0))]
    Busy(Duration),
    #[error("método no permitido")]
    MethodNotAllowed,
}

/// `Retry-After` in whole seconds, rounded up, at least 1 (the login limit's waits are at most
/// 60 s, the room-creation limit's at most an hour).
fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().clamp(1.0, 3600.0) as u64
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::InvalidInput(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            Self::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            Self::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            Self::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            Self::Unavailable(_) | Self::Busy(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
            }
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }

    /// The usual 401 for a missing, tampered or expired token.
    pub fn bad_token() -> Self {
        Self::Unauthorized("token ausente, inválido o caducado".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if let Self::Busy(_) = self {
            // A storm sheds many requests: one line each would flood the log.
            tracing::debug!("petición descartada: el pool de hash está lleno");
        } else if status.is_server_error() {
            tracing::error!(error = %self, "la petición falló");
        }
        let body = json!({ "error": { "code": code, "message": self.to_string() } });
        let mut response = (status, Json(body)).into_response();
        if let Self::RateLimited(wait) | Self::Busy(wait) = self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
        }
        response
    }
}

impl From<Invalid> for ApiError {
    fn from(invalid: Invalid) -> Self {
        Self::InvalidInput(invalid.0)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => Self::Conflict(what),
            other => {
                tracing::error!(error = %other, "el backend falló");
                Self::Unavailable("el servicio no está disponible; inténtalo de nuevo".into())
            }
        }
    }
}

// axum's rejection texts are English and the contract's messages are Spanish, so each kind of
// rejection gets a Spanish message; axum's detail goes to the debug log.

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            return Self::PayloadTooLarge;
        }
        tracing::debug!(detail = %rejection.body_text(), "cuerpo JSON rechazado");
        let message = match rejection {
            JsonRejection::JsonSyntaxError(_) => "el cuerpo no es JSON válido",
            JsonRejection::JsonDataError(_) => {
                "al JSON le falta un campo obligatorio o algún campo tiene un tipo incorrecto"
            }
            JsonRejection::MissingJsonContentType(_) => {
                "el cuerpo debe enviarse con «Content-Type: application/json»"
            }
            _ => "no se pudo leer el cuerpo de la petición",
        };
        Self::InvalidInput(message.into())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        tracing::debug!(detail = %rejection.body_text(), "query string rechazada");
        Self::InvalidInput(
            "parámetros de la URL no válidos: alguno no tiene el tipo esperado".into(),
        )
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        tracing::debug!(detail = %rejection.body_text(), "ruta rechazada");
        Self::InvalidInput("ruta no válida: un segmento no tiene el formato esperado".into())
    }
}

/// Extractors whose rejections answer with [`ApiError`]'s JSON instead of axum's plain text.
pub mod extract {
    use axum::extract::FromRequest;
    use axum::extract::FromRequestParts;

    use super::ApiError;

    /// `axum::Json`, but malformed input is a 422 `invalid_input` (or 413) in the contract's shape.
    #[derive(Debug, FromRequest)]
    #[from_request(via(axum::Json), rejection(ApiError))]
    pub struct Json<T>(pub T);

    /// `axum::extract::Query`, with a 422 `invalid_input` for a parameter of the wrong type.
    #[derive(Debug, FromRequestParts)]
    #[from_request(via(axum::extract::Query), rejection(ApiError))]
    pub struct Query<T>(pub T);

    /// `axum::extract::Path`, with a JSON 422 when a segment does not parse.
    #[derive(Debug, FromRequestParts)]
    #[from_request(via(axum::extract::Path), rejection(ApiError))]
    pub struct Path<T>(pub T);
}

// ANCHOR: startup_error
/// Why the `chat` binary did not start (or stopped serving). Each one prints as a single Spanish
/// line that names the setting to change and says what to do; the binary prints it and exits
/// with [`StartupError::exit_code`].
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A flag or environment variable that means nothing.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// The listening socket could not be opened (port in use, no permission…).
    #[error("{}", listen_failure(*.addr, .source))]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    /// Connecting the backends or the bootstrap failed.
    #[error("{}", build_failure(.0))]
    Build(anyhow::Error),
    /// The server failed while serving.
    #[error("el servidor se detuvo por un error: {0:#}")]
    Serve(anyhow::Error),
}
// ANCHOR_END: startup_error

impl StartupError {
    /// 2 for a wrong setting (what clap uses for bad arguments), 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            _ => 1,
        }
    }
}

/// "Could not listen on ADDR (CHAT_ADDR)", why, and what to do.
fn listen_failure(addr: std::net::SocketAddr, error: &std::io::Error) -> String {
    use std::io::ErrorKind;

    let port = addr.port();
    let what_to_do = match error.kind() {
        ErrorKind::AddrInUse => format!(
            "el puerto {port} ya está en uso (¿un chat o una lección abiertos en otra \
             terminal? míralo con «ss -ltnp | grep :{port}»); ciérralo o elige otro puerto, \
             como CHAT_ADDR=127.0.0.1:8080"
        ),
        ErrorKind::PermissionDenied => format!(
            "no hay permiso para el puerto {port} (los menores de 1024 piden privilegios); usa \
             otro, como CHAT_ADDR=0.0.0.0:8000"
        ),
        ErrorKind::AddrNotAvailable => format!(
            "la IP {} no es de esta máquina; usa 0.0.0.0 (todas las interfaces) o 127.0.0.1, \
             como CHAT_ADDR=0.0.0.0:{port}",
            addr.ip()
        ),
        _ => format!("{error}; prueba con otra dirección, como CHAT_ADDR=127.0.0.1:8080"),
    };
    format!("no se pudo escuchar en {addr} (CHAT_ADDR): {what_to_do}")
}

/// A failed build names Redis and its URL when Redis was the problem ([`StoreError`]'s text
/// from the connection says so, in Spanish); otherwise the whole chain, on one line.
fn build_failure(error: &anyhow::Error) -> String {
    let unavailable = error.chain().find_map(|cause| match cause.downcast_ref() {
        Some(StoreError::Unavailable(why)) => Some(why.clone()),
        _ => None,
    });
    match unavailable {
        // Already says what REDIS_URL points to and what to do (`backend::redis::connect`).
        Some(why) if why.contains("REDIS_URL") => why,
        Some(why) => format!(
            "Redis dejó de responder durante el arranque ({why}); comprueba que sigue en marcha \
             en REDIS_URL y vuelve a arrancar el chat"
        ),
        None => format!("el chat no pudo arrancar: {error:#}"),
    }
}
