//! The client side of the contract: accounts and tokens over HTTP, then WebSocket connections
//! that join rooms. Every wait on the server has a timeout.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt, TryStreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::progress;
use crate::target::{Kind, Target};

/// One WebSocket connection of the generator.
pub type Ws = WebSocketStream<TcpStream>;

/// How long one HTTP request, one upgrade or one expected frame may take.
pub const WAIT: Duration = Duration::from_secs(30);
/// The password of every generated account.
pub const PASSWORD: &str = "carga-de-prueba-1";
/// Connections per source address: Linux gives each (source, destination) pair about 28,000
/// ephemeral ports, so past this many the generator moves to 127.0.0.2, 127.0.0.3…
const PER_SOURCE_ADDRESS: usize = 20_000;
/// How much each generator connection reads at a time. tungstenite's default is 128 KiB, and it
/// zeroes the free part of its buffer before every read: with 10,000 connections receiving
/// 100-byte frames, `perf` showed 46 % of the generator's CPU in that `memset` (issue 13).
const CLIENT_READ_BUFFER: usize = 4 * 1024;
/// Registrations and logins in flight: the server hashes a few passwords at a time and answers
/// 503 past a 2 s wait, so more would only be retried.
const AUTH_CONCURRENCY: usize = 4;
/// Upgrades in flight while connections are opened.
const CONNECT_CONCURRENCY: usize = 64;

/// A prefix for this run's usernames and rooms (`[a-z0-9]`, so every name stays a valid
/// username and room slug), different on every run so runs never collide.
pub fn run_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mixed = (nanos ^ (u128::from(std::process::id()) << 40)) % 36u128.pow(6);
    let mut digits = Vec::new();
    let mut n = mixed;
    for _ in 0..6 {
        digits.push(char::from_digit((n % 36) as u32, 36).unwrap_or('0'));
        n /= 36;
    }
    format!("b{}", digits.into_iter().collect::<String>())
}

/// An HTTP client for a loopback server (no proxy, bounded waits).
pub fn http() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .context("no se pudo crear el cliente HTTP")
}

/// Registers `count` users `PREFIX_i` and logs each in; returns their tokens (empty strings for
/// the baseline, which has no accounts).
pub async fn accounts(
    target: &Target,
    http: &reqwest::Client,
    prefix: &str,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    if target.kind == Kind::Baseline {
        return Ok(vec![String::new(); count]);
    }
    let bar = progress::bar(count as u64, "cuentas y tokens");
    let tokens: Vec<String> = stream::iter(0..count)
        .map(|i| {
            let bar = bar.clone();
            async move {
                let username = format!("{prefix}_{i}");
                register(target, http, &username).await?;
                let token = login(target, http, &username, PASSWORD).await?;
                bar.inc(1);
                anyhow::Ok(token)
            }
        })
        .buffered(AUTH_CONCURRENCY)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    Ok(tokens)
}

/// Sends a request, retrying while the server answers 503 or 429 (it says when, in
/// `Retry-After`), at most 30 times.
async fn send_retrying(
    build: impl Fn() -> reqwest::RequestBuilder,
) -> anyhow::Result<reqwest::Response> {
    for _ in 0..30 {
        let response = build().send().await.context("petición HTTP")?;
        let status = response.status().as_u16();
        if status != 503 && status != 429 {
            return Ok(response);
        }
        let wait = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(1)
            .clamp(1, 5);
        tokio::time::sleep(Duration::from_millis(200 * wait)).await;
    }
    bail!("el servidor siguió respondiendo 503/429 tras 30 intentos")
}

/// Registers a user; one that already exists (409) is fine.
pub async fn register(
    target: &Target,
    http: &reqwest::Client,
    username: &str,
) -> anyhow::Result<()> {
    let body = json!({
        "username": username,
        "password": PASSWORD,
        "email": format!("{username}@carga.test"),
    });
    let response = send_retrying(|| http.post(target.url("/auth/register")).json(&body)).await?;
    match response.status().as_u16() {
        201 | 409 => Ok(()),
        status => bail!(
            "registro de {username}: HTTP {status}: {}",
            response.text().await.unwrap_or_default()
        ),
    }
}

/// Logs a user in and returns the access token.
pub async fn login(
    target: &Target,
    http: &reqwest::Client,
    username: &str,
    password: &str,
) -> anyhow::Result<String> {
    let body = json!({ "username": username, "password": password });
    let response = send_retrying(|| http.post(target.url("/auth/login")).json(&body)).await?;
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or_default();
    answer["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("login de {username}: HTTP {status}: {answer}"))
}

/// The admin's token (the `sse` and `jobs` scenarios); empty for the baseline.
pub async fn admin_token(target: &Target, http: &reqwest::Client) -> anyhow::Result<String> {
    if target.kind == Kind::Baseline {
        return Ok(String::new());
    }
    let Some((user, password)) = &target.admin else {
        bail!(
            "este escenario necesita la contraseña de admin: --admin-password o CHAT_ADMIN_PASSWORD"
        );
    };
    login(target, http, user, password).await
}

/// Creates a public room (nothing to do on the baseline, whose rooms exist when named).
pub async fn create_room(
    target: &Target,
    http: &reqwest::Client,
    token: &str,
    room: &str,
) -> anyhow::Result<()> {
    if target.kind == Kind::Baseline {
        return Ok(());
    }
    let body = json!({ "id": room, "name": format!("Carga {room}"), "private": false });
    let response = send_retrying(|| {
        http.post(target.url("/rooms"))
            .bearer_auth(token)
            .json(&body)
    })
    .await?;
    match response.status().as_u16() {
        201 | 409 => Ok(()),
        status => bail!(
            "no se pudo crear la sala {room}: HTTP {status}: {}",
            response.text().await.unwrap_or_default()
        ),
    }
}

/// The source address of connection number `index` (127.0.0.1, then .2, .3… every 20,000).
pub fn source_address(index: usize) -> Ipv4Addr {
    let step = (index / PER_SOURCE_ADDRESS).min(250) as u8;
    Ipv4Addr::new(127, 0, 0, 1 + step)
}

/// Opens a WebSocket to the target: `/ws?token=` on a chat, `/ws?room=` on the baseline.
pub async fn connect(target: &Target, token: &str, room: &str, index: usize) -> anyhow::Result<Ws> {
    let query = match target.kind {
        Kind::Chat => format!("token={token}"),
        Kind::Baseline => format!("room={room}"),
    };
    let url = format!("ws://{}/ws?{query}", target.addr);
    let request = url.into_client_request().context("URL de WebSocket")?;
    let open = async {
        let socket = TcpSocket::new_v4()?;
        // The first 20,000 let `connect` choose the port (it may reuse one that another
        // destination or a TIME-WAIT socket holds; `bind` with port 0 may not). Past them, a
        // source address of their own.
        if index >= PER_SOURCE_ADDRESS {
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::new(source_address(index).into(), 0))?;
        }
        let stream = socket.connect(target.addr).await?;
        stream.set_nodelay(true)?;
        let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
        let (ws, _) =
            tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
        anyhow::Ok(ws)
    };
    tokio::time::timeout(WAIT, open)
        .await
        .context("la conexión WebSocket no se abrió a tiempo")?
        .with_context(|| format!("conexión WebSocket número {index}"))
}

/// The fields of a server frame the generator looks at.
#[derive(Debug, Deserialize)]
pub struct Frame<'a> {
    #[serde(rename = "type", borrow, default)]
    pub kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    pub room: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub text: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub code: Option<std::borrow::Cow<'a, str>>,
}

/// The `join` frame of the contract.
pub fn join_frame(room: &str) -> Message {
    Message::text(json!({ "type": "join", "room": room }).to_string())
}

/// Sends `join` (chat) and waits for its `joined`; on the baseline, waits for the greeting it
/// sends on connect. Other frames that arrive meanwhile are skipped (they are counted by the
/// caller's readers later, not here).
pub async fn join(target: &Target, ws: &mut Ws, room: &str) -> anyhow::Result<()> {
    if target.kind == Kind::Chat {
        ws.send(join_frame(room)).await.context("enviar join")?;
    }
    wait_joined(ws, room).await
}

/// Waits for the `joined` of `room` (bounded by [`WAIT`]).
pub async fn wait_joined(ws: &mut Ws, room: &str) -> anyhow::Result<()> {
    let wait = async {
        while let Some(message) = ws.next().await {
            if let Message::Text(text) = message? {
                let frame: Frame = serde_json::from_str(&text).unwrap_or(Frame {
                    kind: "".into(),
                    room: None,
                    text: None,
                    code: None,
                });
                if frame.kind == "joined" && frame.room.as_deref().is_none_or(|r| r == room) {
                    return Ok(());
                }
                if frame.kind == "error" {
                    bail!("el servidor respondió al join con un error: {text}");
                }
            }
        }
        bail!("la conexión se cerró antes de «joined»")
    };
    tokio::time::timeout(WAIT, wait)
        .await
        .context("«joined» no llegó a tiempo")?
}

/// Opens `count` connections, connection `i` with `tokens[i % tokens.len()]` into
/// `room_of(i)`, each joined, `CONNECT_CONCURRENCY` at a time. Returns them in order.
pub async fn open_joined(
    target: &Target,
    tokens: &[String],
    count: usize,
    room_of: impl Fn(usize) -> String,
    what: &str,
) -> anyhow::Result<Vec<Ws>> {
    let bar = progress::bar(count as u64, what);
    let sockets: Vec<Ws> = stream::iter(0..count)
        .map(|i| {
            let token = &tokens[i % tokens.len()];
            let room = room_of(i);
            let bar = bar.clone();
            async move {
                let mut ws = connect(target, token, &room, i).await?;
                join(target, &mut ws, &room).await?;
                bar.inc(1);
                anyhow::Ok(ws)
            }
        })
        .buffered(CONNECT_CONCURRENCY)
        .try_collect()
        .await?;
    bar.finish_and_clear();
    Ok(sockets)
}

/// Users needed for `connections` connections at `per_user` connections each (the contract
/// allows 100 per user).
pub fn users_for(connections: usize, per_user: usize) -> usize {
    connections.div_ceil(per_user.clamp(1, 100)).max(1)
}
