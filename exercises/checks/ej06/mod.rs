//! Exercise 6: black-box checks of a running final project, over the network.
//!
//! `grade --project http://HOST:PORT --admin-user U --admin-password P [--outbox DIR]
//! [--jwt-secret S] [--command "…"]` runs these against any server that follows
//! `../shared/spec/chat-protocol.md`, whatever language it is written in. They speak only HTTP,
//! WebSocket and SSE, bound every wait, and create their own users and rooms with random names,
//! so a live class server can be graded without disturbing it. Each body reads `env.project`
//! and fails with a Spanish explanation when there is none.
//!
//! Criteria follow the seed's "Criterios de Evaluación": a server that lacks one feature of the
//! contract loses the points of that feature's criterion, and the failure names the feature.
//!
//! The two checks of [`process`] (graceful shutdown, restart) need to start and stop the
//! server themselves: they run only when `command` is set, and otherwise return
//! [`Failure::not_checked`](crate::checks::Failure::not_checked). With `command`, the
//! grader runs the other checks against a server it starts with
//! [`process::ServerProcess::start`], stops it, and then runs the checks for which
//! [`needs_process`] is true (each starts and stops its own).

mod auth;
mod chat;
pub mod client;
mod dashboard;
mod jobs;
mod ops;
pub mod process;
mod quality;

use std::time::Duration;

use super::registry::{Block, Check, Env};

// Núcleo: the seed's "Funcionalidades Core".
pub const WEBSOCKETS: &str = "WebSockets funcionando correctamente";
pub const JOBS: &str = "Background tasks procesando trabajos";
pub const SSE: &str = "Server-Sent Events en tiempo real";
pub const AUTH: &str = "Integración con autenticación";
// Calidad: "Calidad Técnica".
pub const CONNECTIONS: &str = "Manejo apropiado de conexiones";
pub const ERRORS: &str = "Error handling y recovery";
pub const PERFORMANCE: &str = "Performance y límites";
// Integración.
pub const EARLIER_WEEKS: &str = "Uso de conocimientos de semanas anteriores";
pub const DEPLOYMENT: &str = "Deployment funcional";

fn check(
    block: Block,
    criterion: &'static str,
    points: u32,
    title: &'static str,
    timeout_secs: u64,
    run: fn(Env) -> super::registry::CheckFuture,
) -> Check {
    Check {
        exercise: 6,
        block,
        criterion,
        points,
        title,
        timeout: Duration::from_secs(timeout_secs),
        run,
    }
}

/// Whether `check` starts the server itself (only with `command`; see the module docs).
pub fn needs_process(check: &Check) -> bool {
    check.exercise == 6 && check.criterion == DEPLOYMENT
}

/// The network checks of the final project; each needs `env.project`.
pub fn checks() -> Vec<Check> {
    use Block::{Calidad, Integracion, Nucleo};
    vec![
        // Núcleo · WebSockets
        check(Nucleo, WEBSOCKETS, 4, chat::BROADCAST, 10, |env| {
            Box::pin(chat::broadcast(env))
        }),
        check(Nucleo, WEBSOCKETS, 3, chat::HISTORY, 10, |env| {
            Box::pin(chat::history(env))
        }),
        check(Nucleo, WEBSOCKETS, 3, chat::IDEMPOTENT, 10, |env| {
            Box::pin(chat::idempotent(env))
        }),
        check(Nucleo, WEBSOCKETS, 3, chat::PRESENCE, 10, |env| {
            Box::pin(chat::presence(env))
        }),
        check(Nucleo, WEBSOCKETS, 2, chat::TYPING, 10, |env| {
            Box::pin(chat::typing(env))
        }),
        check(Nucleo, WEBSOCKETS, 3, chat::PRIVATE, 10, |env| {
            Box::pin(chat::private_rooms(env))
        }),
        check(Nucleo, WEBSOCKETS, 2, chat::ROOMS, 10, |env| {
            Box::pin(chat::many_rooms(env))
        }),
        // Núcleo · background tasks
        check(Nucleo, JOBS, 4, jobs::NOTIFICATION, 10, |env| {
            Box::pin(jobs::notification(env))
        }),
        check(Nucleo, JOBS, 5, jobs::EMAIL, 20, |env| {
            Box::pin(jobs::email(env))
        }),
        check(Nucleo, JOBS, 3, jobs::WINDOW, 25, |env| {
            Box::pin(jobs::window(env))
        }),
        check(Nucleo, JOBS, 3, jobs::ADMIN_JOBS, 20, |env| {
            Box::pin(jobs::admin_jobs(env))
        }),
        // Núcleo · SSE
        check(Nucleo, SSE, 4, dashboard::STATS, 10, |env| {
            Box::pin(dashboard::stats(env))
        }),
        check(Nucleo, SSE, 5, dashboard::ACTIVITY, 10, |env| {
            Box::pin(dashboard::activity(env))
        }),
        check(Nucleo, SSE, 4, dashboard::RESUME, 15, |env| {
            Box::pin(dashboard::resume(env))
        }),
        check(Nucleo, SSE, 2, dashboard::PAGE, 5, |env| {
            Box::pin(dashboard::page(env))
        }),
        // Núcleo · autenticación
        check(Nucleo, AUTH, 5, auth::ACCOUNTS, 10, |env| {
            Box::pin(auth::accounts(env))
        }),
        check(Nucleo, AUTH, 4, auth::WS_TOKEN, 10, |env| {
            Box::pin(auth::ws_token(env))
        }),
        check(Nucleo, AUTH, 3, auth::LOGIN_LIMIT, 15, |env| {
            Box::pin(auth::login_limit(env))
        }),
        check(Nucleo, AUTH, 3, auth::ADMIN_ONLY, 10, |env| {
            Box::pin(auth::admin_only(env))
        }),
        // Calidad · conexiones
        check(Calidad, CONNECTIONS, 3, quality::TOO_BIG, 10, |env| {
            Box::pin(quality::too_big(env))
        }),
        check(Calidad, CONNECTIONS, 3, quality::SLOW_CONSUMER, 30, |env| {
            Box::pin(quality::slow_consumer(env))
        }),
        check(Calidad, CONNECTIONS, 2, quality::ORIGIN, 10, |env| {
            Box::pin(quality::origin(env))
        }),
        // Calidad · errores y recuperación
        check(Calidad, ERRORS, 3, quality::SINCE, 10, |env| {
            Box::pin(quality::since(env))
        }),
        check(Calidad, ERRORS, 3, quality::BAD_FRAMES, 10, |env| {
            Box::pin(quality::bad_frames(env))
        }),
        check(Calidad, ERRORS, 2, quality::HTTP_ERRORS, 10, |env| {
            Box::pin(quality::http_errors(env))
        }),
        // Calidad · rendimiento y límites
        check(Calidad, PERFORMANCE, 3, quality::RATE_LIMIT, 10, |env| {
            Box::pin(quality::rate_limit(env))
        }),
        check(Calidad, PERFORMANCE, 3, quality::CACHE, 10, |env| {
            Box::pin(quality::cache(env))
        }),
        check(Calidad, PERFORMANCE, 2, quality::FAN_OUT, 15, |env| {
            Box::pin(quality::fan_out(env))
        }),
        // Integración · semanas anteriores
        check(Integracion, EARLIER_WEEKS, 2, ops::HEALTH, 5, |env| {
            Box::pin(ops::health(env))
        }),
        check(Integracion, EARLIER_WEEKS, 3, ops::METRICS, 10, |env| {
            Box::pin(ops::metrics(env))
        }),
        check(Integracion, EARLIER_WEEKS, 3, ops::DOCS, 10, |env| {
            Box::pin(ops::docs(env))
        }),
        // Integración · despliegue (arrancan el servidor: solo con `command`)
        check(Integracion, DEPLOYMENT, 3, process::SHUTDOWN, 60, |env| {
            Box::pin(process::shutdown(env))
        }),
        check(Integracion, DEPLOYMENT, 3, process::RESTART, 90, |env| {
            Box::pin(process::restart(env))
        }),
    ]
}
