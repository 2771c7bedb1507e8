//! `/auth/register`, `/auth/login`, `/auth/me`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRef, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AuthUser;
use super::passwords::{HashError, HashPool};
use super::tokens::Tokens;
use crate::backend::Backends;
use crate::domain::{Email, Password, Role, User, UserRecord, Username};
use crate::error::{ApiError, extract};

/// `/auth/register`, `/auth/login` and `/auth/me`, on any state that holds the handles they use.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Backends: FromRef<S>,
    Arc<HashPool>: FromRef<S>,
    Arc<Tokens>: FromRef<S>,
{
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/me", get(me))
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "Datos para crear una cuenta")]
struct RegisterRequest {
    #[schema(example = "ana_99", pattern = "^[a-z0-9_]{3,32}$")]
    username: String,
    #[schema(example = "contraseña-segura", min_length = 8)]
    password: String,
    #[schema(example = "ana@example.com")]
    email: String,
}

#[utoipa::path(
    post, path = "/auth/register", tag = "cuentas",
    summary = "Crear una cuenta",
    description = "Crea una cuenta con rol `member`. La contraseña se guarda solo como hash Argon2id.",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Cuenta creada", body = User),
        (status = 409, description = "El nombre de usuario o el e-mail ya existen (`conflict`)", body = crate::api_schema::ErrorBody),
        (status = 422, description = "Usuario que no es de 3 a 32 caracteres `[a-z0-9_]`, contraseña de menos de 8 caracteres o e-mail no válido (`invalid_input`)", body = crate::api_schema::ErrorBody),
        (status = 503, description = "No hubo un hueco para calcular el hash en 2 s (`unavailable`)", body = crate::api_schema::ErrorBody,
            headers(("Retry-After" = u64, description = "Segundos tras los que conviene reintentar"))),
    ),
)]
async fn register(
    State(backends): State<Backends>,
    State(passwords): State<Arc<HashPool>>,
    extract::Json(request): extract::Json<RegisterRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let username = Username::parse(&request.username)?;
    let password = Password::parse(&request.password)?;
    let email = Email::parse(&request.email)?;
    let user = create_user(
        &backends,
        &passwords,
        username,
        password,
        email,
        Role::Member,
    )
    .await?;
    tracing::info!(user = %user.username, "usuario registrado");
    Ok((StatusCode::CREATED, Json(user)))
}

/// Hashes the password and stores the account. Used by `register` and the admin bootstrap.
pub async fn create_user(
    backends: &Backends,
    passwords: &HashPool,
    username: Username,
    password: Password,
    email: Email,
    role: Role,
) -> Result<User, ApiError> {
    let password_hash = passwords
        .hash(password.as_str().to_owned())
        .await
        .map_err(hash_error)?;
    let user = User {
        id: uuid::Uuid::new_v4().to_string(),
        username: username.as_str().to_owned(),
        email: email.as_str().to_owned(),
        role,
    };
    let record = UserRecord {
        user: user.clone(),
        password_hash,
    };
    backends.users.create_user(record).await?;
    Ok(user)
}

/// How long a shed request is told to wait before trying again.
const BUSY_RETRY_AFTER: Duration = Duration::from_secs(1);

/// A full hashing pool is a 503 with `Retry-After`; any other hashing failure a plain 503.
fn hash_error(error: HashError) -> ApiError {
    match error {
        HashError::Busy => ApiError::Busy(BUSY_RETRY_AFTER),
        HashError::Failed(_) => ApiError::Unavailable(error.to_string()),
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(description = "Credenciales para iniciar sesión")]
struct LoginRequest {
    #[schema(example = "ana_99")]
    username: String,
    #[schema(example = "contraseña-segura")]
    password: String,
}

/// The answer of a successful login.
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "Token JWT (HS256) para la cabecera `Authorization: Bearer` o el parámetro `?token=` de `/ws`; `expires_in` son los segundos que le quedan de vida"
)]
struct TokenResponse {
    access_token: String,
    #[schema(example = "bearer")]
    token_type: &'static str,
    #[schema(example = 3600)]
    expires_in: u64,
}

#[utoipa::path(
    post, path = "/auth/login", tag = "cuentas",
    summary = "Iniciar sesión",
    description = "Inicia sesión y devuelve un token. Tras 5 fallos en un minuto para un mismo usuario (exista o no), todo intento recibe 429 con `Retry-After` hasta que pasa el minuto; un inicio correcto reinicia la cuenta.",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Sesión iniciada", body = TokenResponse),
        (status = 401, description = "Usuario o contraseña incorrectos (la misma respuesta en ambos casos)", body = crate::api_schema::ErrorBody),
        (status = 422, description = "Cuerpo mal formado (`invalid_input`)", body = crate::api_schema::ErrorBody),
        (status = 429, description = "Demasiados fallos seguidos (`rate_limited`)", body = crate::api_schema::ErrorBody,
            headers(("Retry-After" = u64, description = "Segundos que faltan, de 1 a 60"))),
        (status = 503, description = "No hubo un hueco para comprobar la contraseña en 2 s (`unavailable`); el intento no cuenta como fallo", body = crate::api_schema::ErrorBody,
            headers(("Retry-After" = u64, description = "Segundos tras los que conviene reintentar"))),
    ),
)]
async fn login(
    State(backends): State<Backends>,
    State(passwords): State<Arc<HashPool>>,
    State(tokens): State<Arc<Tokens>>,
    extract::Json(request): extract::Json<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    // The limiter counts any username, known or not, so it cannot be used to probe accounts.
    // Keys are bounded in length so a client cannot make us store huge keys.
    let limiter_key: String = request.username.to_lowercase().chars().take(64).collect();
    // The attempt is counted here, before the password is checked: see `LoginLimiter`.
    let limiter = &backends.login_limiter;
    if let Some(wait) = limiter.attempt(&limiter_key).await? {
        return Err(ApiError::RateLimited(wait));
    }
    let record = match Username::parse(&request.username) {
        Ok(username) => backends.users.user_by_name(username.as_str()).await?,
        Err(_) => None,
    };
    let stored_hash = record.as_ref().map(|record| record.password_hash.clone());
    let valid = match passwords.verify(request.password, stored_hash).await {
        Ok(valid) => valid,
        Err(error) => {
            // Never checked, so neither a failure nor a success: give the attempt back.
            limiter.refund(&limiter_key).await?;
            return Err(hash_error(error));
        }
    };
    let Some(record) = record.filter(|_| valid) else {
        tracing::info!(user = %limiter_key, "inicio de sesión fallido");
        return Err(ApiError::Unauthorized(
            "usuario o contraseña incorrectos".into(),
        ));
    };
    limiter.reset(&limiter_key).await?;
    let token = tokens
        .issue(&record.user.username, record.user.role)
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    Ok(Json(TokenResponse {
        access_token: token,
        token_type: "bearer",
        expires_in: tokens.ttl().as_secs(),
    }))
}

#[utoipa::path(
    get, path = "/auth/me", tag = "cuentas",
    summary = "Mi cuenta",
    description = "La cuenta dueña del token.",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "La cuenta", body = User),
        (status = 401, description = "Token ausente, inválido o caducado (`unauthorized`)", body = crate::api_schema::ErrorBody),
    ),
)]
async fn me(State(backends): State<Backends>, caller: AuthUser) -> Result<Json<User>, ApiError> {
    let record = backends.users.user_by_name(&caller.username).await?;
    record
        .map(|record| Json(record.user))
        .ok_or_else(ApiError::bad_token)
}
