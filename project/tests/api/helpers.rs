//! The test harness: a real server on 127.0.0.1 with port 0, and real HTTP and WebSocket
//! clients to talk to it.

use std::net::SocketAddr;
use std::time::Duration;

use chat::{App, Config};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::redis_server;
/// How a test that cannot run on this machine says so: `skip::skip(skip::NGINX)`, then return.
pub use crate::redis_server::skip;

/// How long a test waits for a frame that must come.
pub const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// The password every test user gets.
pub const PASSWORD: &str = "contraseña-segura";
/// The admin password of test servers.
pub const ADMIN_PASSWORD: &str = "admin-de-prueba";

/// Which backend a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

/// The configuration of a test server, before it is adjusted by a test.
///
/// `None` when the backend is Redis and no Redis is available (the caller skips the test).
pub async fn test_config(backend: Backend) -> Option<Config> {
    let mut config = Config::from_env();
    config.addr = "127.0.0.1:0".parse().ok()?;
    config.jwt_secret = Some("secreto-de-las-pruebas".into());
    config.admin_password = Some(ADMIN_PASSWORD.into());
    config.allowed_origins = None;
    config.redis_url = None;
    if backend == Backend::Redis {
        config.redis_url = Some(redis_server::redis_url().await?);
        config.redis_prefix = redis_server::unique_prefix();
    }
    Some(config)
}

/// A running server and the clients to talk to it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

/// Starts a server on `backend`; `None` means "no Redis here: skip".
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    Some(spawn_app_with(test_config(backend).await?).await)
}

/// Starts a server with this configuration.
pub async fn spawn_app_with(config: Config) -> TestApp {
    spawn_app_with_state(config).await.0
}

/// Starts a server with this configuration and also returns its state, for tests that reach
/// past the HTTP interface (the dashboard tests record activity through `state.activity`).
pub async fn spawn_app_with_state(config: Config) -> (TestApp, chat::AppState) {
    if std::env::var_os("TEST_LOG").is_some() {
        chat::telemetry::init();
    }
    let listener = TcpListener::bind(config.addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::build(config).await.unwrap();
    let state = app.state().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    let test_app = TestApp {
        addr,
        http: reqwest::Client::new(),
        stop: Some(stop),
        server: Some(server),
    };
    (test_app, state)
}

/// An HTTP answer: status, headers and the JSON body (`Value::Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The `error.code` of an error body.
    pub fn error_code(&self) -> &str {
        self.body["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://{}/ws?token={token}", self.addr)
    }

    /// Stops the server as SIGTERM would and waits for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub async fn request(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.request(request).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.request(request).await
    }

    pub async fn register(&self, username: &str) -> Answer {
        let body = json!({ "username": username, "password": PASSWORD, "email": format!("{username}@example.com") });
        self.post("/auth/register", None, &body).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Answer {
        self.post(
            "/auth/login",
            None,
            &json!({ "username": username, "password": password }),
        )
        .await
    }

    /// Registers a user and returns a token for it.
    pub async fn signup(&self, username: &str) -> String {
        let answer = self.register(username).await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "register {username}: {:?}",
            answer.body
        );
        self.token(username, PASSWORD).await
    }

    pub async fn token(&self, username: &str, password: &str) -> String {
        let answer = self.login(username, password).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "login {username}: {:?}",
            answer.body
        );
        answer.body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.token("admin", ADMIN_PASSWORD).await
    }

    /// Creates a room as the token's user.
    pub async fn create_room(&self, token: &str, id: &str, private: bool) -> Answer {
        let body = json!({ "id": id, "name": format!("Sala {id}"), "private": private });
        self.post("/rooms", Some(token), &body).await
    }

    /// Opens a WebSocket with `?token=`.
    pub async fn ws(&self, token: &str) -> WsClient {
        WsClient::connect(self.ws_url(token).into_client_request().unwrap())
            .await
            .unwrap()
    }

    /// Signs up a user and connects it.
    pub async fn connected(&self, username: &str) -> WsClient {
        let token = self.signup(username).await;
        self.ws(&token).await
    }

    /// All the messages of a room, through REST.
    pub async fn history(&self, token: &str, room: &str) -> Vec<Value> {
        let answer = self
            .get(&format!("/rooms/{room}/messages?limit=200"), Some(token))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.body["messages"].as_array().unwrap().clone()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A WebSocket client speaking the chat protocol.
pub struct WsClient {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Connects, or returns the handshake error (to inspect a refused upgrade).
    pub async fn connect(
        request: tungstenite::handshake::client::Request,
    ) -> Result<Self, tungstenite::Error> {
        let (stream, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { stream })
    }

    pub async fn send_json(&mut self, frame: Value) {
        self.stream
            .send(Message::text(frame.to_string()))
            .await
            .unwrap();
    }

    /// Sends these frames in one write, so that the server finds them all in its buffer at once
    /// (a race between answering one and reading the next shows up every time).
    pub async fn send_together(&mut self, frames: &[Value]) {
        for frame in frames {
            self.stream
                .feed(Message::text(frame.to_string()))
                .await
                .unwrap();
        }
        self.stream.flush().await.unwrap();
    }

    pub async fn send_raw(&mut self, message: Message) {
        self.stream.send(message).await.unwrap();
    }

    /// The next JSON text frame (control frames are skipped). Panics on timeout or close.
    pub async fn recv(&mut self) -> Value {
        loop {
            let message = tokio::time::timeout(FRAME_TIMEOUT, self.stream.next())
                .await
                .expect("timed out waiting for a frame")
                .expect("the connection ended")
                .expect("the connection failed");
            match message {
                Message::Text(text) => return serde_json::from_str(&text).unwrap(),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next frame of this type, skipping others (presence, typing…).
    pub async fn recv_type(&mut self, kind: &str) -> Value {
        loop {
            let frame = self.recv().await;
            if frame["type"] == kind {
                return frame;
            }
        }
    }

    /// The next `error` frame's code, checking no other frame came first.
    pub async fn recv_error(&mut self) -> String {
        let frame = self.recv().await;
        assert_eq!(
            frame["type"], "error",
            "expected an error frame, got {frame}"
        );
        frame["code"].as_str().unwrap().to_owned()
    }

    /// Joins a room and returns the `joined` frame.
    pub async fn join(&mut self, room: &str) -> Value {
        self.send_json(json!({ "type": "join", "room": room }))
            .await;
        let joined = self.recv_type("joined").await;
        assert_eq!(joined["room"], room);
        joined
    }

    pub async fn join_since(&mut self, room: &str, since: u64) -> Value {
        self.send_json(json!({ "type": "join", "room": room, "since": since }))
            .await;
        self.recv_type("joined").await
    }

    /// Sends a message and returns the stored `message` frame as the sender sees it.
    pub async fn say(&mut self, room: &str, text: &str) -> Value {
        self.send_json(json!({ "type": "send", "room": room, "text": text }))
            .await;
        self.recv_type("message").await
    }

    /// Checks the connection is still usable: a ping gets its pong.
    pub async fn assert_usable(&mut self) {
        self.send_json(json!({ "type": "ping" })).await;
        assert_eq!(self.recv_type("pong").await["type"], "pong");
    }

    /// Waits for the server to close the connection and returns the close frame.
    pub async fn closed(&mut self) -> Option<CloseFrame> {
        loop {
            let next = tokio::time::timeout(FRAME_TIMEOUT, self.stream.next())
                .await
                .expect("timed out waiting for the close");
            match next {
                Some(Ok(Message::Close(frame))) => return frame,
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return None,
            }
        }
    }

    /// Asserts that nothing is on its way to this connection: sends a `ping` as a sentinel and
    /// requires the very next frame to be its `pong`. A room event meant for this connection
    /// is queued for it when it is fanned out, which is before the sender sees its own copy;
    /// so, called after the sender's `say`, anything that should not have come arrives before
    /// the `pong`, however slow the server is (a timed silence would prove nothing there).
    pub async fn assert_nothing_pending(&mut self) {
        self.send_json(json!({ "type": "ping" })).await;
        let frame = self.recv().await;
        assert_eq!(
            frame,
            json!({ "type": "pong" }),
            "expected nothing before the pong of a sentinel ping, got {frame}"
        );
    }

    /// Stays idle for `wait`, reading only (so the library answers the server's pings), and
    /// asserts that no text frame came meanwhile, then that none is on its way
    /// ([`Self::assert_nothing_pending`]). The wait is the behaviour under test (a client that
    /// sends nothing for a while); to prove that something did not arrive, use the sentinel alone.
    pub async fn assert_silent(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Err(_) => break,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                Ok(other) => panic!("expected silence, got {other:?}"),
            }
        }
        self.assert_nothing_pending().await;
    }
}

/// Declares each listed behaviour test (an `async fn(TestApp)`) once per backend:
/// `memory::name` always runs; `redis::name` runs on a real `redis-server` or is skipped with a
/// printed reason (a failure under `REQUIRE_REDIS=1`).
#[macro_export]
macro_rules! on_both_backends {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    let app = $crate::helpers::spawn_app($crate::helpers::Backend::Memory).await.unwrap();
                    super::$test(app).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(app) = $crate::helpers::spawn_app($crate::helpers::Backend::Redis).await else {
                        return;
                    };
                    super::$test(app).await;
                }
            )*
        }
    };
}

// ----------------------------------------------------------------------------------------------
// WebSocket helpers of the ws_* and cluster tests
// ----------------------------------------------------------------------------------------------

/// Frames one connection may send at once without being rate limited, with some margin
/// (the contract's burst is 40): a `join` and this many `send`s.
pub const SENDS_PER_BURST: usize = 35;

impl TestApp {
    /// The username a token belongs to (`GET /auth/me`).
    pub async fn username_of(&self, token: &str) -> String {
        let answer = self.get("/auth/me", Some(token)).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        answer.body["username"].as_str().unwrap().to_owned()
    }

    /// Posts `texts` to `room` as the token's user and returns the stored `message` frames, in
    /// the order they were stored. Each batch of [`SENDS_PER_BURST`] goes through a fresh
    /// connection, so posting many messages never hits the per-connection rate limit. The texts
    /// of one call must differ from each other and from any other sends of the same user meanwhile.
    pub async fn post_messages(&self, token: &str, room: &str, texts: &[String]) -> Vec<Value> {
        let me = self.username_of(token).await;
        let mut stored = Vec::with_capacity(texts.len());
        for batch in texts.chunks(SENDS_PER_BURST) {
            let mut client = self.ws(token).await;
            client.join(room).await;
            for text in batch {
                client
                    .send_json(json!({ "type": "send", "room": room, "text": text }))
                    .await;
            }
            // Wait for every echo (a `leave` right away could overtake them).
            let mut pending: Vec<&String> = batch.iter().collect();
            while !pending.is_empty() {
                let frame = client.recv().await;
                assert_ne!(frame["type"], "error", "posting to {room} failed: {frame}");
                if frame["type"] != "message" || frame["user"] != me.as_str() {
                    continue;
                }
                if let Some(at) = pending
                    .iter()
                    .position(|text| frame["text"] == text.as_str())
                {
                    pending.swap_remove(at);
                    stored.push(frame);
                }
            }
        }
        stored
    }

    /// Posts `count` messages `"{prefix} {i}"` (see [`TestApp::post_messages`]).
    pub async fn post_numbered(
        &self,
        token: &str,
        room: &str,
        prefix: &str,
        count: usize,
    ) -> Vec<Value> {
        let texts: Vec<String> = (0..count).map(|i| format!("{prefix} {i}")).collect();
        self.post_messages(token, room, &texts).await
    }
}

impl WsClient {
    /// The next `count` `message` frames, skipping frames of other types.
    pub async fn recv_messages(&mut self, count: usize) -> Vec<Value> {
        let mut messages = Vec::with_capacity(count);
        while messages.len() < count {
            messages.push(self.recv_type("message").await);
        }
        messages
    }

    /// Asserts that the next frame is exactly `expected` (a sentinel sent after something that
    /// must not reach this connection: since a room's events arrive in order, anything that
    /// should not have come would arrive first).
    pub async fn assert_next(&mut self, expected: &Value) {
        let frame = self.recv().await;
        assert_eq!(&frame, expected, "expected {expected} next, got {frame}");
    }
}

/// The `id` of a `message` frame.
pub fn id_of(frame: &Value) -> u64 {
    frame["id"]
        .as_u64()
        .unwrap_or_else(|| panic!("not a message frame: {frame}"))
}

/// The ids of `message` frames.
pub fn ids_of(frames: &[Value]) -> Vec<u64> {
    frames.iter().map(id_of).collect()
}

/// The `chat` binary running in a process of its own, with everything it prints kept.
///
/// For what an in-process server cannot show: start-up output, logs, signals, and metrics
/// that nobody else in the test process records.
pub struct ChatBinary {
    pub child: tokio::process::Child,
    /// `http://127.0.0.1:PORT`, from the binary's "escuchando en" line.
    pub base: String,
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ChatBinary {
    /// The binary with a free port, plain-text logs and no inherited backend settings; the
    /// caller adds its own environment before [`ChatBinary::start`].
    pub fn command() -> tokio::process::Command {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat"));
        command
            .env("CHAT_ADDR", "127.0.0.1:0")
            .env("NO_COLOR", "1")
            .env_remove("REDIS_URL")
            .env_remove("CHAT_ADMIN_PASSWORD")
            .env_remove("CHAT_ALLOWED_ORIGINS")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        command
    }

    /// Spawns `command`, collects its output, and waits until it says where it listens.
    pub async fn start(mut command: tokio::process::Command) -> Self {
        use tokio::io::{AsyncBufReadExt, BufReader};

        let mut child = command.spawn().unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        // Each line read is an event: the readers say so here, and end with the process.
        let (line_read, mut lines_read) = tokio::sync::watch::channel(());
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            let line_read = line_read.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                    drop(output);
                    line_read.send_replace(());
                }
            });
        }
        drop(line_read);
        let base = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                lines_read.borrow_and_update();
                if let Some(base) = listening_address(&output.lock().unwrap()) {
                    return Some(base);
                }
                // `Err`: both outputs closed, the process is gone.
                if lines_read.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            panic!(
                "the binary did not say where it listens:\n{}",
                output.lock().unwrap()
            )
        });
        Self {
            child,
            base,
            output,
        }
    }

    /// Everything printed so far (stdout and stderr).
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }
}

/// `http://127.0.0.1:PORT` from the "escuchando en" line.
fn listening_address(output: &str) -> Option<String> {
    let line = output
        .lines()
        .find(|line| line.contains("escuchando en http://"))?;
    let rest = &line[line.find("http://")?..];
    Some(rest[..rest.find(' ').unwrap_or(rest.len())].to_owned())
}
