//! JWT access tokens (HS256).
//!
//! The algorithm comes from our configuration, never from the token's header: a token signed
//! with `none` or another algorithm is refused. `exp` is required.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthUser;
use crate::domain::Role;

/// What a token says about its bearer.
#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iat: u64,
    exp: u64,
}

/// Issues and verifies tokens with one secret.
#[derive(Clone)]
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Tokens {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// Lifetime of the tokens issued, for the login answer's `expires_in`.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs a token for the user.
    pub fn issue(&self, username: &str, role: Role) -> Result<String, jsonwebtoken::errors::Error> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: username.to_owned(),
            role,
            iat: now,
            exp: now + self.ttl.as_secs(),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
    }

    /// The user a token proves, if its signature, algorithm and expiry are right.
    pub fn verify(&self, token: &str) -> Option<AuthUser> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        Some(AuthUser {
            username: data.claims.sub,
            role: data.claims.role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(b"secreto-de-prueba", Duration::from_secs(60))
    }

    #[test]
    fn a_token_proves_its_user() {
        let token = tokens().issue("ana", Role::Admin).unwrap();
        let user = tokens().verify(&token).unwrap();
        assert_eq!(
            user,
            AuthUser {
                username: "ana".into(),
                role: Role::Admin
            }
        );
    }

    #[test]
    fn tokens_of_another_secret_or_algorithm_are_refused() {
        let other = Tokens::new(b"otro", Duration::from_secs(60))
            .issue("ana", Role::Member)
            .unwrap();
        assert!(tokens().verify(&other).is_none());
        let claims = Claims {
            sub: "ana".into(),
            role: Role::Admin,
            iat: 0,
            exp: u64::MAX / 2,
        };
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"secreto-de-prueba"),
        )
        .unwrap();
        assert!(tokens().verify(&hs512).is_none());
        assert!(tokens().verify("no.es.un-token").is_none());
    }

    #[test]
    fn expired_tokens_and_tokens_without_exp_are_refused() {
        let key = EncodingKey::from_secret(b"secreto-de-prueba");
        let expired = Claims {
            sub: "ana".into(),
            role: Role::Member,
            iat: 0,
            exp: 1,
        };
        let token = jsonwebtoken::encode(&Header::default(), &expired, &key).unwrap();
        assert!(tokens().verify(&token).is_none());
        let no_exp = serde_json::json!({ "sub": "ana", "role": "member" });
        let token = jsonwebtoken::encode(&Header::default(), &no_exp, &key).unwrap();
        assert!(tokens().verify(&token).is_none());
    }
}
