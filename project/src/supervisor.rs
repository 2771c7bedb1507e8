//! Keeps the server's background tasks alive.
//!
//! A tokio task that panics dies alone: the runtime and the rest of the server carry on, and
//! nothing notices that, say, the pub/sub listener is gone and this node delivers no more
//! events. [`Supervisor::run`] runs a task and, whenever it panics or ends before shutdown,
//! logs it as an error and starts it again after a wait that grows with each failure in a row.
//!
//! Each server has one [`Supervisor`], handed to every module that starts tasks, that remembers
//! how its tasks are doing: a task that failed [`FAILURES_NOT_READY`] times in a row without a
//! steady run in between makes `/ready` answer 503 naming it, until a run of it lasts a few
//! seconds.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The wait before the first restart; it doubles after each failure in a row, up to
/// [`MAX_BACKOFF`], so a task that fails at once every time does not spin.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A run that lasted this long was healthy: after it the wait starts again from [`MIN_BACKOFF`].
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// Failures in a row after which `/ready` names the task: one restart is routine (a poison
/// input, a dropped connection), three in a row mean it cannot do its work.
pub const FAILURES_NOT_READY: u32 = 3;
/// A restarted run that lasts this long counts as working again for `/ready` (the backoff
/// still waits for [`HEALTHY_RUN`] before it starts again from [`MIN_BACKOFF`]).
const STEADY_RUN: Duration = Duration::from_secs(2);

/// How one supervised task is doing: running, or waiting to be started again, after
/// `failures` failures in a row.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TaskState {
    failures: u32,
    /// Every failure since start-up (runs that panicked or ended early).
    restarts: u64,
}

/// The supervised tasks of one server: how each is doing (read by `/ready`), and a test hook
/// that makes one panic. Cheap to clone; every clone is the same supervisor.
#[derive(Clone, Default)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    tasks: Mutex<BTreeMap<&'static str, TaskState>>,
    /// Panics asked for by [`Supervisor::inject_panic`], per task name.
    faults: Mutex<HashMap<String, u32>>,
    /// Woken when a panic is asked for.
    faulted: Notify,
}

/// A `std` mutex: held only to read or change a small map, never across an `.await`.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Supervisor {
    /// A supervisor with no task yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs the task that `start` makes until `shutdown` is cancelled, making and running a new
    /// one each time it panics or returns while the server is still running. `start` is called
    /// again for every restart, so it decides how to resume (a listener resubscribes and tells
    /// its users they may have missed events). Each task must itself return soon after
    /// `shutdown`. Its failures in a row are kept for `/ready`.
    pub(crate) async fn run<F, Fut>(
        &self,
        name: &'static str,
        shutdown: CancellationToken,
        start: F,
    ) where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.register(name);
        run_supervised(self, name, shutdown, start).await;
    }

    /// Spawns [`Supervisor::run`] on `tasks`, so that shutdown waits for the supervised task.
    /// The task is known (to [`Supervisor::task_names`] and `/ready`) as soon as this returns.
    pub(crate) fn spawn<F, Fut>(
        &self,
        tasks: &TaskTracker,
        name: &'static str,
        shutdown: CancellationToken,
        start: F,
    ) where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.register(name);
        let supervisor = self.clone();
        tasks.spawn(async move { run_supervised(&supervisor, name, shutdown, start).await });
    }

    /// Starts keeping the record of `name`, with no failure yet.
    fn register(&self, name: &'static str) {
        lock(&self.inner.tasks).insert(
            name,
            TaskState {
                failures: 0,
                restarts: 0,
            },
        );
    }

    /// The tasks that keep `/ready` from answering 200, with the reason, by name.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        lock(&self.inner.tasks)
            .iter()
            .filter(|(_, state)| state.failures >= FAILURES_NOT_READY)
            .map(|(name, state)| {
                let reason = format!(
                    "falló {} veces seguidas; se sigue reiniciando",
                    state.failures
                );
                (*name, reason)
            })
            .collect()
    }

    /// The names of the tasks this supervisor runs.
    pub fn task_names(&self) -> Vec<&'static str> {
        lock(&self.inner.tasks).keys().copied().collect()
    }

    /// How many times `name` failed (and was started again) since start-up: 0 for a task this
    /// supervisor does not run.
    #[doc(hidden)]
    pub fn restarts(&self, name: &str) -> u64 {
        lock(&self.inner.tasks)
            .get(name)
            .map_or(0, |state| state.restarts)
    }

    /// Test hook: the next `times` runs of the task `name` panic (each as soon as it is
    /// running), as a bug in it would. Not reachable from any request; for integration tests,
    /// which cannot reach inside a task otherwise.
    #[doc(hidden)]
    pub fn inject_panic(&self, name: &str, times: u32) {
        *lock(&self.inner.faults).entry(name.to_owned()).or_default() += times;
        self.inner.faulted.notify_waiters();
    }

    /// Resolves when a panic was asked for `name` (and takes it).
    async fn fault(&self, name: &str) {
        loop {
            let asked = self.inner.faulted.notified();
            {
                let mut faults = lock(&self.inner.faults);
                if let Some(left) = faults.get_mut(name).filter(|left| **left > 0) {
                    *left -= 1;
                    return;
                }
            }
            asked.await;
        }
    }

    fn failed(&self, name: &'static str) {
        if let Some(state) = lock(&self.inner.tasks).get_mut(name) {
            state.failures += 1;
            state.restarts += 1;
        }
    }

    fn steady(&self, name: &'static str) {
        if let Some(state) = lock(&self.inner.tasks).get_mut(name) {
            state.failures = 0;
        }
    }
}

async fn run_supervised<F, Fut>(
    supervisor: &Supervisor,
    name: &'static str,
    shutdown: CancellationToken,
    mut start: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        let run = start();
        let faults = supervisor.clone();
        // Its own task, so that a panic is caught by the runtime and seen here as an error.
        let mut handle = tokio::spawn(async move {
            tokio::select! {
                () = run => {}
                () = faults.fault(name) => panic!("fallo provocado por una prueba en «{name}»"),
            }
        });
        let outcome = tokio::select! {
            outcome = &mut handle => outcome,
            () = tokio::time::sleep(STEADY_RUN) => {
                supervisor.steady(name);
                handle.await
            }
        };
        if shutdown.is_cancelled() {
            return;
        }
        supervisor.failed(name);
        match outcome {
            Ok(()) => tracing::error!(task = name, "la tarea terminó antes de tiempo; se reinicia"),
            Err(error) if error.is_panic() => tracing::error!(
                task = name,
                panic = panic_message(error.into_panic().as_ref()),
                "la tarea entró en pánico; se reinicia"
            ),
            Err(error) => tracing::error!(task = name, %error, "la tarea se detuvo; se reinicia"),
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = MIN_BACKOFF;
        }
        if shutdown
            .run_until_cancelled(tokio::time::sleep(backoff))
            .await
            .is_none()
        {
            return;
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// The text a panic was raised with, when it was a string (`panic!` with a message).
fn panic_message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(sin mensaje)")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::mpsc;

    use super::*;

    /// Runs `start` under a supervisor of its own.
    async fn supervise<F, Fut>(name: &'static str, shutdown: CancellationToken, start: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Supervisor::new().run(name, shutdown, start).await;
    }

    /// Starts a supervised task that reports each start on a channel, and fails on its first
    /// runs as `fail` says; the rest wait for shutdown.
    fn spawn_counted(
        fail: fn(usize),
        shutdown: &CancellationToken,
    ) -> (mpsc::UnboundedReceiver<usize>, tokio::task::JoinHandle<()>) {
        let (started, starts) = mpsc::unbounded_channel();
        let runs = Arc::new(AtomicUsize::new(0));
        let token = shutdown.clone();
        let supervisor = tokio::spawn(supervise("prueba", shutdown.clone(), move || {
            let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
            let (started, token) = (started.clone(), token.clone());
            async move {
                started.send(run).unwrap();
                fail(run);
                token.cancelled().await;
            }
        }));
        (starts, supervisor)
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_panics_is_started_again_after_a_wait() {
        let shutdown = CancellationToken::new();
        let (mut starts, supervisor) = spawn_counted(
            |run| {
                if run < 3 {
                    panic!("fallo número {run}");
                }
            },
            &shutdown,
        );

        let first = Instant::now();
        assert_eq!(starts.recv().await, Some(1));
        assert_eq!(starts.recv().await, Some(2));
        assert_eq!(starts.recv().await, Some(3));

        // Two waits in a row: 100 ms, then 200 ms.
        assert!(first.elapsed() >= MIN_BACKOFF * 3, "{:?}", first.elapsed());
        shutdown.cancel();
        supervisor.await.unwrap();
        assert_eq!(starts.recv().await, None, "started again after shutdown");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_the_task_and_the_supervisor_without_a_restart() {
        let shutdown = CancellationToken::new();
        let (mut starts, supervisor) = spawn_counted(|_| {}, &shutdown);
        assert_eq!(starts.recv().await, Some(1));

        shutdown.cancel();
        supervisor.await.unwrap();
        assert_eq!(starts.recv().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_that_returns_before_shutdown_is_started_again() {
        let shutdown = CancellationToken::new();
        let (started, mut starts) = mpsc::unbounded_channel();
        // Every run returns at once, as a loop that broke by mistake would.
        let supervisor = tokio::spawn(supervise("prueba", shutdown.clone(), move || {
            let started = started.clone();
            async move {
                let _ = started.send(());
            }
        }));
        for _ in 0..3 {
            assert_eq!(starts.recv().await, Some(()));
        }
        shutdown.cancel();
        supervisor.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn failures_in_a_row_fail_ready_until_a_run_is_steady() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new();
        let (started, mut starts) = mpsc::unbounded_channel();
        let runs = Arc::new(AtomicUsize::new(0));
        let token = shutdown.clone();
        let running = supervisor.clone();
        let task = tokio::spawn(async move {
            running
                .run("frágil", token.clone(), move || {
                    let run = runs.fetch_add(1, Ordering::SeqCst) + 1;
                    let (started, token) = (started.clone(), token.clone());
                    async move {
                        started.send(run).unwrap();
                        assert!(run > 3, "fallo número {run}");
                        token.cancelled().await;
                    }
                })
                .await;
        });
        for run in 1..=4 {
            assert_eq!(starts.recv().await, Some(run));
        }
        // The fourth run has started: three failures in a row are on record.
        let problems = supervisor.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].0, "frágil");
        assert!(problems[0].1.contains('3'), "{problems:?}");

        tokio::time::sleep(STEADY_RUN * 2).await;
        assert!(
            supervisor.problems().is_empty(),
            "{:?}",
            supervisor.problems()
        );
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_injected_panic_restarts_a_running_task_once() {
        let shutdown = CancellationToken::new();
        let supervisor = Supervisor::new();
        let (started, mut starts) = mpsc::unbounded_channel();
        let token = shutdown.clone();
        let running = supervisor.clone();
        let task = tokio::spawn(async move {
            running
                .run("sana", token.clone(), move || {
                    let (started, token) = (started.clone(), token.clone());
                    async move {
                        started.send(()).unwrap();
                        token.cancelled().await;
                    }
                })
                .await;
        });
        assert_eq!(starts.recv().await, Some(()));
        supervisor.inject_panic("sana", 1);
        assert_eq!(starts.recv().await, Some(()));
        assert_eq!(supervisor.restarts("sana"), 1);
        assert!(supervisor.problems().is_empty());
        assert_eq!(supervisor.task_names(), ["sana"]);
        shutdown.cancel();
        task.await.unwrap();
        assert_eq!(starts.recv().await, None);
    }

    #[test]
    fn the_panic_message_is_kept_when_it_is_text() {
        assert_eq!(panic_message(&"estático"), "estático");
        assert_eq!(panic_message(&String::from("formateado")), "formateado");
        assert_eq!(panic_message(&42_u8), "(sin mensaje)");
    }
}
