//! Accounts and tokens: Argon2id passwords, HS256 JWTs, the login limiter, and the extractors
//! that turn a token into an [`AuthUser`] or an [`AdminUser`].
//!
//! The extractors are generic over the router's state `S`: they only need the [`Tokens`], which
//! they take from `S` with axum's `FromRef`, so they know nothing of the server that uses them.

pub mod passwords;
pub mod routes;
pub mod tokens;

use std::borrow::Cow;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Query};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::Deserialize;

use self::tokens::Tokens;
use crate::domain::Role;
use crate::error::ApiError;

/// The caller of a request, proven by a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthUser {
    pub username: String,
    pub role: Role,
}

impl AuthUser {
    /// Admins may see the admin routes and manage any private room.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// The caller proven by the request's token (see [`request_token`]), or the contract's 401.
    pub fn from_token(parts: &Parts, tokens: &Tokens, place: TokenPlace) -> Result<Self, ApiError> {
        request_token(parts, place)
            .and_then(|token| tokens.verify(&token))
            .ok_or_else(ApiError::bad_token)
    }
}

// ANCHOR: request_token
/// Where a request may carry its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPlace {
    /// `Authorization: Bearer <jwt>` only: every REST route.
    Header,
    /// The header, else `?token=<jwt>`: for what a browser opens without headers (an
    /// `EventSource`, a `WebSocket`). Request spans carry the path only, so the token is never
    /// logged.
    HeaderOrQuery,
}

/// The token of an `Authorization: Bearer <jwt>` header, if there is one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The `?token=` of a query string.
#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The request's token: the `Bearer` header, else (when `place` allows it) `?token=`. The only
/// place that reads tokens out of requests.
pub fn request_token(parts: &Parts, place: TokenPlace) -> Option<Cow<'_, str>> {
    if let Some(token) = bearer_token(parts) {
        return Some(Cow::Borrowed(token));
    }
    match place {
        TokenPlace::Header => None,
        TokenPlace::HeaderOrQuery => Query::<TokenQuery>::try_from_uri(&parts.uri)
            .ok()
            .and_then(|Query(query)| query.token)
            .map(Cow::Owned),
    }
}
// ANCHOR_END: request_token

// ANCHOR: auth_user
impl<S> FromRequestParts<S> for AuthUser
where
    S: Send + Sync,
    Arc<Tokens>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let tokens = Arc::<Tokens>::from_ref(state);
        Self::from_token(parts, &tokens, TokenPlace::Header)
    }
}
// ANCHOR_END: auth_user

// ANCHOR: admin_user
/// The caller of an admin route: an [`AuthUser`] whose role is admin. Without a valid token the
/// contract's 401; with a member's token, its 403 (`forbidden`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminUser(pub AuthUser);

impl AdminUser {
    /// The admin proven by the request's token (see [`request_token`]), or the contract's
    /// 401 or 403.
    pub fn from_token(parts: &Parts, tokens: &Tokens, place: TokenPlace) -> Result<Self, ApiError> {
        let user = AuthUser::from_token(parts, tokens, place)?;
        if !user.is_admin() {
            return Err(ApiError::Forbidden(
                "solo un administrador puede ver esto".into(),
            ));
        }
        Ok(Self(user))
    }
}

impl<S> FromRequestParts<S> for AdminUser
where
    S: Send + Sync,
    Arc<Tokens>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let tokens = Arc::<Tokens>::from_ref(state);
        Self::from_token(parts, &tokens, TokenPlace::Header)
    }
}
// ANCHOR_END: admin_user

/// An [`AdminUser`] whose token may also come as `?token=`: the dashboard's `EventSource`
/// cannot send headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamAdmin(pub AdminUser);

impl<S> FromRequestParts<S> for StreamAdmin
where
    S: Send + Sync,
    Arc<Tokens>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let tokens = Arc::<Tokens>::from_ref(state);
        AdminUser::from_token(parts, &tokens, TokenPlace::HeaderOrQuery).map(Self)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use axum::http::Request;

    use super::*;

    fn parts(uri: &str, authorization: Option<&str>) -> Parts {
        let mut request = Request::builder().uri(uri);
        if let Some(value) = authorization {
            request = request.header(AUTHORIZATION, value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_bearer_header_wins_and_any_case_of_the_scheme_is_accepted() {
        let both = parts("/ws?token=from-query", Some("bearer  from-header "));
        assert_eq!(
            request_token(&both, TokenPlace::HeaderOrQuery).as_deref(),
            Some("from-header")
        );
        let other_scheme = parts("/rooms", Some("Basic abc"));
        assert_eq!(request_token(&other_scheme, TokenPlace::Header), None);
    }

    #[test]
    fn the_query_token_counts_only_where_the_route_allows_it() {
        let query = parts("/dashboard/events?token=a%2Eb", None);
        assert_eq!(request_token(&query, TokenPlace::Header), None);
        assert_eq!(
            request_token(&query, TokenPlace::HeaderOrQuery).as_deref(),
            Some("a.b")
        );
        let none = parts("/dashboard/events?other=1", None);
        assert_eq!(request_token(&none, TokenPlace::HeaderOrQuery), None);
    }
}
