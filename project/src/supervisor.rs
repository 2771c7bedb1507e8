//! Keeps the server's background tasks alive.
//!
//! A tokio task that panics dies alone: the runtime and the rest of the server carry on, and
//! nothing notices that, say, the pub/sub listener is gone and this node delivers no more
//! events. [`supervise`] runs a task and, whenever it panics or ends before shutdown, logs it
//! as an error and starts it again after a wait that grows with each failure in a row.

use std::any::Any;
use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The wait before the first restart; it doubles after each failure in a row, up to
/// [`MAX_BACKOFF`], so a task that fails at once every time does not spin.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A run that lasted this long was healthy: after it the wait starts again from [`MIN_BACKOFF`].
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// Runs the task that `start` makes until `shutdown` is cancelled, making and running a new one
/// each time it panics or returns while the server is still running. `start` is called again
/// for every restart, so it decides how to resume (a listener resubscribes and tells its users
/// they may have missed events). Each task must itself return soon after `shutdown`.
pub(crate) async fn supervise<F, Fut>(name: &'static str, shutdown: CancellationToken, mut start: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = MIN_BACKOFF;
    loop {
        let started = Instant::now();
        // Its own task, so that a panic is caught by the runtime and seen here as an error.
        let outcome = tokio::spawn(start()).await;
        if shutdown.is_cancelled() {
            return;
        }
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

    #[test]
    fn the_panic_message_is_kept_when_it_is_text() {
        assert_eq!(panic_message(&"estático"), "estático");
        assert_eq!(panic_message(&String::from("formateado")), "formateado");
        assert_eq!(panic_message(&42_u8), "(sin mensaje)");
    }
}
