//! Lo que comparten las lecciones 35–38: los logs, la dirección donde escuchan, el arranque del
//! servidor y el marco HTML de sus páginas. Cada lección está en `lessons/examples/NN_*/`; aquí
//! solo vive la fontanería, para que cada ejemplo se lea de arriba abajo sin distracciones.

use std::net::SocketAddr;

use axum::Router;
use axum::response::Html;
use tokio::net::TcpListener;

/// Turns on the logs once per process (`RUST_LOG` overrides the default filter), so every lesson
/// shows what happens with the same format. Calling it twice is harmless.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

/// Where a lesson listens: `LESSON_ADDR` if set (`0.0.0.0:3035` to reach it from other machines
/// of the class), else `127.0.0.1:<default_port>`. Each practice has its own default port
/// (3035, 3036, …) so two lessons can run side by side.
pub fn listen_addr(default_port: u16) -> anyhow::Result<SocketAddr> {
    match std::env::var("LESSON_ADDR") {
        Ok(value) => value.parse().map_err(|_| {
            anyhow::anyhow!(
                "LESSON_ADDR={value:?} no es una dirección válida (ejemplo: 127.0.0.1:3035)"
            )
        }),
        Err(_) => Ok(SocketAddr::from(([127, 0, 0, 1], default_port))),
    }
}

/// Binds the lesson's address, prints the URL to open and serves `app` until Ctrl-C.
///
/// Binding is separate from building the router (`app()` in every lesson), so the tests can serve
/// the same router on port 0 with [`serve_on`].
pub async fn run(title: &str, default_port: u16, app: Router) -> anyhow::Result<()> {
    init_tracing();
    let addr = listen_addr(default_port)?;
    let listener = TcpListener::bind(addr).await.map_err(|error| {
        anyhow::anyhow!(
            "no se pudo escuchar en {addr}: {error}. ¿Hay otra lección usando el puerto? \
             Ciérrala o elige otro con LESSON_ADDR=127.0.0.1:PUERTO"
        )
    })?;
    let port = listener.local_addr()?.port();
    println!("{title}");
    println!("Abre http://localhost:{port} en el navegador (Ctrl-C para parar).");
    serve_on(listener, app, shutdown_signal()).await
}

/// Serves `app` on an already bound listener until `shutdown` resolves. `TCP_NODELAY` is set on
/// every connection: small WebSocket frames must not wait for the peer's delayed ACK (~40 ms).
pub async fn serve_on(
    listener: TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C; if the signal cannot be installed it never resolves (the lesson keeps
/// serving, and the terminal can still kill it).
async fn shutdown_signal() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    println!("\nHasta luego.");
}

/// The HTML frame shared by the lesson pages: a title, the body the lesson provides, and a
/// small stylesheet, all inline (no CDN: the pages work without Internet).
pub fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!doctype html>
<html lang="es">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<link rel="icon" href="data:,">
<style>{STYLE}</style>
</head>
<body>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>"#
    ))
}

const STYLE: &str = "
body { font-family: system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d232b; }
main { max-width: 60rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
section { background: #fff; border: 1px solid #d8dde4; border-radius: 8px; padding: 0.5rem 1rem 1rem; margin: 1rem 0; }
code, pre { font-family: ui-monospace, monospace; background: #eef1f5; border-radius: 4px; padding: 0 0.25rem; }
pre { padding: 0.5rem; overflow-x: auto; }
.log { height: 12rem; overflow-y: auto; background: #10151b; color: #d6e2ee; padding: 0.5rem; border-radius: 6px; font-family: ui-monospace, monospace; font-size: 0.9rem; }
button { padding: 0.35rem 0.8rem; margin: 0.2rem 0.2rem 0.2rem 0; }
input { padding: 0.3rem; }
.ok { color: #1a7f37; } .error { color: #cf222e; }
";
