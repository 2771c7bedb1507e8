//! Práctica 38 · Aplicación integrada
//!
//! Ejecuta con:   cargo run --example 38_integrated_app
//! Abre:          http://localhost:3038 (el chat) y http://localhost:3039/leccion (esta explicación)
//! Verás:         el proyecto final entero, montado desde su API pública y sin copiar una línea:
//!                el chat por WebSocket en `/`, las menciones que llegan como e-mail (`.eml` en
//!                la carpeta outbox) gracias a un trabajo en segundo plano, el panel en vivo por
//!                SSE en `/dashboard` y la documentación de la API en `/docs`. La página
//!                `/leccion` explica cada pieza, dice en qué archivo vive y enseña el estado del
//!                chat en vivo.
//! En FastAPI:    la `app = FastAPI()` de la semana con sus `include_router(...)`, un `lifespan`
//!                que arranca los workers y `uvicorn main:app` (semana 10, versión Python)
//! En el proyecto final: project/src/main.rs, project/src/app.rs
//!
//! Esta lección no escribe un chat: ensambla el de `project/` (el crate `chat`). Los pasos:
//! 1. la configuración (`chat::Config`, project/src/config.rs), con dos ajustes de clase;
//! 2. el montaje (`chat::App::build`, project/src/app.rs): backends, caché, panel, trabajos,
//!    la cuenta de administración y la sala `general`;
//! 3. servir (`App::serve(listener, shutdown)`): el router, los workers y el apagado ordenado;
//! 4. la página de la lección, en su propio puerto (`explain.rs`): `App::serve` monta su propio
//!    router y no admite rutas de fuera, así que la explicación no puede vivir en el mismo puerto.

pub mod explain;

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// El puerto del chat en clase; la página de la lección usa el siguiente (3039).
pub const CHAT_PORT: u16 = 3038;
/// La contraseña de `admin` en clase, cuando no defines `CHAT_ADMIN_PASSWORD`. Fija a propósito
/// para que toda la clase entre al panel con la misma; en producción, nunca.
pub const CLASS_ADMIN_PASSWORD: &str = "semana10-clase";

// ANCHOR: config
/// Paso 1 · La configuración: la misma que lee `cargo run -p chat` (cada flag tiene su variable
/// de entorno: `REDIS_URL`, `CHAT_OUTBOX`, `JWT_SECRET`…), con dos ajustes de clase: la dirección
/// de la lección y una contraseña de administración conocida.
pub fn lesson_config(addr: SocketAddr) -> chat::Config {
    let mut config = chat::Config::from_env();
    config.addr = addr;
    if config.admin_password.is_none() {
        config.admin_password = Some(CLASS_ADMIN_PASSWORD.to_owned());
    }
    config
}
// ANCHOR_END: config

/// Lo que sale del montaje: el chat listo para servir y la página que lo explica.
pub struct Assembled {
    pub chat: chat::App,
    pub page: Router,
}

// ANCHOR: assembly
/// Paso 2 · Montar. `App::build` hace lo que `project/src/main.rs` hace al arrancar:
/// - conecta los backends: todo en memoria, o en Redis con `REDIS_URL` (project/src/backend/);
/// - prepara la caché de `GET /rooms` (project/src/cache/mod.rs), el panel en vivo
///   (project/src/dashboard/mod.rs) y la cola de trabajos con su mailer (project/src/jobs/mod.rs);
/// - crea la cuenta de administración y la sala `general` si no existen (project/src/app.rs).
///
/// La página de la lección recibe una copia del estado del chat (`App::state`) para enseñar sus
/// cifras en vivo: es el mismo estado que usan los handlers del chat.
pub async fn app(config: chat::Config, chat_url: &str) -> anyhow::Result<Assembled> {
    let explanation = explain::Explanation::new(&config, chat_url);
    let chat = chat::App::build(config).await?;
    let page = explain::router(chat.state().clone(), explanation);
    Ok(Assembled { chat, page })
}
// ANCHOR_END: assembly

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    chat::telemetry::init();
    let addr = lessons::listen_addr(CHAT_PORT)?;
    let config = lesson_config(addr);
    // ANCHOR: serve
    // Paso 3 · Servir. Primero los dos puertos: el del chat y, al lado, el de la explicación.
    let chat_listener = bind(addr).await?;
    let chat_port = chat_listener.local_addr()?.port();
    let page_port = chat_port
        .checked_add(1)
        .context("el puerto del chat no puede ser el último (65535)")?;
    let page_listener = bind(SocketAddr::new(addr.ip(), page_port)).await?;
    let chat_url = format!("http://localhost:{chat_port}");
    let outbox = explain::absolute(&config.jobs.outbox);
    let (admin, password) = (config.admin_username.clone(), config.admin_password.clone());
    let backend = explain::backend_name(&config);

    let assembled = app(config, &chat_url).await?;

    println!("Práctica 38 · Aplicación integrada ({backend})");
    println!(
        "El chat (el proyecto final):   {chat_url}   (panel: {chat_url}/dashboard, API: {chat_url}/docs)"
    );
    println!("La explicación de la lección:  http://localhost:{page_port}/leccion");
    if let Some(password) = password {
        println!("Administración: usuario «{admin}», contraseña «{password}»");
    }
    println!(
        "Los e-mails de las menciones se escriben en {}",
        outbox.display()
    );
    println!("Ctrl-C para parar.");

    // Un solo Ctrl-C para los dos servidores: el chat cierra sus WebSockets con 1001 y espera a
    // sus tareas; la página simplemente termina.
    let stop = CancellationToken::new();
    let on_ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            println!("\nHasta luego.");
            on_ctrl_c.cancel();
        }
    });
    let chat = assembled
        .chat
        .serve(chat_listener, stop.clone().cancelled_owned());
    let page = lessons::serve_on(page_listener, assembled.page, stop.cancelled_owned());
    tokio::try_join!(chat, page)?;
    // ANCHOR_END: serve
    Ok(())
}

/// Escucha en `addr`, o explica qué hacer si el puerto está ocupado.
async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!(
            "no se pudo escuchar en {addr}. ¿Hay otra lección o un chat usando el puerto? \
             Ciérralo o elige otro con LESSON_ADDR=127.0.0.1:PUERTO (la explicación usa el siguiente)"
        )
    })
}

// Dónde vive esto en el proyecto final:
// - El binario `chat` hace este mismo montaje: project/src/main.rs (configuración, `App::build`,
//   `App::serve` con Ctrl-C o SIGTERM).
// - El montaje en sí, el estado compartido y el router: project/src/app.rs.
// - Cada pieza: project/src/ws/connection.rs y project/src/ws/hub.rs (el chat),
//   project/src/mentions.rs y project/src/jobs/worker.rs (menciones y e-mails),
//   project/src/dashboard/sse.rs (el panel), project/src/cache/mod.rs (la caché),
//   project/src/openapi.rs (`/docs`).
