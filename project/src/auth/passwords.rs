//! Argon2id password hashing, always on the blocking pool.
//!
//! Hashing costs tens of milliseconds of pure CPU on purpose; run on the async runtime it would
//! freeze every connection served by that thread, so both functions use `spawn_blocking`.

use std::sync::OnceLock;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Hashing failed (only if the system has no randomness for the salt, or the pool is gone).
#[derive(Debug, thiserror::Error)]
#[error("no se pudo calcular el hash de la contraseña: {0}")]
pub struct HashError(String);

/// Hashes a password into a PHC string (`$argon2id$v=19$...`).
pub async fn hash(password: String) -> Result<String, HashError> {
    tokio::task::spawn_blocking(move || hash_now(&password))
        .await
        .map_err(|join| HashError(join.to_string()))?
}

fn hash_now(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|error| HashError(error.to_string()))
}

/// Checks a password against a stored hash, or against a dummy hash when `stored` is `None`.
///
/// Verifying against a dummy for unknown users makes "no such user" cost the same time as
/// "wrong password", so the answer's timing does not reveal which usernames exist.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        let hash = match &stored {
            Some(hash) => hash.as_str(),
            None => dummy_hash(),
        };
        let matches = PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        });
        matches && stored.is_some()
    })
    .await
    .unwrap_or(false)
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_now("contraseña-que-nadie-tiene").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("secreto123".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("secreto123".into(), Some(stored.clone())).await);
        assert!(!verify("otra-clave".into(), Some(stored)).await);
        assert!(!verify("contraseña-que-nadie-tiene".into(), None).await);
    }
}
