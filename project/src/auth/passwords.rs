//! Argon2id password hashing on a small pool of dedicated threads.
//!
//! Hashing costs tens of milliseconds of pure CPU on purpose; run on the async runtime it would
//! freeze every connection served by that thread. Each hash also needs 19 MiB of working memory
//! (Argon2's default cost). Tokio's blocking pool is the wrong home for it: it grows to 512
//! threads, and each thread's allocator keeps the 19 MiB it once used (~860 MiB of RSS after
//! 100 registrations and 100 logins sent at once).
//!
//! So a [`HashPool`] runs K threads (one per core: more would not finish sooner), each owning
//! ONE memory block, allocated once and reused for every hash (`argon2` can hash into caller
//! memory): the process never holds more than K × 19 MiB for passwords.
//!
//! A request first takes a slot (a semaphore permit) and hands its work to the threads through
//! a bounded channel. The permit travels with the work and is released by the thread when the
//! hash is done, not when the request ends: a request cancelled halfway (the client hung up)
//! cannot free its slot while its hash still runs, so at most K hashes ever run or wait in the
//! channel. A request that cannot get a slot within the configured wait (2 s by default) gets
//! [`HashError::Busy`], answered 503 with `Retry-After`: a login storm is shed instead of
//! queuing without bound.

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Why a hash could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// No hashing slot became free within the allowed wait: try again later.
    #[error("el servidor está ocupado calculando contraseñas; vuelve a intentarlo")]
    Busy,
    /// The computation itself failed (no randomness for the salt, or the pool is gone).
    #[error("no se pudo calcular el hash de la contraseña: {0}")]
    Failed(String),
}

/// Work for a pool thread: it gets the thread's memory block.
type Job = Box<dyn FnOnce(&mut [Block]) + Send>;

/// K threads that hash passwords, each with its own reusable Argon2 memory block.
///
/// The threads end when the pool is dropped (their channel closes).
pub struct HashPool {
    jobs: SyncSender<Job>,
    slots: Arc<Semaphore>,
    wait: Duration,
}

impl HashPool {
    /// One thread per core; a request waits at most `wait` for a slot.
    pub fn new(wait: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |cores| cores.get());
        Self::with_threads(cores, wait)
    }

    /// `threads` threads (at least one); a request waits at most `wait` for a slot.
    pub fn with_threads(threads: usize, wait: Duration) -> Self {
        let threads = threads.max(1);
        // Every job in the channel holds a permit, so it never holds more than `threads`.
        let (jobs, queue) = std::sync::mpsc::sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || work(&queue));
            if let Err(error) = spawned {
                tracing::error!(%error, "no se pudo arrancar un hilo de hash de contraseñas");
            }
        }
        Self {
            jobs,
            slots: Arc::new(Semaphore::new(threads)),
            wait,
        }
    }

    /// Runs `work` on a pool thread with that thread's memory block, once a slot is free.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        // `timeout` polls the acquisition first, so a wait of zero still takes a free slot.
        let slot: OwnedSemaphorePermit =
            match tokio::time::timeout(self.wait, self.slots.clone().acquire_owned()).await {
                Ok(Ok(slot)) => slot,
                Ok(Err(_closed)) => return Err(HashError::Failed("el pool está cerrado".into())),
                Err(_elapsed) => return Err(HashError::Busy),
            };
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |memory| {
            // Released when this job ends, whatever happened to the request meanwhile.
            let _slot = slot;
            // The request is gone (client hung up): nobody needs this hash.
            if reply.is_closed() {
                return;
            }
            let _ = reply.send(work(memory));
        });
        match self.jobs.try_send(job) {
            Ok(()) => {}
            // Cannot happen while permits bound the channel; shed rather than wait if it does.
            Err(TrySendError::Full(_)) => return Err(HashError::Busy),
            Err(TrySendError::Disconnected(_)) => {
                return Err(HashError::Failed("el pool está cerrado".into()));
            }
        }
        answer
            .await
            .map_err(|_| HashError::Failed("la tarea de hash terminó sin resultado".into()))
    }

    /// Hashes a password into a PHC string (`$argon2id$v=19$...`).
    pub async fn hash(&self, password: String) -> Result<String, HashError> {
        self.run(move |memory| hash_into(memory, &password))
            .await?
            .map_err(HashError::Failed)
    }

    /// Checks a password against a stored hash, or against a dummy hash when `stored` is
    /// `None`.
    ///
    /// Verifying against a dummy for unknown users makes "no such user" cost the same time as
    /// "wrong password", so the answer's timing does not reveal which usernames exist.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        self.run(move |memory| {
            let hash = match &stored {
                Some(hash) => hash.as_str(),
                None => dummy_hash(memory),
            };
            verify_into(memory, &password, hash) && stored.is_some()
        })
        .await
    }
}

/// The loop of one pool thread: take a job, run it with this thread's block, repeat until the
/// pool is dropped.
fn work(queue: &Mutex<Receiver<Job>>) {
    // Allocated on the first job, then reused by every job of this thread.
    let mut memory: Vec<Block> = Vec::new();
    loop {
        let job = {
            let queue = queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            queue.recv()
        };
        let Ok(job) = job else {
            return;
        };
        if memory.is_empty() {
            memory = vec![Block::new(); Params::DEFAULT.block_count()];
        }
        // A panic in one hash must not shrink the pool: the thread carries on with the next.
        if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut memory))).is_err() {
            tracing::error!("un cálculo de hash de contraseña falló con un pánico");
        }
    }
}

/// The Argon2id context with this crate's parameters (the library's defaults: 19 MiB, t=2, p=1).
fn argon2() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT)
}

/// Hashes `password` with a random salt, using `memory` as Argon2's working memory.
fn hash_into(memory: &mut [Block], password: &str) -> Result<String, String> {
    let salt_bytes: [u8; Salt::RECOMMENDED_LENGTH] = rand::random();
    let salt = Salt::new(&salt_bytes).map_err(|error| error.to_string())?;
    let params = Params::DEFAULT;
    let blocks = memory
        .get_mut(..params.block_count())
        .ok_or("memoria de hash demasiado pequeña")?;
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    argon2()
        .hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, blocks)
        .map_err(|error| error.to_string())?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|error| error.to_string())?,
        salt: Some(salt),
        hash: Some(Output::new(&out).map_err(|error| error.to_string())?),
    };
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `stored`, using `memory` as working memory.
///
/// The parameters come from the stored hash; one that needs more memory than a pool block (not
/// one this server wrote) does not verify.
fn verify_into(memory: &mut [Block], password: &str, stored: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (&parsed.salt, &parsed.hash) else {
        return false;
    };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm.as_str()) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::V0x13,
        Some(Ok(version)) => version,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return false;
    };
    let Some(blocks) = memory.get_mut(..params.block_count()) else {
        tracing::warn!("un hash guardado pide más memoria de la que tiene el pool");
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, blocks)
        .is_ok()
        // `Output`'s equality is constant-time.
        && Output::new(&out).is_ok_and(|computed| computed == *expected)
}

/// The hash unknown users are checked against, computed once (on a pool thread, with its
/// memory).
fn dummy_hash(memory: &mut [Block]) -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_into(memory, "contraseña-que-nadie-tiene").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[tokio::test]
    async fn no_more_computations_run_at_once_than_the_pool_has_threads() {
        let pool = Arc::new(HashPool::with_threads(2, Duration::from_secs(60)));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move |_| {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().is_ok());
        }
        let most = most.load(Ordering::SeqCst);
        assert!((1..=2).contains(&most), "{most} ran at once on 2 threads");
    }

    #[tokio::test]
    async fn a_cancelled_request_keeps_its_slot_until_its_hash_ends() {
        // Arrange: one thread, busy with the work of a request that is then cancelled.
        let pool = HashPool::with_threads(1, Duration::from_millis(50));
        let (started_tx, started) = std::sync::mpsc::channel();
        let (finish, finish_rx) = std::sync::mpsc::channel::<()>();
        let cancelled = pool.run(move |_| {
            let _ = started_tx.send(());
            let _ = finish_rx.recv();
        });
        // Poll it until its work runs on the thread, then drop it (the client hung up).
        tokio::select! {
            _ = cancelled => panic!("the work cannot end before it is told to"),
            _ = tokio::task::spawn_blocking(move || started.recv()) => {}
        }

        // Act: another request while that hash still runs.
        let second = pool.run(|_| ()).await;

        // Assert: no slot was free (before, the cancelled request gave its slot back at once).
        assert!(matches!(second, Err(HashError::Busy)), "{second:?}");
        finish.send(()).unwrap();
        // Once the hash ends, the slot is free again.
        let mut third = pool.run(|_| ()).await;
        for _ in 0..100 {
            if third.is_ok() {
                break;
            }
            third = pool.run(|_| ()).await;
        }
        assert!(third.is_ok(), "{third:?}");
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let pool = HashPool::with_threads(1, Duration::from_secs(60));
        let stored = pool.hash("secreto123".into()).await.unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert!(
            pool.verify("secreto123".into(), Some(stored.clone()))
                .await
                .unwrap()
        );
        assert!(
            !pool
                .verify("otra-clave".into(), Some(stored))
                .await
                .unwrap()
        );
        assert!(
            !pool
                .verify("contraseña-que-nadie-tiene".into(), None)
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn hashes_are_the_libraries_own_format_both_ways() {
        // Hashes written before the pool (with `PasswordHasher`) still verify, and the pool's
        // hashes verify with the library's own verifier.
        let pool = HashPool::with_threads(1, Duration::from_secs(60));
        let old = Argon2::default()
            .hash_password(b"secreto123")
            .unwrap()
            .to_string();
        assert!(pool.verify("secreto123".into(), Some(old)).await.unwrap());
        let new = pool.hash("secreto123".into()).await.unwrap();
        let parsed = PasswordHash::new(&new).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"secreto123", &parsed)
                .is_ok()
        );
        assert!(Argon2::default().verify_password(b"otra", &parsed).is_err());
    }
}
