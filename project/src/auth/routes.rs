//! `/auth/register`, `/auth/login`, `/auth/me`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AuthUser, passwords};
use crate::app::AppState;
use crate::domain::{Email, Password, Role, User, UserRecord, Username};
use crate::error::{ApiError, extract};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/me", get(me))
}

#[derive(Debug, Deserialize)]
struct RegisterRequest {
    username: String,
    password: String,
    email: String,
}

async fn register(
    State(state): State<AppState>,
    extract::Json(request): extract::Json<RegisterRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let username = Username::parse(&request.username)?;
    let password = Password::parse(&request.password)?;
    let email = Email::parse(&request.email)?;
    let user = create_user(&state, username, password, email, Role::Member).await?;
    tracing::info!(user = %user.username, "user registered");
    Ok((StatusCode::CREATED, Json(user)))
}

/// Hashes the password and stores the account. Used by `register` and the admin bootstrap.
pub async fn create_user(
    state: &AppState,
    username: Username,
    password: Password,
    email: Email,
    role: Role,
) -> Result<User, ApiError> {
    let password_hash = passwords::hash(password.as_str().to_owned())
        .await
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
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
    state.backends.users.create_user(record).await?;
    Ok(user)
}

#[derive(Debug, Deserialize)]
struct LoginRequest {
    username: String,
    password: String,
}

async fn login(
    State(state): State<AppState>,
    extract::Json(request): extract::Json<LoginRequest>,
) -> Result<Json<Value>, ApiError> {
    // The limiter counts any username, known or not, so it cannot be used to probe accounts.
    // Keys are bounded in length so a client cannot make us store huge keys.
    let limiter_key: String = request.username.to_lowercase().chars().take(64).collect();
    let limiter = &state.backends.login_limiter;
    if let Some(wait) = limiter.blocked_for(&limiter_key).await? {
        return Err(ApiError::RateLimited(wait));
    }
    let record = match Username::parse(&request.username) {
        Ok(username) => state.backends.users.user_by_name(username.as_str()).await?,
        Err(_) => None,
    };
    let stored_hash = record.as_ref().map(|record| record.password_hash.clone());
    let valid = passwords::verify(request.password, stored_hash).await;
    let Some(record) = record.filter(|_| valid) else {
        limiter.record_failure(&limiter_key).await?;
        tracing::info!(user = %limiter_key, "login failed");
        return Err(ApiError::Unauthorized(
            "usuario o contraseña incorrectos".into(),
        ));
    };
    limiter.reset(&limiter_key).await?;
    let token = state
        .tokens
        .issue(&record.user.username, record.user.role)
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    Ok(Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": state.tokens.ttl().as_secs(),
    })))
}

async fn me(State(state): State<AppState>, caller: AuthUser) -> Result<Json<User>, ApiError> {
    let record = state.backends.users.user_by_name(&caller.username).await?;
    record
        .map(|record| Json(record.user))
        .ok_or_else(ApiError::bad_token)
}
