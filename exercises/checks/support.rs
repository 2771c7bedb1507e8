//! Helpers the checks share: serve the code under test on 127.0.0.1 port 0, and talk to it with
//! real clients (HTTP, WebSocket, SSE), every wait bounded so a missing answer fails quickly.
//!
//! Exercise-specific helpers live in each exercise's check file; add here only what several
//! exercises use.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::registry::Failure;

/// How long a check waits for an answer that must come.
pub const WAIT: Duration = Duration::from_secs(3);

/// A router served on a free port of 127.0.0.1 until dropped.
pub struct Server {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
}

impl Server {
    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://127.0.0.1:PORT{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `router` on 127.0.0.1 port 0 in a task of the check's runtime.
pub async fn serve(router: Router) -> Result<Server, Failure> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|error| Failure::new(format!("no se pudo abrir un puerto local: {error}")))?;
    let addr = listener
        .local_addr()
        .map_err(|error| Failure::new(format!("no se pudo leer el puerto local: {error}")))?;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .await;
    });
    Ok(Server {
        addr,
        stop: Some(stop),
    })
}

/// An HTTP client whose every request gives up after [`WAIT`].
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(WAIT)
        .build()
        .unwrap_or_default()
}

/// A WebSocket client that reads and writes JSON frames with bounded waits.
pub struct WsClient {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Opens a WebSocket to `url` (`ws://…`).
    pub async fn connect(url: &str) -> Result<Self, Failure> {
        match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await {
            Ok(Ok((stream, _response))) => Ok(Self { stream }),
            Ok(Err(error)) => Err(Failure::new(format!("no se pudo abrir el WebSocket {url}"))
                .expected("que el servidor acepte el upgrade (101 Switching Protocols)")
                .got(error.to_string())
                .hint("¿La ruta existe y responde con `WebSocketUpgrade::on_upgrade`?")),
            Err(_) => Err(
                Failure::new(format!("el WebSocket {url} no se abrió a tiempo"))
                    .hint("¿El handler llega a devolver la respuesta del upgrade?"),
            ),
        }
    }

    /// Wraps a stream opened by other means (a socket with custom options, a handshake with
    /// extra headers).
    pub fn from_stream(stream: WebSocketStream<MaybeTlsStream<TcpStream>>) -> Self {
        Self { stream }
    }

    /// Sends `value` as a text frame.
    pub async fn send_json(&mut self, value: &Value) -> Result<(), Failure> {
        self.send_text(&value.to_string()).await
    }

    /// Sends a raw text frame (to test what a server does with malformed input).
    pub async fn send_text(&mut self, text: &str) -> Result<(), Failure> {
        match tokio::time::timeout(WAIT, self.stream.send(Message::text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(Failure::new("no se pudo enviar un frame")
                .got(error.to_string())
                .hint("¿El servidor cerró la conexión antes de tiempo?")),
            Err(_) => Err(Failure::new("el envío de un frame no terminó a tiempo")),
        }
    }

    /// The next text frame, parsed as JSON; pings and pongs are skipped. `Err` when nothing
    /// arrives within [`WAIT`], the connection closes, or the frame is not JSON.
    pub async fn recv_json(&mut self) -> Result<Value, Failure> {
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next()).await;
            let message = match next {
                Err(_) => {
                    return Err(Failure::new(format!(
                        "no llegó ningún frame en {} s",
                        WAIT.as_secs()
                    )));
                }
                Ok(None) => return Err(Failure::new("el servidor cerró la conexión")),
                Ok(Some(Err(error))) => {
                    return Err(Failure::new("la conexión falló").got(error.to_string()));
                }
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).map_err(|_| {
                        Failure::new("llegó un frame que no es JSON")
                            .got(text.to_string())
                            .hint("envía `serde_json::to_string(&frame)` como `Message::Text`")
                    });
                }
                Message::Close(frame) => {
                    return Err(
                        Failure::new("el servidor cerró la conexión").got(format!("{frame:?}"))
                    );
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Binary(_) => {
                    return Err(
                        Failure::new("llegó un frame binario").expected("frames de texto con JSON")
                    );
                }
            }
        }
    }

    /// Receives frames until one has `"type": kind`, and returns it; the frames skipped on the
    /// way are returned too, so a check can say what came instead.
    pub async fn recv_type(&mut self, kind: &str) -> Result<(Value, Vec<Value>), Failure> {
        let mut skipped = Vec::new();
        loop {
            match self.recv_json().await {
                Ok(frame) if frame["type"] == kind => return Ok((frame, skipped)),
                Ok(frame) => skipped.push(frame),
                Err(failure) => {
                    return Err(failure
                        .expected(format!("un frame con \"type\": \"{kind}\""))
                        .got(if skipped.is_empty() {
                            "nada".to_owned()
                        } else {
                            render(&skipped)
                        }));
                }
            }
        }
    }

    /// The underlying stream, for what the helpers do not cover (close frames, binary frames).
    pub fn stream(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.stream
    }
}

/// Frames as compact JSON, one after another, for failure messages.
pub fn render(frames: &[Value]) -> String {
    frames
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("  ")
}

/// Compares `value` with the committed snapshot `exercises/checks/snapshots/<name>.snap`, which
/// the reference solution produced. Redact volatile fields (ids, times) before calling.
/// A missing or different snapshot is a failure; a check never writes or accepts one
/// (`INSTA_UPDATE=no`, set in `.cargo/config.toml`).
pub fn snapshot(name: &str, value: &Value, hint: &str) -> Result<(), Failure> {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path(concat!(env!("CARGO_MANIFEST_DIR"), "/checks/snapshots"));
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let compared = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        settings.bind(|| insta::assert_json_snapshot!(name, value));
    }));
    match compared {
        Ok(()) => Ok(()),
        Err(_) => {
            super::runner::forget_current_panic();
            Err(Failure::new(format!(
                "la transcripción no coincide con la de referencia (snapshot «{name}»; el diff está arriba)"
            ))
            .got(value.to_string())
            .hint(hint))
        }
    }
}
