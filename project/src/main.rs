//! The `chat` binary: read the configuration, build the app, serve until Ctrl-C or SIGTERM.

use anyhow::Context;
use chat::{App, Config};
use clap::Parser;
use tokio::net::TcpListener;

// ANCHOR: main
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    chat::telemetry::init();
    let config = Config::parse();
    let addr = config.addr;
    let backend = if config.redis_url.is_some() {
        "redis"
    } else {
        "memoria (un solo nodo)"
    };
    let admin = config.admin_username.clone();
    let app = App::build(config).await?;
    if let Some(password) = app.generated_admin_password() {
        // Printed once, on purpose: there is no other way to learn it.
        tracing::warn!(
            "cuenta de administración creada: usuario «{admin}», contraseña «{password}» (define CHAT_ADMIN_PASSWORD para fijarla)"
        );
    }
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("no se pudo escuchar en {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!(
        backend,
        "chat escuchando en http://{local} (abre http://localhost:{} en el navegador)",
        local.port()
    );
    app.serve(listener, shutdown_signal()).await
}
// ANCHOR_END: main

// ANCHOR: shutdown_signal
/// Resolves on Ctrl-C or, on Unix, SIGTERM (what `docker stop` and Kubernetes send).
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "could not listen for Ctrl-C");
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
                tracing::error!(%error, "could not listen for SIGTERM");
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
