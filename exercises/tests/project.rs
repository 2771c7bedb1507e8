//! The network checks of exercise 6 (`exercises::checks::ej06`) against the reference `chat`
//! server, in process on 127.0.0.1 port 0: every check passes; and against deliberately broken
//! servers (a proxy in front of the reference that removes one feature at a time): exactly the
//! checks of that feature fail. A last test starts the real `chat` binary with `command`, for
//! the graceful-shutdown and restart checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use exercises::checks::registry::ProjectTarget;
use exercises::checks::score::{self, Level, ManualReview};
use exercises::checks::{self, Check, Env, Outcome, ej06};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

/// How a test that cannot run here says so: the project's shared helper (one line on the real
/// stderr, a list at the end of the run, a failure under `REQUIRE_*=1`).
#[path = "../../project/tests/api/skip.rs"]
mod skip;

const ADMIN_PASSWORD: &str = "admin-del-corrector";
const JWT_SECRET: &str = "secreto-de-las-pruebas-del-corrector";

/// A reference server in a runtime of its own, for the length of one test.
struct Reference {
    runtime: tokio::runtime::Runtime,
    addr: SocketAddr,
    outbox: PathBuf,
}

impl Reference {
    fn start() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let outbox = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ej06-outbox-{}", uuid::Uuid::new_v4().simple()));
        let mut config = chat::Config::from_env();
        config.addr = "127.0.0.1:0".parse().unwrap();
        config.redis_url = None;
        config.jwt_secret = Some(JWT_SECRET.into());
        config.admin_username = "admin".into();
        config.admin_password = Some(ADMIN_PASSWORD.into());
        config.allowed_origins = None;
        config.jobs.smtp_url = None;
        config.jobs.outbox = outbox.clone();
        let addr = runtime.block_on(async {
            let listener = TcpListener::bind(config.addr).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let app = chat::App::build(config).await.unwrap();
            tokio::spawn(app.serve(listener, std::future::pending()));
            addr
        });
        Self {
            runtime,
            addr,
            outbox,
        }
    }

    fn target(&self, addr: SocketAddr) -> ProjectTarget {
        ProjectTarget {
            base_url: format!("http://{addr}"),
            admin_user: "admin".into(),
            admin_password: ADMIN_PASSWORD.into(),
            outbox: Some(self.outbox.clone()),
            jwt_secret: Some(JWT_SECRET.into()),
            command: None,
        }
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.outbox);
    }
}

/// Runs every check of exercise 6, one after another (job counts in `/admin/jobs` must not
/// mix two checks' jobs), and returns the failures by title.
fn run_all(target: ProjectTarget) -> Vec<(Check, Outcome)> {
    let env = Env {
        project: Some(Arc::new(target)),
    };
    ej06::checks()
        .into_iter()
        .map(|check| {
            let outcome = checks::run(&check, &env);
            (check, outcome)
        })
        .collect()
}

/// Fails the test unless exactly the checks titled `failing` failed, every process check was
/// "not checked", and every other check passed.
fn assert_outcomes(variant: &str, outcomes: &[(Check, Outcome)], failing: &[&str]) {
    let mut problems = Vec::new();
    let expected: BTreeSet<&str> = failing.iter().copied().collect();
    for (check, outcome) in outcomes {
        let name = check.name();
        match &outcome.result {
            Err(failure) if ej06::needs_process(check) => {
                if !failure.is_not_checked() {
                    problems.push(format!(
                        "{name}: sin command debería ser «no comprobado»:\n{failure}"
                    ));
                }
            }
            Ok(()) if ej06::needs_process(check) => {
                problems.push(format!("{name}: pasó sin command"));
            }
            Ok(()) if expected.contains(check.title) => {
                problems.push(format!("{name}: debía fallar contra «{variant}» y pasó"));
            }
            Err(failure) if !expected.contains(check.title) => {
                problems.push(format!("{name}: falló contra «{variant}»:\n{failure}"));
            }
            Err(failure) => {
                // The failure must read as a failure of that feature, not as a crash.
                assert!(!failure.what.is_empty());
                eprintln!(
                    "[{variant}] {name} falla como se esperaba: {}",
                    failure.what
                );
            }
            Ok(()) => {}
        }
    }
    let known: BTreeSet<&str> = outcomes.iter().map(|(check, _)| check.title).collect();
    for title in &expected {
        assert!(known.contains(title), "no check is titled «{title}»");
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    // The rubric: exactly the criteria of the failing checks lose points.
    let score = score::score_exercise(6, outcomes, &ManualReview::new());
    for criterion in &score.criteria {
        let should_lose = criterion
            .checks
            .iter()
            .any(|check| expected.contains(check.check.title));
        let lost = criterion.tally.lost > 0.0;
        assert_eq!(
            lost,
            should_lose,
            "[{variant}] el criterio «{}» {} puntos",
            criterion.name,
            if lost { "pierde" } else { "no pierde" }
        );
    }
}

#[test]
fn every_check_passes_against_the_reference_server() {
    let reference = Reference::start();
    let outcomes = run_all(reference.target(reference.addr));
    assert_outcomes("la referencia", &outcomes, &[]);
    // Every automatic check that could run passed: Excelente on the automatic part.
    let score = score::score_exercise(6, &outcomes, &ManualReview::new());
    assert_eq!(score.automatic_score(), Some(100.0));
    assert_eq!(score.automatic_level(), Some(Level::Excelente));
    drop(reference);
}

#[test]
fn the_checks_fail_without_a_project() {
    let env = Env::default();
    for check in ej06::checks() {
        let outcome = checks::run(&check, &env);
        let failure = outcome
            .result
            .expect_err("a check passed without a project");
        assert!(
            failure.to_string().contains("--project"),
            "{}: {failure}",
            check.name()
        );
    }
}

// ----------------------------------------------------------------------------------------------
// A proxy that removes one feature of the reference
// ----------------------------------------------------------------------------------------------

/// What the proxy takes away.
#[derive(Clone, Copy)]
struct Broken {
    /// Server → client frames of this `type` are dropped.
    drop_frames: Option<&'static str>,
    /// Client → server frames are rewritten (a field removed).
    rewrite: Option<fn(&mut Value)>,
    /// A response header removed.
    strip_response_header: Option<&'static str>,
    /// A request header removed.
    strip_request_header: Option<&'static str>,
    /// A path answered 404.
    block_path: Option<&'static str>,
    /// The server's close code `.0` reaches the client as `.1`.
    close_code: Option<(u16, u16)>,
    /// Server-Sent Events with this `event:` name are dropped.
    drop_sse_event: Option<&'static str>,
    /// Past the 40th frame of a connection, client frames reach the server at most every
    /// 60 ms: the server's limiter never trips, as if it had none.
    pace_after_burst: bool,
    /// `"private": true` in `POST /rooms` becomes `false`: every room is public.
    public_rooms_only: bool,
    /// A 429 of `POST /auth/login` reaches the client as a plain 401: no visible login limit.
    hide_login_limit: bool,
}

const INTACT: Broken = Broken {
    drop_frames: None,
    rewrite: None,
    strip_response_header: None,
    strip_request_header: None,
    block_path: None,
    close_code: None,
    drop_sse_event: None,
    pace_after_burst: false,
    public_rooms_only: false,
    hide_login_limit: false,
};

struct Proxy {
    upstream: SocketAddr,
    broken: Broken,
    http: reqwest::Client,
}

async fn start_proxy(upstream: SocketAddr, broken: Broken) -> SocketAddr {
    let proxy = Arc::new(Proxy {
        upstream,
        broken,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    });
    let router = Router::new()
        .route("/ws", get(proxy_ws))
        .fallback(proxy_http)
        .with_state(proxy);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

async fn proxy_http(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    if proxy.broken.block_path == Some(path.as_str()) {
        return (
            StatusCode::NOT_FOUND,
            [("content-type", "application/json")],
            r#"{"error":{"code":"not_found","message":"no existe"}}"#,
        )
            .into_response();
    }
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|value| value.as_str().to_owned())
        .unwrap_or(path);
    let url = format!("http://{}{path_and_query}", proxy.upstream);
    let method = request.method().clone();
    let mut headers = request.headers().clone();
    headers.remove("host");
    if let Some(name) = proxy.broken.strip_request_header {
        headers.remove(name);
    }
    let mut body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    if proxy.broken.public_rooms_only && path_and_query == "/rooms" {
        if let Ok(mut room) = serde_json::from_slice::<Value>(&body) {
            room["private"] = Value::Bool(false);
            body = room.to_string().into();
            headers.remove("content-length");
        }
    }
    let upstream = proxy
        .http
        .request(method, url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let Ok(upstream) = upstream else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let status = upstream.status().as_u16();
    if proxy.broken.hide_login_limit && path_and_query == "/auth/login" && status == 429 {
        let body = r#"{"error":{"code":"unauthorized","message":"credenciales incorrectas"}}"#;
        return (
            StatusCode::UNAUTHORIZED,
            [("content-type", "application/json")],
            body,
        )
            .into_response();
    }
    let mut builder = Response::builder().status(status);
    for (name, value) in upstream.headers() {
        let skip = ["transfer-encoding", "connection"].contains(&name.as_str())
            || proxy.broken.strip_response_header == Some(name.as_str());
        if !skip {
            builder = builder.header(name, value);
        }
    }
    let is_sse = upstream
        .headers()
        .get("content-type")
        .is_some_and(|value| value.as_bytes().starts_with(b"text/event-stream"));
    match proxy.broken.drop_sse_event {
        Some(name) if is_sse => builder
            .body(Body::from_stream(without_event(
                upstream.bytes_stream(),
                name,
            )))
            .unwrap(),
        _ => builder
            .body(Body::from_stream(upstream.bytes_stream()))
            .unwrap(),
    }
}

/// The SSE byte stream without the events named `name` (events end with a blank line).
fn without_event(
    stream: impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>>
    + Send
    + Unpin
    + 'static,
    name: &'static str,
) -> impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Send + 'static {
    let unwanted = format!("event: {name}");
    futures_util::stream::unfold(
        (stream, Vec::<u8>::new(), unwanted),
        |(mut stream, mut buffer, unwanted)| async move {
            loop {
                if let Some(end) = buffer.windows(2).position(|pair| pair == b"\n\n") {
                    let event: Vec<u8> = buffer.drain(..end + 2).collect();
                    let text = String::from_utf8_lossy(&event);
                    if text.lines().any(|line| line.trim_end() == unwanted) {
                        continue;
                    }
                    return Some((Ok(event.into()), (stream, buffer, unwanted)));
                }
                match stream.next().await {
                    Some(Ok(chunk)) => buffer.extend_from_slice(&chunk),
                    Some(Err(error)) => return Some((Err(error), (stream, buffer, unwanted))),
                    None => return None,
                }
            }
        },
    )
}

async fn proxy_ws(
    State(proxy): State<Arc<Proxy>>,
    headers: HeaderMap,
    uri: Uri,
    upgrade: WebSocketUpgrade,
) -> Response {
    let query = uri
        .query()
        .map(|query| format!("?{query}"))
        .unwrap_or_default();
    let mut request = format!("ws://{}/ws{query}", proxy.upstream)
        .into_client_request()
        .unwrap();
    for name in ["origin", "authorization"] {
        if let Some(value) = headers.get(name) {
            request.headers_mut().insert(name, value.clone());
        }
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((upstream, _)) => {
            let broken = proxy.broken;
            upgrade.on_upgrade(move |client| pump(client, upstream, broken))
        }
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.body().clone().unwrap_or_default();
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(body))
                .unwrap()
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn pump(client: WebSocket, upstream: Upstream, broken: Broken) {
    let (mut to_client, mut from_client) = client.split();
    let (mut to_upstream, mut from_upstream) = upstream.split();
    let up = async move {
        let mut frames = 0usize;
        while let Some(Ok(message)) = from_client.next().await {
            frames += 1;
            if broken.pace_after_burst && frames > 40 {
                tokio::time::sleep(std::time::Duration::from_millis(60)).await;
            }
            let message = match message {
                ws::Message::Text(text) => {
                    let mut text = text.as_str().to_owned();
                    if let (Some(rewrite), Ok(mut frame)) =
                        (broken.rewrite, serde_json::from_str::<Value>(&text))
                    {
                        if frame.is_object() {
                            rewrite(&mut frame);
                            text = frame.to_string();
                        }
                    }
                    Message::text(text)
                }
                ws::Message::Binary(bytes) => Message::Binary(bytes),
                ws::Message::Ping(bytes) => Message::Ping(bytes),
                ws::Message::Pong(bytes) => Message::Pong(bytes),
                ws::Message::Close(frame) => Message::Close(frame.map(|frame| CloseFrame {
                    code: frame.code.into(),
                    reason: frame.reason.as_str().into(),
                })),
            };
            if to_upstream.send(message).await.is_err() {
                break;
            }
        }
        let _ = to_upstream.close().await;
    };
    let down = async move {
        while let Some(Ok(message)) = from_upstream.next().await {
            let message = match message {
                Message::Text(text) => {
                    if let Some(kind) = broken.drop_frames {
                        let frame: Value =
                            serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
                        if frame["type"] == kind {
                            continue;
                        }
                    }
                    ws::Message::Text(text.as_str().into())
                }
                Message::Binary(bytes) => ws::Message::Binary(bytes),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Close(frame) => {
                    let frame = frame.map(|frame| {
                        let code = u16::from(frame.code);
                        ws::CloseFrame {
                            code: match broken.close_code {
                                Some((from, to)) if from == code => to,
                                _ => code,
                            },
                            reason: frame.reason.as_str().into(),
                        }
                    });
                    let _ = to_client.send(ws::Message::Close(frame)).await;
                    break;
                }
            };
            if to_client.send(message).await.is_err() {
                break;
            }
        }
        let _ = to_client.close().await;
    };
    tokio::select! {
        _ = tokio::spawn(up) => {}
        _ = tokio::spawn(down) => {}
    }
}

/// Starts a reference server behind a proxy that breaks it this way, runs every check, and
/// requires exactly `failing` to fail.
fn assert_broken(variant: &str, broken: Broken, failing: &[&str]) {
    let reference = Reference::start();
    let addr = reference
        .runtime
        .block_on(start_proxy(reference.addr, broken));
    let outcomes = run_all(reference.target(addr));
    assert_outcomes(variant, &outcomes, failing);
}

#[test]
fn an_intact_proxy_changes_nothing() {
    // The proxy itself is transparent: the broken variants below fail because of what they
    // take away, not because of the proxy.
    let reference = Reference::start();
    let addr = reference
        .runtime
        .block_on(start_proxy(reference.addr, INTACT));
    let outcomes = run_all(reference.target(addr));
    assert_outcomes("un proxy transparente", &outcomes, &[]);
}

fn without_client_id(frame: &mut Value) {
    if frame["type"] == "send" {
        if let Some(object) = frame.as_object_mut() {
            object.remove("client_id");
        }
    }
}

fn without_since(frame: &mut Value) {
    if frame["type"] == "join" {
        if let Some(object) = frame.as_object_mut() {
            object.remove("since");
        }
    }
}

#[test]
fn a_server_without_x_cache_loses_the_cache_check() {
    let broken = Broken {
        strip_response_header: Some("x-cache"),
        ..INTACT
    };
    assert_broken(
        "sin X-Cache",
        broken,
        &[ej06_title("GET /rooms pasa por una caché")],
    );
}

#[test]
fn a_server_without_typing_loses_the_typing_check() {
    let broken = Broken {
        drop_frames: Some("typing"),
        ..INTACT
    };
    assert_broken("sin typing", broken, &[ej06_title("reenvía typing")]);
}

#[test]
fn a_server_without_presence_loses_the_presence_check() {
    let broken = Broken {
        drop_frames: Some("presence"),
        ..INTACT
    };
    assert_broken("sin presence", broken, &[ej06_title("avisa con presence")]);
}

#[test]
fn a_server_without_mention_notifications_loses_that_check() {
    let broken = Broken {
        drop_frames: Some("notification"),
        ..INTACT
    };
    assert_broken(
        "sin notification",
        broken,
        &[ej06_title("una mención a un usuario conectado")],
    );
}

#[test]
fn a_server_without_idempotent_sends_loses_the_client_id_check() {
    let broken = Broken {
        rewrite: Some(without_client_id),
        ..INTACT
    };
    assert_broken("sin client_id", broken, &[ej06_title("client_id repetido")]);
}

#[test]
fn a_server_without_since_loses_the_recovery_check() {
    let broken = Broken {
        rewrite: Some(without_since),
        ..INTACT
    };
    assert_broken("sin since", broken, &[ej06_title("con since")]);
}

#[test]
fn a_server_without_last_event_id_loses_the_resume_check() {
    let broken = Broken {
        strip_request_header: Some("last-event-id"),
        ..INTACT
    };
    assert_broken("sin Last-Event-ID", broken, &[ej06_title("Last-Event-ID")]);
}

#[test]
fn a_server_without_metrics_loses_the_metrics_check() {
    let broken = Broken {
        block_path: Some("/metrics"),
        ..INTACT
    };
    assert_broken("sin /metrics", broken, &[ej06_title("/metrics expone")]);
}

#[test]
fn a_server_without_docs_loses_the_docs_check() {
    let broken = Broken {
        block_path: Some("/docs"),
        ..INTACT
    };
    assert_broken("sin /docs", broken, &[ej06_title("Swagger UI")]);
}

#[test]
fn a_server_without_admin_jobs_loses_the_job_checks() {
    let broken = Broken {
        block_path: Some("/admin/jobs"),
        ..INTACT
    };
    let failing = [
        ej06_title("desconectado se envía por e-mail"),
        ej06_title("un e-mail por usuario y sala"),
        ej06_title("GET /admin/jobs lista"),
        ej06_title("exigen el rol admin"),
    ];
    assert_broken("sin /admin/jobs", broken, &failing);
}

#[test]
fn a_server_that_does_not_close_with_1009_loses_that_check() {
    let broken = Broken {
        close_code: Some((1009, 1011)),
        ..INTACT
    };
    assert_broken("1011 en vez de 1009", broken, &[ej06_title("1009")]);
}

#[test]
fn a_server_that_does_not_close_slow_consumers_with_1013_loses_that_check() {
    let broken = Broken {
        close_code: Some((1013, 1000)),
        ..INTACT
    };
    assert_broken("1000 en vez de 1013", broken, &[ej06_title("1013")]);
}

#[test]
fn a_dashboard_without_stats_loses_the_stats_check() {
    let broken = Broken {
        drop_sse_event: Some("stats"),
        ..INTACT
    };
    assert_broken("sin event: stats", broken, &[ej06_title("emite stats")]);
}

#[test]
fn a_dashboard_without_activity_loses_the_activity_checks() {
    let broken = Broken {
        drop_sse_event: Some("activity"),
        ..INTACT
    };
    let failing = [ej06_title("emite activity"), ej06_title("Last-Event-ID")];
    assert_broken("sin event: activity", broken, &failing);
}

#[test]
fn a_server_without_a_rate_limit_loses_that_check() {
    let broken = Broken {
        pace_after_burst: true,
        ..INTACT
    };
    assert_broken("sin límite de frames", broken, &[ej06_title("20 frames/s")]);
}

#[test]
fn a_server_without_private_rooms_loses_the_checks_that_use_them() {
    let broken = Broken {
        public_rooms_only: true,
        ..INTACT
    };
    // The e-mail check mentions in a private room (its e-mail must not quote the text).
    let failing = [
        ej06_title("salas privadas"),
        ej06_title("desconectado se envía por e-mail"),
    ];
    assert_broken("sin salas privadas", broken, &failing);
}

#[test]
fn a_server_without_a_visible_login_limit_loses_that_check() {
    let broken = Broken {
        hide_login_limit: true,
        ..INTACT
    };
    assert_broken(
        "sin límite de login",
        broken,
        &[ej06_title("tras 5 fallos")],
    );
}

/// The title of the one check of exercise 6 whose title contains `part`.
fn ej06_title(part: &str) -> &'static str {
    let matching: Vec<&'static str> = ej06::checks()
        .iter()
        .map(|check| check.title)
        .filter(|title| title.contains(part))
        .collect();
    assert_eq!(matching.len(), 1, "«{part}» names {matching:?}");
    matching[0]
}

// ----------------------------------------------------------------------------------------------
// `command`: the grader starts the real binary
// ----------------------------------------------------------------------------------------------

/// `target/debug/chat`, next to this test's executable (`target/debug/deps/project-…`).
fn chat_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let binary = exe.parent()?.parent()?.join("chat");
    binary.is_file().then_some(binary)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private `redis-server` (no persistence), stopped by its pid when dropped.
struct Redis {
    child: std::process::Child,
    port: u16,
}

impl Redis {
    fn start() -> Option<Self> {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let redis = Self { child, port };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Some(redis);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The command that starts `binary` on `port`, with Redis when `redis_port` is given.
fn chat_command(
    binary: &std::path::Path,
    port: u16,
    redis_port: Option<u16>,
    outbox: &std::path::Path,
) -> String {
    let redis = match redis_port {
        Some(redis_port) => format!(
            "REDIS_URL=redis://127.0.0.1:{redis_port} CHAT_REDIS_PREFIX=ej06{} ",
            uuid::Uuid::new_v4().simple()
        ),
        None => String::new(),
    };
    format!(
        "CHAT_ADDR=127.0.0.1:{port} {redis}JWT_SECRET={JWT_SECRET} CHAT_ADMIN_USERNAME=admin \
         CHAT_ADMIN_PASSWORD={ADMIN_PASSWORD} CHAT_OUTBOX='{outbox}' RUST_LOG=warn exec '{binary}'",
        outbox = outbox.display(),
        binary = binary.display(),
    )
}

/// Runs the process checks with `command` and returns their outcomes by title.
fn run_process_checks(
    port: u16,
    command: String,
    outbox: &std::path::Path,
) -> Vec<(Check, Result<(), checks::Failure>)> {
    let target = ProjectTarget {
        base_url: format!("http://127.0.0.1:{port}"),
        admin_user: "admin".into(),
        admin_password: ADMIN_PASSWORD.into(),
        outbox: Some(outbox.to_owned()),
        jwt_secret: Some(JWT_SECRET.into()),
        command: Some(command),
    };
    let env = Env {
        project: Some(Arc::new(target)),
    };
    let checks: Vec<Check> = ej06::checks()
        .into_iter()
        .filter(ej06::needs_process)
        .collect();
    assert_eq!(checks.len(), 2);
    checks
        .into_iter()
        .map(|check| {
            let result = checks::run(&check, &env).result;
            (check, result)
        })
        .collect()
}

#[test]
fn with_a_command_the_grader_checks_shutdown_and_restart() {
    let Some(binary) = chat_binary() else {
        skip::skip(skip::CHAT_BINARY);
        return;
    };
    let Some(redis) = Redis::start() else {
        // The restart check needs a backend that outlives the process.
        skip::skip(skip::REDIS_SERVER);
        return;
    };
    let port = free_port();
    let outbox = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ej06-command-{}", uuid::Uuid::new_v4().simple()));
    let command = chat_command(&binary, port, Some(redis.port), &outbox);
    for (check, result) in run_process_checks(port, command, &outbox) {
        if let Err(failure) = result {
            panic!("{} falló con --command:\n{failure}", check.name());
        }
    }
    let _ = std::fs::remove_dir_all(&outbox);
    drop(redis);
}

#[test]
fn a_server_that_forgets_everything_on_restart_loses_the_restart_check() {
    let Some(binary) = chat_binary() else {
        skip::skip(skip::CHAT_BINARY);
        return;
    };
    // In memory: the process exits cleanly on SIGTERM, but its data goes with it.
    let port = free_port();
    let outbox = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ej06-memory-{}", uuid::Uuid::new_v4().simple()));
    let command = chat_command(&binary, port, None, &outbox);
    for (check, result) in run_process_checks(port, command, &outbox) {
        match (check.title, result) {
            (ej06::process::SHUTDOWN, Err(failure)) => panic!("{}:\n{failure}", check.name()),
            (ej06::process::RESTART, Ok(())) => panic!("{} pasó sin persistencia", check.name()),
            (ej06::process::RESTART, Err(failure)) => {
                assert!(failure.what.contains("la cuenta"), "{failure}");
            }
            _ => {}
        }
    }
    let _ = std::fs::remove_dir_all(&outbox);
}
