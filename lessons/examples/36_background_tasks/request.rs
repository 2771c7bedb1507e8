//! Paso 1 · ¿Dónde hago el trabajo? Cuatro respuestas, de peor a mejor según el caso.
//!
//! - **En la petición** (`POST /work/inline`): el cliente espera a que termine. Bien si tarda
//!   milisegundos; mal para enviar un e-mail que tarda segundos.
//! - **`tokio::spawn`** (`POST /work/spawn`): contestamos `202` ya y el trabajo sigue en otra
//!   tarea. Es el `BackgroundTasks` de FastAPI: si el proceso se cae o se reinicia, ese trabajo
//!   se pierde sin dejar rastro, y nadie lo reintenta.
//! - **`spawn_blocking`** (`POST /work/blocking`): para trabajo de CPU (o una biblioteca que
//!   bloquea). En una tarea normal, un bucle largo dejaría a ese hilo del runtime sin atender
//!   otras peticiones; `spawn_blocking` lo manda a un hilo aparte.
//! - **Una cola duradera** (`POST /emails`, pasos 2 y 3): el trabajo queda guardado (en Redis,
//!   fuera del proceso), un worker lo toma, lo reintenta si falla y su estado se puede consultar.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::status::{Changes, LONGEST_WAIT};

/// Lo más que dejamos "dormir" a una petición de ejemplo.
const MAX_MS: u64 = 10_000;
/// El número más alto para la criba (con 5 millones tarda del orden de un segundo en debug).
const MAX_N: usize = 5_000_000;

/// Cuántos trabajos de `tokio::spawn` empezaron y cuántos terminaron.
#[derive(Debug, Default)]
pub struct Work {
    spawned_started: AtomicU64,
    spawned_done: AtomicU64,
    changes: Changes,
}

#[derive(Deserialize)]
pub struct SleepQuery {
    ms: Option<u64>,
}

#[derive(Serialize)]
pub struct Took {
    how: &'static str,
    took_ms: u128,
}

// ANCHOR: inline
/// `POST /work/inline?ms=800`: el trabajo (aquí, esperar) ocurre antes de contestar.
pub async fn inline(Query(query): Query<SleepQuery>) -> Json<Took> {
    let started = Instant::now();
    let ms = query.ms.unwrap_or(800).min(MAX_MS);
    // Un `sleep` de tokio no bloquea el hilo: mientras esperamos, el runtime atiende a otros.
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Json(Took {
        how: "en la petición: el cliente esperó",
        took_ms: started.elapsed().as_millis(),
    })
}
// ANCHOR_END: inline

#[derive(Serialize)]
pub struct Spawned {
    how: &'static str,
    spawned_started: u64,
    spawned_done: u64,
}

// ANCHOR: spawn
/// `POST /work/spawn?ms=800`: contesta 202 enseguida; el trabajo sigue en otra tarea.
pub async fn spawn(
    State(state): State<AppState>,
    Query(query): Query<SleepQuery>,
) -> (StatusCode, Json<Spawned>) {
    let ms = query.ms.unwrap_or(800).min(MAX_MS);
    let work = state.work.clone();
    work.spawned_started.fetch_add(1, Ordering::Relaxed);
    // Nadie guarda esta tarea: si el proceso muere antes de que acabe, se pierde.
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        work.spawned_done.fetch_add(1, Ordering::Relaxed);
        work.changes.bump();
        tracing::info!(ms, "terminó un trabajo de tokio::spawn");
    });
    (
        StatusCode::ACCEPTED,
        Json(
            state
                .work
                .snapshot("tokio::spawn: contestamos antes de terminar"),
        ),
    )
}
// ANCHOR_END: spawn

impl Work {
    fn snapshot(&self, how: &'static str) -> Spawned {
        Spawned {
            how,
            spawned_started: self.spawned_started.load(Ordering::Relaxed),
            spawned_done: self.spawned_done.load(Ordering::Relaxed),
        }
    }
}

#[derive(Deserialize)]
pub struct DoneQuery {
    /// `?done_at_least=N`: espera (hasta 10 s) a que hayan terminado N trabajos.
    done_at_least: Option<u64>,
}

/// `GET /work`: los contadores de `tokio::spawn`.
pub async fn counters(
    State(state): State<AppState>,
    Query(query): Query<DoneQuery>,
) -> Json<Spawned> {
    let work = &state.work;
    if let Some(wanted) = query.done_at_least {
        let done = || work.spawned_done.load(Ordering::Relaxed) >= wanted;
        work.changes.wait_until(LONGEST_WAIT, done).await;
    }
    Json(work.snapshot("contadores de tokio::spawn"))
}

#[derive(Deserialize)]
pub struct PrimesQuery {
    n: Option<usize>,
}

#[derive(Serialize)]
pub struct Primes {
    how: &'static str,
    n: usize,
    primes: usize,
    took_ms: u128,
}

// ANCHOR: blocking
/// `POST /work/blocking?n=2000000`: cuenta los primos menores que `n` en un hilo aparte.
pub async fn blocking(
    Query(query): Query<PrimesQuery>,
) -> Result<Json<Primes>, (StatusCode, &'static str)> {
    let n = query.n.unwrap_or(2_000_000).min(MAX_N);
    let started = Instant::now();
    // CPU pura: en un hilo de `spawn_blocking`, no en los pocos hilos que atienden peticiones.
    let primes = tokio::task::spawn_blocking(move || count_primes(n))
        .await
        .map_err(|_| (StatusCode::INTERNAL_SERVER_ERROR, "el cálculo falló"))?;
    Ok(Json(Primes {
        how: "spawn_blocking: CPU en un hilo aparte",
        n,
        primes,
        took_ms: started.elapsed().as_millis(),
    }))
}

/// La criba de Eratóstenes: cuántos primos hay menores que `n`.
pub fn count_primes(n: usize) -> usize {
    if n < 3 {
        return 0;
    }
    let mut composite = vec![false; n];
    let mut count = 0;
    for i in 2..n {
        if composite[i] {
            continue;
        }
        count += 1;
        let mut multiple = i.saturating_mul(i);
        while multiple < n {
            composite[multiple] = true;
            multiple += i;
        }
    }
    count
}
// ANCHOR_END: blocking
