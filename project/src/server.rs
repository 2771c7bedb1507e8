//! The HTTP edge: the accept loop and, for each TCP connection, hyper's HTTP/1 server, with the
//! limits of the contract's "Limits and abuse" on what a client may hold before it has sent a
//! complete request.
//!
//! `axum::serve` would do most of this, but it offers no header-read timeout, no limit on the
//! size of a request head and no way to change hyper's own answers to a malformed request
//! (400, 414, 431 with an empty body), and it logs an `accept` error once a second for as long as
//! the process has no file descriptor left. So the loop is ours:
//!
//! - every accepted socket gets `TCP_NODELAY` (small WebSocket frames are not held back ~40 ms
//!   waiting for a delayed ACK) and counts as open until it closes, WebSocket or not
//!   ([`OpenFiles`]);
//! - a request head must be complete within `CHAT_HEADER_TIMEOUT_SECS` of the moment the server
//!   starts waiting for it (the connection's start, or the end of the previous response on a
//!   kept-alive connection); arriving bytes do not restart the clock, so a slowloris drip and an
//!   idle socket are both closed. A head over 64 KiB is a 431;
//! - hyper's automatic answers to malformed requests get the contract's JSON error body
//!   ([`EdgeIo`]);
//! - an `accept` that fails for lack of resources (`EMFILE`: the open-file limit) is logged once
//!   per burst and retried after a short wait that doubles up to 1 s, instead of spinning;
//! - on shutdown the loop stops accepting and each connection finishes its current request.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Largest request head (request line and headers) accepted: 64 KiB, as the contract says.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The first wait after an `accept` fails for lack of resources; it doubles up to the maximum.
const MIN_ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// How the edge treats each connection.
#[derive(Debug, Clone)]
pub struct EdgeLimits {
    /// How long a request head may take to arrive, from when the server starts waiting for it.
    pub header_timeout: Duration,
}

/// Accepts connections on `listener` and serves `router` on each, until `shutdown` is cancelled.
/// Returns the tracker of the connections still open (finishing their current request), for the
/// caller to wait on.
pub async fn run(
    listener: TcpListener,
    router: Router,
    limits: EdgeLimits,
    open_files: OpenFiles,
    shutdown: CancellationToken,
) -> TaskTracker {
    let connections = TaskTracker::new();
    let mut backoff: Option<Duration> = None;
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, _peer)) => {
                if backoff.take().is_some() {
                    tracing::info!("se vuelven a aceptar conexiones");
                }
                let open = open_files.opened();
                connections.spawn(serve_connection(
                    tcp,
                    open,
                    router.clone(),
                    limits.clone(),
                    shutdown.clone(),
                ));
            }
            // The peer gave up before we accepted it: nothing to wait for.
            Err(error) if is_connection_error(&error) => continue,
            Err(error) => {
                // Out of file descriptors (or memory): retrying at once would spin on the same
                // error. Wait a little, longer each time, and say so once per burst.
                let wait = match backoff {
                    None => {
                        tracing::error!(
                            %error,
                            open = open_files.open(),
                            "no se pueden aceptar conexiones; se reintenta con esperas de hasta {MAX_ACCEPT_BACKOFF:?} (no se repite este aviso hasta que se recupere)"
                        );
                        MIN_ACCEPT_BACKOFF
                    }
                    Some(wait) => (wait * 2).min(MAX_ACCEPT_BACKOFF),
                };
                backoff = Some(wait);
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(wait) => {}
                }
            }
        }
    }
    connections.close();
    connections
}

/// Errors that concern one connection, not the listener.
fn is_connection_error(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one TCP connection: HTTP/1.1 requests, keep-alive and WebSocket upgrades.
async fn serve_connection(
    tcp: TcpStream,
    open: OpenGuard,
    router: Router,
    limits: EdgeLimits,
    shutdown: CancellationToken,
) {
    if let Err(error) = tcp.set_nodelay(true) {
        tracing::debug!(%error, "no se pudo activar TCP_NODELAY");
    }
    let io = TokioIo::new(EdgeIo::new(tcp, open));
    let service = TowerToHyperService::new(
        router.map_request(|request: Request<Incoming>| request.map(Body::new)),
    );
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEAD_BYTES)
        .max_buf_size(MAX_HEAD_BYTES)
        // One buffer per write, so that `EdgeIo` sees a whole response head in one call.
        .writev(false);
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = shutdown.cancelled() => {
            // Finish the request in progress (if any), then close.
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        // Timeouts, resets and malformed requests: the client's business, not ours.
        tracing::debug!(%error, "la conexión terminó con un error");
    }
}

// ----------------------------------------------------------------------------------------------
// Open sockets and the open-file limit
// ----------------------------------------------------------------------------------------------

/// How many accepted sockets are open (HTTP or upgraded to WebSocket), and whether the process
/// is near its open-file limit. Cheap to clone.
#[derive(Debug, Clone)]
pub struct OpenFiles {
    open: Arc<AtomicUsize>,
    /// Sockets (WebSocket or not) this process may have open before new upgrades are refused:
    /// the soft open-file limit minus the descriptors open at start-up minus the reserve.
    /// `None` when the limit is unknown or unlimited.
    budget: Option<usize>,
}

impl OpenFiles {
    /// Reads this process's soft open-file limit and its open descriptors now, and keeps
    /// `reserve` descriptors for everything that is not a client socket (Redis, files, the
    /// requests of `/health`).
    pub fn measure(reserve: usize) -> Self {
        let budget = soft_open_file_limit().map(|limit| {
            let in_use = open_descriptors().unwrap_or(0);
            limit.saturating_sub(in_use).saturating_sub(reserve)
        });
        if let Some(budget) = budget {
            tracing::debug!(budget, "sockets libres antes de rechazar WebSockets nuevos");
        }
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            budget,
        }
    }

    /// Accepted sockets open right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether the process is so close to its open-file limit that a new long-lived connection
    /// (a WebSocket) must be refused, so that short requests such as `/health` still get a
    /// descriptor.
    pub fn near_limit(&self) -> bool {
        self.budget.is_some_and(|budget| self.open() >= budget)
    }

    fn opened(&self) -> OpenGuard {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenGuard(self.open.clone())
    }
}

/// One open socket; dropped with it.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The soft `Max open files` of this process, from `/proc/self/limits` (Linux); `None`
/// elsewhere or when unlimited.
fn soft_open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_file_limit(&limits)
}

/// The soft limit in the `Max open files` line of a `/proc/<pid>/limits` text.
fn parse_open_file_limit(limits: &str) -> Option<usize> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many descriptors this process has open (`/proc/self/fd`, Linux).
fn open_descriptors() -> Option<usize> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count())
}

// ----------------------------------------------------------------------------------------------
// JSON bodies for hyper's own answers
// ----------------------------------------------------------------------------------------------

/// The socket as hyper sees it. It counts as open until dropped (also after an upgrade, since
/// the WebSocket owns it then), and it replaces the body-less answers that hyper writes by itself
/// when a request cannot be parsed (400, 414, 431) with the same status and the contract's JSON
/// error body.
struct EdgeIo {
    tcp: TcpStream,
    /// A replacement answer still to be written, and how much of it was written.
    pending: Vec<u8>,
    written: usize,
    _open: OpenGuard,
}

impl EdgeIo {
    fn new(tcp: TcpStream, open: OpenGuard) -> Self {
        Self {
            tcp,
            pending: Vec::new(),
            written: 0,
            _open: open,
        }
    }

    /// Writes what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n = ready!(Pin::new(&mut self.tcp).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for EdgeIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for EdgeIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(answer) = json_error_answer(buf) {
            this.pending = answer;
            ready!(this.poll_pending(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.tcp).poll_shutdown(cx)
    }
}

/// When `head` is one of hyper's automatic answers (a status line for 400, 414 or 431 and
/// headers announcing an empty body, nothing else), the same answer with the contract's JSON
/// error body. The app itself never answers those statuses with an empty body, so nothing of
/// ours is ever replaced.
fn json_error_answer(head: &[u8]) -> Option<Vec<u8>> {
    let rest = head.strip_prefix(b"HTTP/1.1 ")?;
    let (status_line, code, message) = match rest.get(..4)? {
        b"400 " => (
            "400 Bad Request",
            "bad_request",
            "la petición HTTP está mal formada",
        ),
        b"414 " => (
            "414 URI Too Long",
            "uri_too_long",
            "la URL de la petición es demasiado larga",
        ),
        b"431 " => (
            "431 Request Header Fields Too Large",
            "headers_too_large",
            "las cabeceras de la petición superan los 64 KiB",
        ),
        _ => return None,
    };
    let text = std::str::from_utf8(head).ok()?;
    let (fields, after) = text.split_once("\r\n\r\n")?;
    if !after.is_empty() {
        return None;
    }
    let mut lines = fields.split("\r\n").skip(1);
    if !lines
        .clone()
        .any(|line| line.eq_ignore_ascii_case("content-length: 0"))
    {
        return None;
    }
    let date = lines.find(|line| {
        line.get(..5)
            .is_some_and(|name| name.eq_ignore_ascii_case("date:"))
    });
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut answer = format!(
        "HTTP/1.1 {status_line}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(date) = date {
        answer.push_str(date);
        answer.push_str("\r\n");
    }
    answer.push_str("\r\n");
    answer.push_str(&body);
    Some(answer.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_s_empty_431_gets_a_json_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 20:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(json_error_answer(head).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(head.contains("date: Tue, 01 Dec 2026"), "{head}");
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{head}"
        );
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(body["error"]["code"], "headers_too_large");
    }

    #[test]
    fn answers_with_a_body_or_other_statuses_are_left_alone() {
        for head in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 5\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\nmore",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"\x81\x05hello",
        ] {
            assert!(json_error_answer(head).is_none(), "{head:?}");
        }
    }

    #[test]
    fn the_soft_open_file_limit_is_read_from_proc_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63432                63432                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_file_limit(limits), Some(1024));
        let unlimited =
            "Max open files            unlimited            unlimited            files     \n";
        assert_eq!(parse_open_file_limit(unlimited), None);
    }
}
