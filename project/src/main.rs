//! The `chat` binary: read and check the configuration, listen, build the app, serve until
//! Ctrl-C or SIGTERM.
//!
//! An expected failure (a setting that means nothing, a port in use, a Redis that refuses)
//! prints one Spanish line that names the setting and says what to do, and exits with a non-zero
//! code: no backtrace, no English error chain ([`chat::error::StartupError`]).

use std::process::ExitCode;

use chat::error::StartupError;
use chat::{App, Config};
use tokio::net::TcpListener;

// ANCHOR: main
#[tokio::main]
async fn main() -> ExitCode {
    chat::telemetry::init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

async fn run() -> Result<(), StartupError> {
    let config = Config::from_args()?;
    let addr = config.addr;
    // The port first: if it is taken, nothing has been created yet (no admin, no password).
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Listen { addr, source })?;
    let backend = if config.redis_url.is_some() {
        "redis"
    } else {
        "memoria (un solo nodo)"
    };
    let admin = config.admin_username.clone();
    let app = App::build(config).await.map_err(StartupError::Build)?;
    if let Some(password) = app.generated_admin_password() {
        // Printed once, on purpose: there is no other way to learn it.
        tracing::warn!(
            "cuenta de administración creada: usuario «{admin}», contraseña «{password}» (define CHAT_ADMIN_PASSWORD para fijarla)"
        );
    }
    let local = listener
        .local_addr()
        .map_err(|source| StartupError::Listen { addr, source })?;
    tracing::info!(
        backend,
        "chat escuchando en http://{local} (abre http://localhost:{} en el navegador)",
        local.port()
    );
    app.serve(listener, shutdown_signal())
        .await
        .map_err(StartupError::Serve)
}
// ANCHOR_END: main

// ANCHOR: shutdown_signal
/// Resolves on Ctrl-C or, on Unix, SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "no se puede escuchar Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "no se puede escuchar SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
// ANCHOR_END: shutdown_signal
