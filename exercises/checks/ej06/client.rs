//! How the checks of exercise 6 talk to a running final project: HTTP with JSON answers, user
//! and room set-up with random names (the server may be a live class server), WebSocket
//! connections with bounded waits, and a Server-Sent Events reader.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::checks::registry::{Env, Failure, ProjectTarget};
use crate::checks::support::{self, WAIT, WsClient};

/// The password of every user the checks create.
pub const PASSWORD: &str = "clave-del-corrector";

/// A short random suffix: names never collide with a class's real users or another run.
pub fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..10].to_owned()
}

/// A fresh username (`[a-z0-9_]`, at most 32 characters).
pub fn username(prefix: &str) -> String {
    format!("{prefix}_{}", random())
}

/// A fresh room id (a slug).
pub fn room_id(prefix: &str) -> String {
    format!("{prefix}-{}", random())
}

/// The project under test, or the failure that says how to give one.
pub fn project(env: &Env) -> Result<Project, Failure> {
    let target = env.project.clone().ok_or_else(|| {
        Failure::new("no hay ningún servidor que comprobar")
            .expected("la dirección de tu proyecto final en marcha")
            .hint("ejecuta `cargo run -p exercises --bin grade -- --project http://HOST:PUERTO --admin-user U --admin-password P`")
    })?;
    Ok(Project {
        http: support::http(),
        target,
    })
}

/// An HTTP answer: status, headers and body (JSON when it parses, else `Null`).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Answer {
    /// `error.code` of a contract error body, if the body is one.
    pub fn error_code(&self) -> Option<&str> {
        self.body["error"]["code"].as_str()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The answer in one line, for failure messages.
    pub fn describe(&self) -> String {
        let mut body = self.text.clone();
        if body.chars().count() > 300 {
            body = body.chars().take(300).collect::<String>() + "…";
        }
        format!("{} {body}", self.status)
    }

    /// Fails unless the status is `status` and the body is the contract's error with `code`.
    pub fn expect_error(&self, what: &str, status: u16, code: &str) -> Result<(), Failure> {
        let message_ok = self.body["error"]["message"].is_string();
        if self.status == status && self.error_code() == Some(code) && message_ok {
            return Ok(());
        }
        Err(Failure::new(format!("{what}: la respuesta no es el error del contrato"))
            .expected(format!(
                "{status} con {{\"error\":{{\"code\":\"{code}\",\"message\":\"…\"}}}}"
            ))
            .got(self.describe())
            .hint("todas las respuestas 4xx/5xx llevan `{\"error\": {\"code\", \"message\"}}` (mira el apartado «Errors» del contrato)"))
    }
}

/// A user created by a check, with a token.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub email: String,
    pub token: String,
}

/// The project under test and an HTTP client.
pub struct Project {
    pub target: Arc<ProjectTarget>,
    pub http: reqwest::Client,
}

impl Project {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.target.base_url.trim_end_matches('/'))
    }

    /// `ws://…/ws?token=…`.
    pub fn ws_url(&self, token: &str) -> String {
        let base = self.target.base_url.trim_end_matches('/');
        let base = match base.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => base.replacen("http://", "ws://", 1),
        };
        format!("{base}/ws?token={token}")
    }

    /// Sends a request and reads the whole answer.
    pub async fn send(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, Failure> {
        let response = request.send().await.map_err(|error| {
            Failure::new(format!("{what}: el servidor no respondió"))
                .got(error.to_string())
                .hint(format!(
                    "¿Está en marcha tu servidor en {}?",
                    self.target.base_url
                ))
        })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.map_err(|error| {
            Failure::new(format!("{what}: la respuesta no llegó entera")).got(error.to_string())
        })?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            headers,
            body,
            text,
        })
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Result<Answer, Failure> {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(&format!("GET {path}"), request).await
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Result<Answer, Failure> {
        let mut request = self.http.post(self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(&format!("POST {path}"), request).await
    }

    pub async fn register(&self, name: &str, email: &str) -> Result<Answer, Failure> {
        let body = json!({ "username": name, "password": PASSWORD, "email": email });
        self.post("/auth/register", None, &body).await
    }

    pub async fn login(&self, name: &str, password: &str) -> Result<Answer, Failure> {
        let body = json!({ "username": name, "password": password });
        self.post("/auth/login", None, &body).await
    }

    /// A token for `name`, or a failure that says why not.
    pub async fn token(&self, name: &str, password: &str) -> Result<String, Failure> {
        let answer = self.login(name, password).await?;
        match answer.body["access_token"].as_str() {
            Some(token) if answer.status == 200 => Ok(token.to_owned()),
            _ => Err(Failure::new(format!("no pude iniciar sesión como «{name}»"))
                .expected("200 con {\"access_token\",\"token_type\":\"bearer\",\"expires_in\"}")
                .got(answer.describe())
                .hint("POST /auth/login devuelve el JWT del usuario (mira «Accounts» en el contrato)")),
        }
    }

    /// Registers a fresh user and logs it in.
    pub async fn user(&self, prefix: &str) -> Result<User, Failure> {
        let name = username(prefix);
        let email = format!("{name}@example.com");
        let answer = self.register(&name, &email).await?;
        if answer.status != 201 {
            return Err(
                Failure::new(format!("no pude registrar al usuario «{name}»"))
                    .expected("201 con {\"id\",\"username\",\"email\",\"role\"}")
                    .got(answer.describe())
                    .hint(
                        "POST /auth/register {\"username\",\"password\",\"email\"} crea la cuenta",
                    ),
            );
        }
        let token = self.token(&name, PASSWORD).await?;
        Ok(User { name, email, token })
    }

    /// The administrator's token (from `--admin-user` / `--admin-password`).
    pub async fn admin_token(&self) -> Result<String, Failure> {
        let (user, password) = (&self.target.admin_user, &self.target.admin_password);
        self.token(user, password).await.map_err(|failure| {
            failure.hint("¿Son correctos --admin-user y --admin-password? Es la cuenta que tu servidor crea al arrancar (CHAT_ADMIN_USERNAME / CHAT_ADMIN_PASSWORD)")
        })
    }

    /// Creates a room with a random id and returns the id.
    pub async fn room(&self, token: &str, prefix: &str, private: bool) -> Result<String, Failure> {
        let id = room_id(prefix);
        let body = json!({ "id": id, "name": format!("Sala {id}"), "private": private });
        let answer = self.post("/rooms", Some(token), &body).await?;
        if answer.status != 201 {
            return Err(Failure::new(format!("no pude crear la sala «{id}»"))
                .expected("201 con la sala")
                .got(answer.describe())
                .hint("POST /rooms {\"id\",\"name\",\"private\"} crea una sala"));
        }
        Ok(id)
    }

    /// A WebSocket connection authenticated with `token`.
    pub async fn ws(&self, token: &str) -> Result<Ws, Failure> {
        let client = WsClient::connect(&self.ws_url(token)).await?;
        Ok(Ws { client })
    }

    /// A connection whose TCP receive window is tiny: when it stops reading, the server's
    /// writes block after a few kilobytes (the slow-consumer check).
    pub async fn ws_small_window(&self, token: &str) -> Result<Ws, Failure> {
        let url = self.ws_url(token);
        let request = url.as_str().into_client_request().map_err(|error| {
            Failure::new(format!("URL de WebSocket no válida: {url}")).got(error.to_string())
        })?;
        let host = request.uri().host().unwrap_or("127.0.0.1").to_owned();
        let port = request.uri().port_u16().unwrap_or(80);
        let connect = async {
            let addr = tokio::net::lookup_host((host.as_str(), port))
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other("sin dirección"))?;
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_recv_buffer_size(4096)?;
            socket.connect(addr).await
        };
        let stream = match tokio::time::timeout(WAIT, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                return Err(
                    Failure::new(format!("no pude conectar con {url}")).got(error.to_string())
                );
            }
            Err(_) => {
                return Err(Failure::new(format!(
                    "la conexión con {url} no se abrió a tiempo"
                )));
            }
        };
        let handshake = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream));
        match tokio::time::timeout(WAIT, handshake).await {
            Ok(Ok((stream, _))) => Ok(Ws {
                client: WsClient::from_stream(stream),
            }),
            Ok(Err(error)) => {
                Err(Failure::new(format!("no se pudo abrir el WebSocket {url}"))
                    .got(error.to_string()))
            }
            Err(_) => Err(Failure::new(format!(
                "el WebSocket {url} no se abrió a tiempo"
            ))),
        }
    }

    /// Opens `GET /dashboard/events` as `token`'s user, with a `Last-Event-ID` when given.
    pub async fn sse(&self, token: &str, last_event_id: Option<&str>) -> Result<Sse, Failure> {
        self.open_sse(token, false, last_event_id).await
    }

    /// Opens `GET /dashboard/events?token=…`, as a browser's `EventSource` must (it cannot
    /// send headers).
    pub async fn sse_with_query_token(&self, token: &str) -> Result<Sse, Failure> {
        self.open_sse(token, true, None).await
    }

    async fn open_sse(
        &self,
        token: &str,
        in_query: bool,
        last_event_id: Option<&str>,
    ) -> Result<Sse, Failure> {
        let client = reqwest::Client::builder()
            .connect_timeout(WAIT)
            .build()
            .unwrap_or_default();
        let mut request = if in_query {
            client.get(self.url(&format!("/dashboard/events?token={token}")))
        } else {
            client.get(self.url("/dashboard/events")).bearer_auth(token)
        };
        request = request.header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = match tokio::time::timeout(WAIT, request.send()).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => {
                return Err(
                    Failure::new("GET /dashboard/events: el servidor no respondió")
                        .got(error.to_string()),
                );
            }
            Err(_) => {
                return Err(Failure::new("GET /dashboard/events no respondió a tiempo")
                    .hint("la respuesta de SSE empieza en cuanto se abre el stream; no esperes al primer evento para enviar las cabeceras"));
            }
        };
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if status != 200 || !content_type.starts_with("text/event-stream") {
            return Err(Failure::new(
                "GET /dashboard/events no abrió un stream de eventos para el admin",
            )
            .expected("200 con Content-Type: text/event-stream")
            .got(format!("{status} {content_type}"))
            .hint("el panel es un endpoint SSE (axum::response::Sse) solo para administradores"));
        }
        Ok(Sse {
            events: Box::pin(response.bytes_stream().eventsource()),
        })
    }
}

/// A WebSocket connection to the project, with the protocol's usual exchanges.
pub struct Ws {
    pub client: WsClient,
}

impl Ws {
    pub async fn send(&mut self, frame: &Value) -> Result<(), Failure> {
        self.client.send_json(frame).await
    }

    pub async fn recv(&mut self) -> Result<Value, Failure> {
        self.client.recv_json().await
    }

    /// The next frame of type `kind`, skipping others.
    pub async fn recv_type(&mut self, kind: &str) -> Result<Value, Failure> {
        self.client.recv_type(kind).await.map(|(frame, _)| frame)
    }

    /// The next frame of type `kind` that `matches`, skipping others.
    pub async fn recv_where(
        &mut self,
        what: &str,
        matches: impl Fn(&Value) -> bool,
    ) -> Result<Value, Failure> {
        let mut skipped = Vec::new();
        loop {
            match self.client.recv_json().await {
                Ok(frame) if matches(&frame) => return Ok(frame),
                Ok(frame) => {
                    skipped.push(frame);
                    if skipped.len() > 2000 {
                        skipped.drain(..1000);
                    }
                }
                Err(failure) => {
                    let last: Vec<Value> = skipped.iter().rev().take(8).rev().cloned().collect();
                    // Name what was awaited first: "esperaba {typing…}: no llegó ningún frame".
                    let failure = Failure {
                        what: format!("esperaba {what}: {}", failure.what),
                        ..failure
                    };
                    return Err(failure.expected(what.to_owned()).got(if last.is_empty() {
                        "nada".to_owned()
                    } else {
                        support::render(&last)
                    }));
                }
            }
        }
    }

    /// Joins `room`, returning the `joined` frame; an `error` frame instead is a failure.
    pub async fn join(&mut self, room: &str) -> Result<Value, Failure> {
        self.join_with(json!({ "type": "join", "room": room }))
            .await
    }

    pub async fn join_with(&mut self, frame: Value) -> Result<Value, Failure> {
        let room = frame["room"].clone();
        self.send(&frame).await?;
        let answer = self
            .recv_where(
                &format!("{{\"type\":\"joined\",\"room\":{room},…}}"),
                |frame| {
                    (frame["type"] == "joined" && frame["room"] == room) || frame["type"] == "error"
                },
            )
            .await?;
        if answer["type"] == "error" {
            return Err(
                Failure::new(format!("unirse a la sala {room} devolvió un error"))
                    .expected("{\"type\":\"joined\",\"room\",\"online\",\"history\"}")
                    .got(answer.to_string()),
            );
        }
        Ok(answer)
    }

    /// Sends `text` to `room` and returns the server's echo (the sender's own `message`).
    pub async fn say(&mut self, room: &str, text: &str) -> Result<Value, Failure> {
        self.send(&json!({ "type": "send", "room": room, "text": text }))
            .await?;
        self.echo(room, text).await
    }

    /// The `message` frame of `room` with `text`; an `error` instead is a failure.
    pub async fn echo(&mut self, room: &str, text: &str) -> Result<Value, Failure> {
        let answer = self
            .recv_where(
                &format!("el frame message de «{}» en la sala {room}", short(text)),
                |frame| {
                    (frame["type"] == "message" && frame["room"] == room && frame["text"] == text)
                        || frame["type"] == "error"
                },
            )
            .await?;
        if answer["type"] == "error" {
            return Err(
                Failure::new(format!("enviar un mensaje a «{room}» devolvió un error"))
                    .expected("el frame message con el texto enviado")
                    .got(answer.to_string()),
            );
        }
        Ok(answer)
    }

    /// The next `error` frame, which must carry `code`; other frames in between are a failure.
    pub async fn expect_error(&mut self, after: &str, code: &str) -> Result<Value, Failure> {
        let frame = self.recv().await.map_err(|failure| {
            failure
                .expected(format!("{{\"type\":\"error\",\"code\":\"{code}\"}} tras {after}"))
                .hint("cada frame inválido recibe su propio frame de error y la conexión sigue abierta")
        })?;
        if frame["type"] == "error" && frame["code"] == code && frame["message"].is_string() {
            return Ok(frame);
        }
        Err(Failure::new(format!("{after}: no llegó el error esperado"))
            .expected(format!(
                "{{\"type\":\"error\",\"code\":\"{code}\",\"message\":\"…\"}}"
            ))
            .got(frame.to_string())
            .hint("mira la lista de códigos de error del WebSocket en el contrato"))
    }

    /// Sends a ping and returns every frame that came before its pong: a sentinel that proves
    /// what did NOT arrive, without waiting on a timeout.
    pub async fn sync(&mut self) -> Result<Vec<Value>, Failure> {
        self.send(&json!({ "type": "ping" })).await?;
        let mut before = Vec::new();
        loop {
            let frame = self.recv().await.map_err(|failure| {
                failure
                    .expected("{\"type\":\"pong\"} en respuesta a {\"type\":\"ping\"}")
                    .hint("un frame ping recibe un pong")
            })?;
            if frame["type"] == "pong" {
                return Ok(before);
            }
            before.push(frame);
        }
    }

    /// Waits for the server's Close frame and returns its code (`None`: closed without one).
    pub async fn closed(&mut self, wait: Duration) -> Result<Option<u16>, Failure> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let next = tokio::time::timeout_at(deadline, self.client.stream().next()).await;
            match next {
                Err(_) => {
                    return Err(Failure::new(format!(
                        "el servidor no cerró la conexión en {} s",
                        wait.as_secs()
                    )));
                }
                Ok(None) | Ok(Some(Err(_))) => return Ok(None),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Ok(frame.map(|frame| u16::from(frame.code)));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// Closes the connection cleanly (best effort).
    pub async fn close(mut self) {
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = tokio::time::timeout(
            WAIT,
            futures_util::SinkExt::send(self.client.stream(), Message::Close(Some(frame))),
        )
        .await;
        let _ = self.closed(WAIT).await;
    }
}

/// The beginning of a long text, for messages.
pub fn short(text: &str) -> String {
    if text.chars().count() > 40 {
        text.chars().take(40).collect::<String>() + "…"
    } else {
        text.to_owned()
    }
}

/// The id of a `message` frame.
pub fn id_of(frame: &Value) -> u64 {
    frame["id"].as_u64().unwrap_or(0)
}

/// A Server-Sent Events stream, read with bounded waits.
pub struct Sse {
    events: Pin<
        Box<
            dyn Stream<Item = Result<Event, eventsource_stream::EventStreamError<reqwest::Error>>>
                + Send,
        >,
    >,
}

impl Sse {
    /// The next event named `name` that `matches`, within `wait`.
    pub async fn next_where(
        &mut self,
        what: &str,
        wait: Duration,
        matches: impl Fn(&Event, &Value) -> bool,
    ) -> Result<(Event, Value), Failure> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut seen: Vec<String> = Vec::new();
        loop {
            let next = tokio::time::timeout_at(deadline, self.events.next()).await;
            let event = match next {
                Err(_) => {
                    return Err(
                        Failure::new(format!("no llegó {what} en {} s", wait.as_secs())).got(
                            if seen.is_empty() {
                                "ningún evento".to_owned()
                            } else {
                                seen.iter()
                                    .rev()
                                    .take(5)
                                    .rev()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join("  ")
                            },
                        ),
                    );
                }
                Ok(None) => {
                    return Err(Failure::new(format!(
                        "el stream SSE se cerró antes de {what}"
                    )));
                }
                Ok(Some(Err(error))) => {
                    return Err(Failure::new(format!("el stream SSE falló antes de {what}"))
                        .got(error.to_string()));
                }
                Ok(Some(Ok(event))) => event,
            };
            let data: Value = serde_json::from_str(&event.data).unwrap_or(Value::Null);
            if matches(&event, &data) {
                return Ok((event, data));
            }
            seen.push(format!(
                "event: {} id: {} data: {}",
                event.event,
                event.id,
                short(&event.data)
            ));
        }
    }
}
