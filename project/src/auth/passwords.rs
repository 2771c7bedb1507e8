//! Argon2id password hashing, always on the blocking pool.
//!
//! Hashing costs tens of milliseconds of pure CPU on purpose; run on the async runtime it would
//! freeze every connection served by that thread, so both functions use `spawn_blocking`.
//!
//! Each hash also takes 19 MiB of memory (Argon2's default cost). The blocking pool grows up to
//! 512 threads, so a burst of logins could ask for gigabytes at once; a semaphore lets only as
//! many hashes run as there are cores (more would not finish sooner anyway), and the rest wait
//! their turn without holding memory.

use std::sync::{LazyLock, OnceLock};

use tokio::sync::Semaphore;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// Hashing failed (only if the system has no randomness for the salt, or the pool is gone).
#[derive(Debug, thiserror::Error)]
#[error("no se pudo calcular el hash de la contraseña: {0}")]
pub struct HashError(String);

/// Hashes running at once: one per core.
static HASHING: LazyLock<Semaphore> = LazyLock::new(|| {
    Semaphore::new(std::thread::available_parallelism().map_or(2, |cores| cores.get()))
});

/// Runs one Argon2 computation on the blocking pool, once a slot is free. `None` if the
/// computation could not run (the semaphore is never closed, so only a panic gives that).
async fn run_argon2<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let _slot = HASHING.acquire().await.ok()?;
    tokio::task::spawn_blocking(work).await.ok()
}

/// Hashes a password into a PHC string (`$argon2id$v=19$...`).
pub async fn hash(password: String) -> Result<String, HashError> {
    run_argon2(move || hash_now(&password))
        .await
        .unwrap_or_else(|| Err(HashError("la tarea de hash terminó sin resultado".into())))
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
    run_argon2(move || {
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
    async fn no_more_argon2_computations_run_at_once_than_there_are_cores() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicUsize, Ordering};

        let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..cores * 4)
            .map(|_| {
                let (running, most) = (running.clone(), most.clone());
                tokio::spawn(run_argon2(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_some());
        }
        let most = most.load(Ordering::SeqCst);
        assert!(
            most >= 1 && most <= cores,
            "{most} ran at once with {cores} cores"
        );
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("secreto123".into()).await.unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify("secreto123".into(), Some(stored.clone())).await);
        assert!(!verify("otra-clave".into(), Some(stored)).await);
        assert!(!verify("contraseña-que-nadie-tiene".into(), None).await);
    }
}
