//! Paso 3 · Caching inteligente con Redis: cache-aside, TTL, invalidación, `X-Cache` y
//! protección contra la estampida.
//!
//! Cache-aside: el handler pide una clave a la caché y le da la forma de calcular la respuesta.
//! Si la clave está, se responde lo guardado (`X-Cache: HIT`). Si no, se calcula, se guarda con
//! un TTL y se responde (`X-Cache: MISS`). La caché nunca es la fuente de verdad: es una copia
//! que, como mucho, tiene un TTL de antigüedad, y que la escritura borra (`invalidate`).
//!
//! Dónde se guarda: en Redis si hay `REDIS_URL` (la comparten todos los procesos que usen el
//! mismo Redis), si no en un `HashMap` de este proceso. Si Redis falla, se responde sin caché.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context;
use axum::body::Bytes;
use redis::aio::ConnectionManager;
use serde_json::{Value, json};
use tokio::sync::{OwnedMutexGuard, watch};
use tokio::time::{Instant, timeout};

/// La cabecera que dice si una respuesta vino de la caché.
pub const X_CACHE: &str = "x-cache";
/// Lo más que esperamos a Redis en cada operación: una caché lenta no debe frenar la respuesta.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);
/// Lo más que esperamos a Redis al arrancar.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Entradas que guarda como mucho la caché en memoria.
const MAX_MEMORY_ENTRIES: usize = 1_000;

/// De dónde salió una respuesta.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Estaba en la caché (o la calculó otra petición a la que esta esperó).
    Hit,
    /// La calculó esta petición.
    Miss,
}

impl CacheStatus {
    /// El valor de la cabecera `X-Cache`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "HIT",
            Self::Miss => "MISS",
        }
    }
}

/// La caché de la lección. Barata de clonar.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    ttl: Duration,
    flights: Flights,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// Dónde viven las respuestas cacheadas.
enum Store {
    Memory(Mutex<HashMap<String, Entry>>),
    Redis {
        connection: ConnectionManager,
        prefix: String,
    },
}

/// Una respuesta guardada en memoria y cuándo caduca.
struct Entry {
    body: Bytes,
    expires: Instant,
}

impl Cache {
    /// Una caché en este proceso: sin servicios, pero solo la ve este proceso.
    pub fn in_memory(ttl: Duration) -> Self {
        Self::new(Store::Memory(Mutex::default()), ttl)
    }

    /// Una caché en Redis; sus claves empiezan por `{prefix}:`.
    pub async fn redis(url: &str, prefix: &str, ttl: Duration) -> anyhow::Result<Self> {
        let client = redis::Client::open(url)
            .with_context(|| format!("REDIS_URL={url:?} no es una URL de Redis"))?;
        let connection = timeout(CONNECT_TIMEOUT, ConnectionManager::new(client))
            .await
            .map_err(|_| {
                anyhow::anyhow!("Redis en {url} no responde: arráncalo o quita REDIS_URL")
            })?
            .with_context(|| {
                format!("no se pudo conectar con Redis en {url}: arráncalo o quita REDIS_URL")
            })?;
        let store = Store::Redis {
            connection,
            prefix: prefix.to_owned(),
        };
        Ok(Self::new(store, ttl))
    }

    fn new(store: Store, ttl: Duration) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                ttl,
                flights: Flights::default(),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            }),
        }
    }

    /// Las cifras de la caché, para la página.
    pub fn status(&self) -> Value {
        let backend = match self.inner.store {
            Store::Memory(_) => "memory",
            Store::Redis { .. } => "redis",
        };
        json!({
            "backend": backend,
            "ttl_ms": self.inner.ttl.as_millis() as u64,
            "hits": self.inner.hits.load(Ordering::Relaxed),
            "misses": self.inner.misses.load(Ordering::Relaxed),
            "waiting": *self.inner.flights.waiting.borrow(),
        })
    }

    /// Cuántas peticiones esperan ahora mismo a que otra termine de calcular su clave.
    pub fn waiting(&self) -> watch::Receiver<usize> {
        self.inner.flights.waiting.subscribe()
    }

    // ANCHOR: cache_aside
    /// Cache-aside: lo guardado bajo `key`, o lo que devuelva `compute`, guardado con el TTL.
    /// De muchas peticiones que fallan la misma clave a la vez, solo una ejecuta `compute`.
    pub async fn get_or_compute<F, Fut>(&self, key: &str, compute: F) -> (Bytes, CacheStatus)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Bytes>,
    {
        // 1. Primero, la caché.
        match self.get(key).await {
            Ok(Some(body)) => return self.counted(body, CacheStatus::Hit),
            Ok(None) => {}
            // 1b. Redis no contesta: respondemos como si no hubiera caché.
            Err(error) => {
                tracing::warn!(%error, "caché no disponible: se responde sin caché");
                return self.counted(compute().await, CacheStatus::Miss);
            }
        }
        // 2. No está: pedimos turno para esta clave (ver `Flights`, la estampida).
        let _turn = self.inner.flights.turn(key).await;
        // 3. Con el turno, miramos otra vez: quien iba delante quizá ya la guardó.
        if let Ok(Some(body)) = self.get(key).await {
            return self.counted(body, CacheStatus::Hit);
        }
        // 4. Calculamos, guardamos con TTL y respondemos. Al soltar el turno entra el siguiente.
        let body = compute().await;
        self.set(key, &body).await;
        self.counted(body, CacheStatus::Miss)
    }
    // ANCHOR_END: cache_aside

    fn counted(&self, body: Bytes, status: CacheStatus) -> (Bytes, CacheStatus) {
        let counter = match status {
            CacheStatus::Hit => &self.inner.hits,
            CacheStatus::Miss => &self.inner.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        (body, status)
    }

    // ANCHOR: ttl
    /// Lee `key`; `Ok(None)` si no está o ya caducó.
    async fn get(&self, key: &str) -> anyhow::Result<Option<Bytes>> {
        match &self.inner.store {
            Store::Memory(entries) => {
                let mut entries = lock(entries);
                match entries.get(key) {
                    Some(entry) if entry.expires > Instant::now() => Ok(Some(entry.body.clone())),
                    Some(_) => {
                        entries.remove(key);
                        Ok(None)
                    }
                    None => Ok(None),
                }
            }
            Store::Redis { connection, prefix } => {
                let command = redis::cmd("GET").arg(format!("{prefix}:{key}")).clone();
                let body: Option<Vec<u8>> = redis_call(connection, command).await?;
                Ok(body.map(Bytes::from))
            }
        }
    }

    /// Guarda `body` bajo `key` durante el TTL. Si no se puede, solo se avisa: la respuesta
    /// ya está calculada y la siguiente petición la volverá a calcular.
    async fn set(&self, key: &str, body: &Bytes) {
        let ttl = self.inner.ttl;
        match &self.inner.store {
            Store::Memory(entries) => {
                let mut entries = lock(entries);
                let now = Instant::now();
                if entries.len() >= MAX_MEMORY_ENTRIES {
                    entries.retain(|_, entry| entry.expires > now);
                }
                if entries.len() < MAX_MEMORY_ENTRIES || entries.contains_key(key) {
                    let entry = Entry {
                        body: body.clone(),
                        expires: now + ttl,
                    };
                    entries.insert(key.to_owned(), entry);
                }
            }
            Store::Redis { connection, prefix } => {
                // `SET clave valor PX milisegundos`: Redis la borra sola al caducar.
                let command = redis::cmd("SET")
                    .arg(format!("{prefix}:{key}"))
                    .arg(&body[..])
                    .arg("PX")
                    .arg(ttl.as_millis().max(1) as u64)
                    .clone();
                if let Err(error) = redis_call::<()>(connection, command).await {
                    tracing::warn!(%error, "no se pudo guardar en la caché");
                }
            }
        }
    }
    // ANCHOR_END: ttl

    /// Borra `key`: llámalo después de la escritura que la deja anticuada.
    ///
    /// Un límite que hay que conocer: si una lectura calculó con los datos viejos justo antes
    /// de la escritura y guarda justo después de este borrado, lo viejo vive un TTL. El proyecto
    /// lo evita con un número de generación en la clave (project/src/cache/mod.rs).
    pub async fn invalidate(&self, key: &str) {
        match &self.inner.store {
            Store::Memory(entries) => {
                lock(entries).remove(key);
            }
            Store::Redis { connection, prefix } => {
                let command = redis::cmd("DEL").arg(format!("{prefix}:{key}")).clone();
                if let Err(error) = redis_call::<()>(connection, command).await {
                    tracing::warn!(%error, "no se pudo invalidar la caché");
                }
            }
        }
    }
}

/// Una orden a Redis con su límite de tiempo.
async fn redis_call<T: redis::FromRedisValue>(
    connection: &ConnectionManager,
    command: redis::Cmd,
) -> anyhow::Result<T> {
    // Cada clon de un `ConnectionManager` comparte la misma conexión.
    let mut connection = connection.clone();
    timeout(REDIS_TIMEOUT, command.query_async(&mut connection))
        .await
        .map_err(|_| anyhow::anyhow!("Redis no respondió en {REDIS_TIMEOUT:?}"))?
        .map_err(anyhow::Error::from)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nada entra en pánico con el candado tomado; si pasara, los datos seguirían coherentes.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

// ANCHOR: stampede
/// Protección contra la estampida (*single flight*): cuando caduca una clave popular, cien
/// peticiones pueden fallarla a la vez; sin cuidado, las cien ejecutan la misma consulta lenta
/// justo cuando más carga hay. Aquí cada clave tiene un turno (un `tokio::sync::Mutex`): la
/// primera calcula, las demás esperan su turno y, al tenerlo, encuentran la respuesta guardada.
///
/// El mapa de turnos está tras un `std::sync::Mutex`, tomado solo para buscar, nunca durante
/// un `.await`; guarda solo las claves que alguien calcula o espera ahora mismo.
#[derive(Default)]
struct Flights {
    keys: Mutex<HashMap<String, Slot>>,
    /// Cuántas tareas esperan turno ahora mismo (la página lo enseña; los tests lo esperan).
    waiting: watch::Sender<usize>,
}

struct Slot {
    turn: Arc<tokio::sync::Mutex<()>>,
    /// Tareas que tienen o esperan el turno; al llegar a cero se borra la clave del mapa.
    tasks: usize,
}

/// El turno de una tarea en una clave; al soltarlo (también si se cancela la petición) pasa
/// a la siguiente.
struct Turn<'a> {
    flights: &'a Flights,
    key: String,
    _guard: Option<OwnedMutexGuard<()>>,
}

impl Flights {
    async fn turn(&self, key: &str) -> Turn<'_> {
        let lock = {
            let mut keys = lock(&self.keys);
            let slot = keys.entry(key.to_owned()).or_insert_with(|| Slot {
                turn: Arc::default(),
                tasks: 0,
            });
            slot.tasks += 1;
            slot.turn.clone()
        };
        // Creado antes de esperar: una tarea cancelada mientras espera también se descuenta.
        let mut turn = Turn {
            flights: self,
            key: key.to_owned(),
            _guard: None,
        };
        let waiting = Waiting::start(&self.waiting);
        turn._guard = Some(lock.lock_owned().await);
        drop(waiting);
        turn
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        let mut keys = lock(&self.flights.keys);
        if let Some(slot) = keys.get_mut(&self.key) {
            slot.tasks -= 1;
            if slot.tasks == 0 {
                keys.remove(&self.key);
            }
        }
        // `_guard` se suelta después de esto: el siguiente que espera recibe el turno.
    }
}
// ANCHOR_END: stampede

/// Cuenta una tarea en `waiting` mientras vive.
struct Waiting<'a>(&'a watch::Sender<usize>);

impl<'a> Waiting<'a> {
    fn start(waiting: &'a watch::Sender<usize>) -> Self {
        waiting.send_modify(|count| *count += 1);
        Self(waiting)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.send_modify(|count| *count -= 1);
    }
}
