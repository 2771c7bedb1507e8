//! Práctica 38: the real `chat` crate assembled by `examples/38_integrated_app`, served on port
//! 0 and driven like a class would: HTTP (reqwest), WebSocket (tokio-tungstenite), the
//! dashboard's SSE stream (`eventsource-stream`) and the `.eml` files in the outbox.

#[allow(dead_code)]
#[path = "../../examples/38_integrated_app/main.rs"]
mod lesson;

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{self, Lesson};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Events = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// Longest a test waits for a frame or an event.
const WAIT: Duration = Duration::from_secs(10);
/// Longest a test waits for a background job (it runs on the worker, after a queue).
const JOB_WAIT: Duration = Duration::from_secs(30);

/// The assembled lesson: the chat on one port, the explanation page on another, a fresh outbox.
struct Running {
    chat: String,
    ws: String,
    page: Lesson,
    outbox: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    http: reqwest::Client,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = std::fs::remove_dir_all(&self.outbox);
    }
}

/// Assembles the lesson as `main` does, on port 0, in memory whatever the environment says.
async fn start() -> Running {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let outbox = std::env::temp_dir().join(format!(
        "leccion38-outbox-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let mut config = lesson::lesson_config(addr);
    config.redis_url = None;
    config.admin_password = Some(lesson::CLASS_ADMIN_PASSWORD.to_owned());
    config.jobs.smtp_url = None;
    config.jobs.outbox = outbox.clone();
    config.jobs.backoff_ms = 50;
    let chat = format!("http://{addr}");
    let assembled = lesson::app(config, &chat).await.unwrap();
    let page = support::serve(assembled.page).await;
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(assembled.chat.serve(listener, async move {
        let _ = stopped.await;
    }));
    Running {
        chat,
        ws: format!("ws://{addr}/ws"),
        page,
        outbox,
        stop: Some(stop),
        http: reqwest::Client::new(),
    }
}

impl Running {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.chat))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn login(&self, username: &str, password: &str) -> String {
        let (status, body) = self
            .post(
                "/auth/login",
                json!({ "username": username, "password": password }),
            )
            .await;
        assert_eq!(status, 200, "login of {username}: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Registers `username` (e-mail `username@example.com`) and returns their token.
    async fn signup(&self, username: &str) -> String {
        let password = "contraseña-larga";
        let (status, body) = self
            .post(
                "/auth/register",
                json!({
                    "username": username,
                    "password": password,
                    "email": format!("{username}@example.com"),
                }),
            )
            .await;
        assert_eq!(status, 201, "register {username}: {body}");
        self.login(username, password).await
    }

    async fn admin_token(&self) -> String {
        self.login("admin", lesson::CLASS_ADMIN_PASSWORD).await
    }

    async fn ws(&self, token: &str) -> Ws {
        let (ws, response) = tokio_tungstenite::connect_async(format!("{}?token={token}", self.ws))
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        ws
    }
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(Message::text(frame.to_string())).await.unwrap();
}

/// The next JSON frame for which `wanted` holds (others, and pings, are skipped).
async fn next_where(ws: &mut Ws, what: &str, wanted: impl Fn(&Value) -> bool) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let message = ws
                .next()
                .await
                .expect("the connection ended")
                .expect("read error");
            if let Message::Text(text) = message {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if wanted(&frame) {
                    return frame;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

async fn join_general(ws: &mut Ws) -> Value {
    send(ws, json!({ "type": "join", "room": "general" })).await;
    next_where(ws, "joined", |frame| frame["type"] == "joined").await
}

/// The dashboard's SSE stream, as an admin.
async fn dashboard(running: &Running, admin: &str) -> Events {
    let response = running
        .http
        .get(format!("{}/dashboard/events", running.chat))
        .bearer_auth(admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let events = response
        .bytes_stream()
        .eventsource()
        .map(|event| event.expect("a well-formed SSE stream"));
    Box::pin(events)
}

/// The next dashboard event of `kind` for which `wanted` holds.
async fn next_event(
    events: &mut Events,
    kind: &str,
    wait: Duration,
    wanted: impl Fn(&Value) -> bool,
) -> Value {
    tokio::time::timeout(wait, async {
        loop {
            let event = events.next().await.expect("the dashboard stream ended");
            if event.event == kind {
                let data: Value = serde_json::from_str(&event.data).unwrap();
                if wanted(&data) {
                    return data;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} event within {wait:?}"))
}

/// The `.eml` files in `outbox`, as text.
fn emails_in(outbox: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(outbox) else {
        return Vec::new();
    };
    entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect()
}

async fn page_status(running: &Running) -> Value {
    reqwest::get(running.page.url("/leccion/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[test]
fn every_project_file_the_lesson_names_exists() {
    crate::l37::assert_project_files_exist("38_integrated_app");
}

#[tokio::test]
async fn the_assembled_chat_serves_health_and_the_lesson_page_explains_it() {
    let running = start().await;

    let health: Value = reqwest::get(format!("{}/health", running.chat))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({ "status": "ok" }));
    for path in ["/", "/dashboard", "/docs/"] {
        let response = reqwest::get(format!("{}{path}", running.chat))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "the chat serves {path}");
    }

    let page = reqwest::get(running.page.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "Paso 1",
        "Paso 2",
        "Paso 3",
        "project/src/app.rs",
        "docker compose up --build",
        "project/deploy/nginx.conf",
        "CHAT_ADDR=127.0.0.1:8002 cargo run -p chat",
        lesson::CLASS_ADMIN_PASSWORD,
        &running.chat,
        &running.outbox.display().to_string(),
    ] {
        assert!(page.contains(expected), "the page says {expected:?}");
    }
    assert!(!page.contains("{{"), "every placeholder is filled");
    let status = page_status(&running).await;
    assert_eq!(status["stats"]["connections"], 0);
    assert_eq!(status["outbox"]["count"], 0);
}

#[tokio::test]
async fn two_websocket_clients_chat_in_general() {
    let running = start().await;
    let (ana, bea) = (running.signup("ana").await, running.signup("bea").await);
    let mut ana = running.ws(&ana).await;
    let mut bea = running.ws(&bea).await;
    join_general(&mut ana).await;
    join_general(&mut bea).await;

    send(
        &mut ana,
        json!({ "type": "send", "room": "general", "text": "hola, bea" }),
    )
    .await;

    let message = next_where(&mut bea, "a message", |frame| frame["type"] == "message").await;
    assert_eq!(message["user"], "ana");
    assert_eq!(message["text"], "hola, bea");
    assert_eq!(message["room"], "general");
    // The page reads the same state the chat's handlers use.
    assert_eq!(page_status(&running).await["stats"]["connections"], 2);
}

#[tokio::test]
async fn a_mention_of_an_offline_user_becomes_an_eml_and_the_dashboard_streams_it() {
    let running = start().await;
    let admin = running.admin_token().await;
    let mut events = dashboard(&running, &admin).await;
    let stats = next_event(&mut events, "stats", WAIT, |_| true).await;
    for field in ["connections", "users_online", "messages_total", "jobs"] {
        assert!(stats.get(field).is_some(), "stats carry {field}: {stats}");
    }
    let (ana, carla) = (running.signup("ana").await, running.signup("carla").await);
    let mut ana = running.ws(&ana).await;
    join_general(&mut ana).await;
    // Carla joins general once (so she is a member) and leaves: she is offline.
    let mut carla = running.ws(&carla).await;
    join_general(&mut carla).await;
    carla.close(None).await.unwrap();
    next_where(&mut ana, "carla going offline", |frame| {
        frame["type"] == "presence" && frame["user"] == "carla" && frame["status"] == "offline"
    })
    .await;

    send(
        &mut ana,
        json!({ "type": "send", "room": "general", "text": "hola @carla" }),
    )
    .await;

    // The dashboard sees the e-mail job run to the end.
    next_event(&mut events, "activity", JOB_WAIT, |activity| {
        activity["kind"] == "job" && activity["status"] == "done"
    })
    .await;
    let emails = emails_in(&running.outbox);
    assert_eq!(
        emails.len(),
        1,
        "one e-mail in {}",
        running.outbox.display()
    );
    assert!(
        emails[0]
            .lines()
            .any(|line| line.starts_with("To:") && line.contains("carla@example.com")),
        "the e-mail goes to carla: {}",
        emails[0]
    );
    let status = page_status(&running).await;
    assert_eq!(status["outbox"]["count"], 1);
    assert!(
        status["outbox"]["recent"][0]["to"]
            .as_str()
            .unwrap()
            .contains("carla@example.com")
    );
}
