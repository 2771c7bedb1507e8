//! Pasos 2 y 7 · La cola: en el proceso, o en Redis con `REDIS_URL`.
//!
//! Las dos se usan igual: [`EmailQueue::push`] un trabajo ahora o tras una espera, y un worker
//! de apalis lo toma. La diferencia es dónde vive el trabajo mientras espera:
//! - en memoria (`VecDequeBackend` de apalis): si el proceso se cae, la cola se pierde;
//! - en Redis (`apalis-redis`): sobrevive a reinicios, y varios procesos pueden compartirla.
//!   `GET /queue` enseña sus claves, y la página los comandos de `redis-cli` para mirarlas tú.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_core::backend::dequeue::VecDequeBackend;
use apalis_redis::RedisStorage;
use axum::Json;
use axum::extract::State;
use redis::aio::ConnectionManager;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::AppState;
use super::mailer::EmailJob;

// ANCHOR: queue
/// La cola de e-mails, sobre uno de los dos backends de apalis.
#[derive(Clone)]
pub enum EmailQueue {
    Memory {
        backend: VecDequeBackend<EmailJob>,
        /// Las esperas de los reintentos son temporizadores nuestros; se cancelan al parar.
        stop: CancellationToken,
    },
    /// En una caja: un `RedisStorage` es grande y el enum se mueve por valor.
    Redis {
        storage: Box<RedisStorage<EmailJob>>,
        conn: ConnectionManager,
        name: String,
    },
}

impl EmailQueue {
    /// Deja `job` en la cola para que corra tras `delay` (enseguida si es cero).
    pub async fn push(&self, job: EmailJob, delay: Duration) -> Result<(), String> {
        match self {
            Self::Memory { backend, stop } => {
                let mut backend = backend.clone();
                if delay.is_zero() {
                    return backend.push(job).await.map_err(|error| error.to_string());
                }
                // `VecDequeBackend` no sabe programar: esperamos nosotros y luego encolamos.
                let stop = stop.clone();
                tokio::spawn(async move {
                    if stop
                        .run_until_cancelled(tokio::time::sleep(delay))
                        .await
                        .is_none()
                    {
                        return;
                    }
                    if let Err(error) = backend.push(job).await {
                        tracing::error!(%error, "no se pudo reencolar un trabajo");
                    }
                });
                Ok(())
            }
            Self::Redis { storage, .. } => {
                let mut storage: RedisStorage<EmailJob> = (**storage).clone();
                if delay.is_zero() {
                    return storage.push(job).await.map_err(|error| error.to_string());
                }
                // apalis-redis guarda la hora en segundos enteros y `run_after` redondea hacia
                // abajo: un reintento de 1 s podría salir casi enseguida. Redondeamos la hora hacia
                // arriba, para que nunca salga antes de su espera.
                let due = (SystemTime::now() + delay)
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                let due_secs = due.as_secs() + u64::from(due.subsec_nanos() > 0);
                let task = TaskBuilder::new(job).run_at_timestamp(due_secs).build();
                storage
                    .push_task(task)
                    .await
                    .map_err(|error| error.to_string())
            }
        }
    }
}
// ANCHOR_END: queue

impl EmailQueue {
    /// Cómo se llama el backend en la página y en `/stats`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            Self::Memory { .. } => "memoria",
            Self::Redis { .. } => "redis",
        }
    }
}

// ANCHOR: redis_view
/// Una clave de Redis de la cola: su nombre, su tipo y cuántos elementos tiene.
#[derive(Serialize)]
pub struct RedisKey {
    key: String,
    kind: String,
    len: u64,
}

#[derive(Serialize)]
pub struct QueueView {
    backend: &'static str,
    /// El prefijo de las claves en Redis (`lesson36:emails`), si hay Redis.
    queue: Option<String>,
    keys: Vec<RedisKey>,
    /// Los comandos para mirar la cola tú mismo.
    redis_cli: Vec<String>,
    note: &'static str,
}

/// `GET /queue`: cómo se ve la cola por dentro. Con Redis, sus claves de verdad.
pub async fn view(State(state): State<AppState>) -> Json<QueueView> {
    match &state.queue {
        EmailQueue::Memory { .. } => Json(QueueView {
            backend: "memoria",
            queue: None,
            keys: Vec::new(),
            redis_cli: redis_cli(super::DEFAULT_QUEUE),
            note: "la cola vive en este proceso: arranca con REDIS_URL=redis://127.0.0.1:6379 para verla en Redis",
        }),
        EmailQueue::Redis { conn, name, .. } => {
            let keys = match redis_keys(conn.clone(), name).await {
                Ok(keys) => keys,
                Err(error) => {
                    tracing::warn!(%error, "no se pudieron leer las claves de la cola");
                    Vec::new()
                }
            };
            Json(QueueView {
                backend: "redis",
                queue: Some(name.clone()),
                keys,
                redis_cli: redis_cli(name),
                note: "scheduled (zset): cada tarea nueva entra aquí con su hora unix como score (ahora, o la de su reintento); active (lista): las que un worker ya puede tomar; data (hash): el JSON de cada tarea; meta:<id> (hash): su estado e intentos según apalis; done (set): las terminadas; workers: quién está vivo",
            })
        }
    }
}

/// Las claves `<queue>:*`, con un `SCAN` acotado (nunca `KEYS` en un Redis con datos de verdad).
async fn redis_keys(mut conn: ConnectionManager, queue: &str) -> redis::RedisResult<Vec<RedisKey>> {
    let mut cursor: u64 = 0;
    let mut names = Vec::new();
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{queue}:*"))
            .arg("COUNT")
            .arg(200)
            .query_async(&mut conn)
            .await?;
        names.extend(batch);
        cursor = next;
        if cursor == 0 || names.len() >= 100 {
            break;
        }
    }
    names.sort();
    let mut keys = Vec::new();
    for key in names {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut conn).await?;
        // Una clave puede desaparecer entre el SCAN y el TYPE (un worker terminó algo).
        if kind == "none" {
            continue;
        }
        let len_command = match kind.as_str() {
            "list" => "LLEN",
            "zset" => "ZCARD",
            "hash" => "HLEN",
            "set" => "SCARD",
            _ => "STRLEN",
        };
        let len: u64 = redis::cmd(len_command)
            .arg(&key)
            .query_async(&mut conn)
            .await?;
        keys.push(RedisKey { key, kind, len });
    }
    Ok(keys)
}

/// Los comandos de `redis-cli` que la página enseña.
pub fn redis_cli(queue: &str) -> Vec<String> {
    vec![
        format!("redis-cli --scan --pattern '{queue}:*'"),
        format!("redis-cli LRANGE {queue}:active 0 -1"),
        format!("redis-cli ZRANGE {queue}:scheduled 0 -1 WITHSCORES"),
        format!("redis-cli HGETALL {queue}:data"),
        format!("redis-cli SMEMBERS {queue}:done"),
        format!("redis-cli HGETALL {queue}:meta:<id-de-la-tarea>"),
        "redis-cli MONITOR".to_owned(),
    ]
}
// ANCHOR_END: redis_view
