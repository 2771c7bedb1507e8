//! Accounts and tokens: Argon2id passwords, HS256 JWTs, the login limiter, and the extractor
//! that turns a `Bearer` token into an [`AuthUser`].

pub mod passwords;
pub mod routes;
pub mod tokens;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use crate::app::AppState;
use crate::domain::Role;
use crate::error::ApiError;

/// The caller of a request, proven by a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub username: String,
    pub role: Role,
}

impl AuthUser {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
}

/// The token of an `Authorization: Bearer <jwt>` header, if there is one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

// ANCHOR: auth_user
impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(parts).ok_or_else(ApiError::bad_token)?;
        state.tokens.verify(token).ok_or_else(ApiError::bad_token)
    }
}
// ANCHOR_END: auth_user
