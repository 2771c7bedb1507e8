//! Paso 4 · Una tarea periódica: cada `every`, un informe de cómo va la cola.
//!
//! Es un worker más de apalis, en el mismo `Monitor` que el de e-mails (así se para con él). Su
//! "cola" es un `tokio::time::interval` convertido en stream: un tick, un trabajo. Un tick que
//! llega tarde se salta, no se acumula: un informe vale por todos los que se perdieron.
//!
//! Con varios procesos, cada uno tendría su tick; el proyecto final deja que solo uno trabaje en
//! cada periodo con un *lease* en Redis (`project/src/jobs/schedule.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use apalis::prelude::{BoxDynError, Data};
use axum::Json;
use axum::extract::{Query, State};
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::AppState;
use super::status::{Changes, JobStore, LONGEST_WAIT, StatusCounts};

/// Un tick del reloj: el "trabajo" de la tarea periódica.
#[derive(Debug, Clone)]
pub struct Tick;

// ANCHOR: schedule
/// Un tick ahora y luego uno cada `every`, como backend de apalis.
pub fn ticks(every: Duration) -> BoxStream<'static, Result<Tick, std::io::Error>> {
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    futures_util::stream::unfold(interval, |mut interval| async move {
        interval.tick().await;
        Some((Ok(Tick), interval))
    })
    .boxed()
}

/// El handler de cada tick: cuenta los trabajos por estado y lo deja en el log y en `/schedule`.
pub async fn report(_tick: Tick, schedule: Data<Arc<Schedule>>) -> Result<(), BoxDynError> {
    let run = schedule.runs.load(Ordering::Relaxed) + 1;
    let span = tracing::info_span!("job", kind = "informe", run);
    async {
        let counts = schedule.store.counts();
        tracing::info!(?counts, "informe periódico");
        let report = Report {
            run,
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            counts,
        };
        *schedule.last.lock().unwrap_or_else(PoisonError::into_inner) = Some(report);
        schedule.runs.store(run, Ordering::Relaxed);
        schedule.changes.bump();
    }
    .instrument(span)
    .await;
    Ok(())
}
// ANCHOR_END: schedule

/// Lo que deja cada informe.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub run: u64,
    pub at: String,
    pub counts: StatusCounts,
}

/// El estado de la tarea periódica.
pub struct Schedule {
    pub every: Duration,
    store: Arc<JobStore>,
    runs: AtomicU64,
    last: Mutex<Option<Report>>,
    changes: Changes,
}

impl Schedule {
    pub fn new(every: Duration, store: Arc<JobStore>) -> Self {
        Self {
            every,
            store,
            runs: AtomicU64::new(0),
            last: Mutex::new(None),
            changes: Changes::default(),
        }
    }

    pub fn runs(&self) -> u64 {
        self.runs.load(Ordering::Relaxed)
    }
}

#[derive(Deserialize)]
pub struct AfterQuery {
    /// `?after=N`: espera (hasta 10 s) a que haya más de N ejecuciones.
    after: Option<u64>,
}

#[derive(Serialize)]
pub struct ScheduleView {
    every_ms: u128,
    runs: u64,
    last: Option<Report>,
}

/// `GET /schedule`: cada cuánto corre, cuántas veces ha corrido y su último informe.
pub async fn view(
    State(state): State<AppState>,
    Query(query): Query<AfterQuery>,
) -> Json<ScheduleView> {
    let schedule = &state.schedule;
    if let Some(after) = query.after {
        schedule
            .changes
            .wait_until(LONGEST_WAIT, || schedule.runs() > after)
            .await;
    }
    let last = schedule
        .last
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    Json(ScheduleView {
        every_ms: schedule.every.as_millis(),
        runs: schedule.runs(),
        last,
    })
}
