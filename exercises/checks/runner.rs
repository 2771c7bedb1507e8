//! Runs one check so that nothing it does can stop the others: its own thread and Tokio runtime,
//! a deadline on the wall clock, and panics (a `todo!()` in the student's code, in a handler or
//! in a spawned task) turned into a readable failure instead of a crash.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use futures_util::FutureExt;

use super::registry::{Check, Env, Failure};

/// Extra time, past the check's own timeout, before the runner stops waiting for its thread
/// (a body stuck in a blocking loop never returns; the thread is then left behind).
const GRACE: Duration = Duration::from_secs(2);

/// What a check whose own body panicked reports, before [`explain_panic`] says why.
const INTERRUPTED: &str = "la comprobación se interrumpió";

/// Every check thread's name starts with this, so the panic hook knows whose panic it saw.
const THREAD_PREFIX: &str = "check ";

/// The result of one check.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub result: Result<(), Failure>,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }
}

/// Runs `check` against `env` and waits for it, never longer than its timeout (plus a grace).
pub fn run(check: &Check, env: &Env) -> Outcome {
    install_panic_hook();
    let started = Instant::now();
    let thread_name = format!("{THREAD_PREFIX}{}", check.name());
    forget_panic(&thread_name);
    let (tx, rx) = mpsc::channel();
    let body = check.run;
    let timeout = check.timeout;
    let env = env.clone();
    let runtime_name = thread_name.clone();
    let spawned = std::thread::Builder::new()
        .name(thread_name.clone())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(runtime_name)
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = tx.send(Err(Failure::new(format!(
                        "no se pudo crear el runtime de Tokio: {error}"
                    ))));
                    return;
                }
            };
            let result = runtime.block_on(async move {
                let body = AssertUnwindSafe(body(env)).catch_unwind();
                match tokio::time::timeout(timeout, body).await {
                    Ok(Ok(result)) => result,
                    Ok(Err(_panic)) => Err(Failure::new(INTERRUPTED)),
                    Err(_) => Err(timed_out(timeout)),
                }
            });
            let _ = tx.send(result);
            // Whatever the code under test left running (servers, workers) stops here.
            runtime.shutdown_timeout(Duration::from_millis(500));
        });
    let result = match spawned {
        Err(error) => Err(Failure::new(format!("no se pudo lanzar la comprobación: {error}"))),
        Ok(_) => match rx.recv_timeout(timeout + GRACE) {
            Ok(result) => result,
            Err(_) => Err(timed_out(timeout).hint(
                "tu código bloquea el hilo: un bucle sin `.await`, `std::thread::sleep` en código async, \
                 o un `std::sync::Mutex` que se bloquea dos veces (por ejemplo, llamar a una función que \
                 lo toma mientras ya lo tienes tomado). Usa `tokio::time::sleep`, suelta el candado antes \
                 de llamar a otra función que lo use y no hagas trabajo pesado dentro de un handler",
            )),
        },
    };
    let result = result.map_err(|failure| explain_panic(&thread_name, failure));
    Outcome {
        result,
        elapsed: started.elapsed(),
    }
}

fn timed_out(timeout: Duration) -> Failure {
    Failure::new(format!(
        "la comprobación no terminó en {} s",
        timeout.as_secs_f32()
    ))
    .hint("¿Queda un `todo!()` sin resolver, o una espera que nunca termina (un mensaje que nunca envías)?")
}

/// If the code under test panicked during this check, that is the real reason it failed: say
/// so first (a `todo!()` reads as "sin implementar todavía").
fn explain_panic(thread_name: &str, failure: Failure) -> Failure {
    let Some(message) = take_panic(thread_name) else {
        return failure;
    };
    let unsolved = message.starts_with("not yet implemented");
    let what = match message.strip_prefix("not yet implemented") {
        Some(rest) => match rest.trim_start_matches(':').trim() {
            "" => "tu código llegó a un todo!() sin resolver".to_owned(),
            rest => format!("tu código llegó a un todo!() sin resolver: «{rest}»"),
        },
        None => format!("el código entró en pánico: «{message}»"),
    };
    let mut explained = Failure::new(what);
    explained.expected = failure.expected;
    // "Se interrumpió" says nothing the panic does not say better.
    explained.got = failure
        .got
        .or((failure.what != INTERRUPTED).then_some(failure.what));
    explained.hint = if unsolved {
        Some(
            "resuelve ese todo!(): es lo siguiente que le falta a tu código (el fichero y la línea \
             van entre paréntesis)"
                .into(),
        )
    } else {
        failure
            .hint
            .or_else(|| Some("lee el mensaje del pánico: dice qué línea y qué caso fallan".into()))
    };
    explained
}

/// The first panic seen on each check's threads, by thread name.
fn panics() -> &'static Mutex<HashMap<String, String>> {
    static PANICS: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    PANICS.get_or_init(Default::default)
}

/// Forgets the panic recorded on the current check thread: for a helper that caught a panic of
/// its own (an insta assertion) and turned it into a [`Failure`] already.
pub fn forget_current_panic() {
    if let Some(name) = std::thread::current().name() {
        forget_panic(name);
    }
}

fn forget_panic(thread_name: &str) {
    if let Ok(mut panics) = panics().lock() {
        panics.remove(thread_name);
    }
}

fn take_panic(thread_name: &str) -> Option<String> {
    panics().lock().ok()?.remove(thread_name)
}

/// Installs, once, a panic hook that records panics on check threads (instead of printing a
/// backtrace in the middle of the report) and leaves every other thread's panics as they were.
fn install_panic_hook() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info: &PanicHookInfo<'_>| {
            let thread = std::thread::current();
            match thread.name().filter(|name| name.starts_with(THREAD_PREFIX)) {
                Some(name) => {
                    let message = panic_message(info);
                    if let Ok(mut panics) = panics().lock() {
                        panics.entry(name.to_owned()).or_insert(message);
                    }
                }
                None => previous(info),
            }
        }));
    });
}

fn panic_message(info: &PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let text = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(sin mensaje)".to_owned());
    match info.location() {
        Some(location) => format!("{text} ({}:{})", location.file(), location.line()),
        None => text,
    }
}
