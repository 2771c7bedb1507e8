//! Pasos 5 y 6 · El estado de cada trabajo, los contadores y cómo esperar a que algo cambie.
//!
//! Una cola solo sabe qué trabajos esperan; quien encola quiere saber qué pasó con el suyo.
//! Por eso guardamos un registro por trabajo (`pending`, `running`, `failed`, `done`, `dead`)
//! con su historia, y lo servimos en `GET /jobs/{id}`. Los contadores (`GET /stats`) son lo que
//! mirarías en un panel: cuántos se encolaron, cuántos intentos, reintentos, enviados, muertos.
//!
//! Límite honesto: este registro vive en la memoria del proceso, también con Redis. La cola
//! sobrevive a un reinicio; esta historia, no. El proyecto final lo guarda en Redis
//! (`project/src/jobs/store.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::AppState;

/// Lo más que una petición espera un cambio (`?wait=1`, `?after=N`): nunca para siempre.
pub const LONGEST_WAIT: Duration = Duration::from_secs(10);
/// Registros que guardamos; al pasar de aquí olvidamos los terminados más antiguos.
const KEEP_RECORDS: usize = 500;

/// Un aviso de "algo cambió", para esperar eventos en vez de preguntar cada poco.
#[derive(Debug)]
pub struct Changes(watch::Sender<u64>);

impl Default for Changes {
    fn default() -> Self {
        Self(watch::Sender::new(0))
    }
}

impl Changes {
    pub fn bump(&self) {
        self.0.send_modify(|version| *version += 1);
    }

    /// Espera hasta que `ready()` se cumpla o pase `limit`; devuelve si se cumplió.
    pub async fn wait_until(&self, limit: Duration, ready: impl Fn() -> bool) -> bool {
        // Nos suscribimos ANTES de mirar: un cambio entre mirar y esperar no se pierde.
        let mut changed = self.0.subscribe();
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if ready() {
                return true;
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return ready(),
            }
        }
    }
}

// ANCHOR: status
/// Dónde está un trabajo en su vida. `failed` significa "falló y hay otro intento programado".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Pending,
    Running,
    Failed,
    Done,
    Dead,
}

impl JobStatus {
    /// `done` y `dead` son finales: ya no le pasará nada más.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Done | Self::Dead)
    }
}

/// Un paso de la historia de un trabajo.
#[derive(Debug, Clone, Serialize)]
pub struct Transition {
    pub status: JobStatus,
    pub attempt: u32,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Lo que `GET /jobs/{id}` cuenta de un trabajo.
#[derive(Debug, Clone, Serialize)]
pub struct JobRecord {
    pub id: String,
    pub to: String,
    pub subject: String,
    pub status: JobStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// El `.eml` escrito, cuando el trabajo terminó bien.
    pub file: Option<String>,
    pub history: Vec<Transition>,
}
// ANCHOR_END: status

/// Los contadores de la lección, sin locks: cada uno es un entero atómico.
#[derive(Debug, Default)]
pub struct Counters {
    pub enqueued: AtomicU64,
    pub attempts: AtomicU64,
    pub sent: AtomicU64,
    pub retries: AtomicU64,
    pub dead: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Los registros de los trabajos, en orden de llegada.
#[derive(Debug, Default)]
pub struct JobStore {
    records: Mutex<Vec<JobRecord>>,
    pub counters: Counters,
    pub changes: Changes,
}

impl JobStore {
    /// Un trabajo recién encolado: `pending`, sin intentos.
    pub fn insert(&self, id: &str, to: &str, subject: &str) {
        let record = JobRecord {
            id: id.to_owned(),
            to: to.to_owned(),
            subject: subject.to_owned(),
            status: JobStatus::Pending,
            attempts: 0,
            last_error: None,
            file: None,
            history: vec![Transition {
                status: JobStatus::Pending,
                attempt: 0,
                at: now(),
                error: None,
            }],
        };
        {
            let mut records = self.lock();
            if records.len() >= KEEP_RECORDS {
                if let Some(oldest) = records.iter().position(|r| r.status.is_final()) {
                    records.remove(oldest);
                }
            }
            records.push(record);
        }
        Counters::add(&self.counters.enqueued);
        self.changes.bump();
    }

    /// Un trabajo que el worker tomó de la cola sin que este proceso lo encolara: con Redis, uno
    /// que quedó pendiente antes de un reinicio. Lo registramos para que `GET /jobs/{id}` lo vea.
    pub fn adopt(&self, id: &str, to: &str, subject: &str) {
        let mut records = self.lock();
        if records.iter().any(|r| r.id == id) {
            return;
        }
        records.push(JobRecord {
            id: id.to_owned(),
            to: to.to_owned(),
            subject: subject.to_owned(),
            status: JobStatus::Pending,
            attempts: 0,
            last_error: None,
            file: None,
            history: Vec::new(),
        });
    }

    /// Anota un cambio de estado (y, si lo hay, el error o el archivo escrito).
    pub fn transition(
        &self,
        id: &str,
        status: JobStatus,
        attempt: u32,
        error: Option<String>,
        file: Option<String>,
    ) {
        {
            let mut records = self.lock();
            let Some(record) = records.iter_mut().find(|r| r.id == id) else {
                return;
            };
            record.status = status;
            record.attempts = record.attempts.max(attempt);
            if error.is_some() {
                record.last_error = error.clone();
            }
            if file.is_some() {
                record.file = file;
            }
            record.history.push(Transition {
                status,
                attempt,
                at: now(),
                error,
            });
        }
        self.changes.bump();
    }

    pub fn get(&self, id: &str) -> Option<JobRecord> {
        self.lock().iter().find(|r| r.id == id).cloned()
    }

    /// Cuántos trabajos hay en cada estado.
    pub fn counts(&self) -> StatusCounts {
        let mut counts = StatusCounts::default();
        for record in self.lock().iter() {
            *match record.status {
                JobStatus::Pending => &mut counts.pending,
                JobStatus::Running => &mut counts.running,
                JobStatus::Failed => &mut counts.failed,
                JobStatus::Done => &mut counts.done,
                JobStatus::Dead => &mut counts.dead,
            } += 1;
        }
        counts
    }

    fn lock(&self) -> MutexGuard<'_, Vec<JobRecord>> {
        self.records.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct StatusCounts {
    pub pending: u64,
    pub running: u64,
    pub failed: u64,
    pub done: u64,
    pub dead: u64,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

// ANCHOR: status_route
#[derive(Deserialize)]
pub struct WaitQuery {
    /// `?wait=1`: no contestes hasta que el trabajo exista y termine (`done` o `dead`), o 10 s.
    wait: Option<u8>,
}

/// `GET /jobs/{id}`: el estado y la historia de un trabajo; 404 si no existe.
pub async fn job(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<WaitQuery>,
) -> Result<Json<JobRecord>, (StatusCode, &'static str)> {
    let store = &state.store;
    if query.wait == Some(1) {
        // Un id que aún no conocemos puede ser de un trabajo que otro proceso encoló en Redis.
        let finished = || {
            store
                .get(&id)
                .is_some_and(|record| record.status.is_final())
        };
        store.changes.wait_until(LONGEST_WAIT, finished).await;
    }
    store
        .get(&id)
        .map(Json)
        .ok_or((StatusCode::NOT_FOUND, "no hay ningún trabajo con ese id"))
}
// ANCHOR_END: status_route

// ANCHOR: stats
#[derive(Serialize)]
pub struct Stats {
    backend: &'static str,
    enqueued: u64,
    attempts: u64,
    sent: u64,
    retries: u64,
    dead: u64,
    schedule_runs: u64,
    by_status: StatusCounts,
}

/// `GET /stats`: los contadores. En producción irían a Prometheus (`/metrics`).
pub async fn stats(State(state): State<AppState>) -> Json<Stats> {
    let counters = &state.store.counters;
    let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    Json(Stats {
        backend: state.queue.backend_name(),
        enqueued: read(&counters.enqueued),
        attempts: read(&counters.attempts),
        sent: read(&counters.sent),
        retries: read(&counters.retries),
        dead: read(&counters.dead),
        schedule_runs: state.schedule.runs(),
        by_status: state.store.counts(),
    })
}
// ANCHOR_END: stats
