//! The yardstick: the least a WebSocket broadcast server can do, written with the same stack
//! as the chat (axum, tokio, tungstenite), so that the difference between the two is what the
//! chat does on top: accounts, JSON parsing, checks, history, presence, mentions.
//!
//! - `GET /ws?room=R`: greets with `{"type":"joined"}` and then sends every text frame any
//!   connection of room R sends to every connection of R, the sender's included, raw (no JSON
//!   parsing). No accounts, no history, no rate limit.
//! - `GET /dashboard/events`: a fixed `stats` event every second, to every subscriber, from
//!   one timer (nothing computed).
//! - A 4 KiB read buffer per connection and `TCP_NODELAY`, as a tuned server would have.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::response::Response;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use axum::serve::ListenerExt;
use futures_util::Stream;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::broadcast::{self, error::RecvError};

/// Frames queued per room before a slow connection is dropped (with 1013, as the chat does).
const ROOM_QUEUE: usize = 4096;
/// What a connection gets first, so a client knows it is subscribed.
const JOINED: &str = r#"{"type":"joined"}"#;
/// The fixed dashboard event.
const STATS: &str = r#"{"connections":0,"users_online":0,"rooms":[],"messages_total":0,"jobs":{"pending":0,"running":0,"done":0,"failed":0,"dead":0},"ts":"1970-01-01T00:00:00.000Z"}"#;

#[derive(Clone, Default)]
struct Rooms {
    senders: Arc<Mutex<HashMap<String, broadcast::Sender<Utf8Bytes>>>>,
    tick: Option<broadcast::Sender<()>>,
}

impl Rooms {
    fn room(&self, name: &str) -> broadcast::Sender<Utf8Bytes> {
        let mut senders = match self.senders.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        senders
            .entry(name.to_owned())
            .or_insert_with(|| broadcast::channel(ROOM_QUEUE).0)
            .clone()
    }
}

#[derive(Deserialize)]
struct RoomQuery {
    #[serde(default)]
    room: String,
}

/// Serves the baseline on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (tick, _) = broadcast::channel(4);
    let ticker = tick.clone();
    let timer = tokio::spawn(async move {
        let mut every_second = tokio::time::interval(Duration::from_secs(1));
        loop {
            every_second.tick().await;
            let _ = ticker.send(());
        }
    });
    let state = Rooms {
        tick: Some(tick),
        ..Rooms::default()
    };
    let app = Router::new()
        .route("/ws", get(upgrade))
        .route("/dashboard/events", get(events))
        .route("/health", get(|| async { r#"{"status":"ok"}"# }))
        .with_state(state);
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    timer.abort();
    served
}

/// Starts the baseline on 127.0.0.1 (a free port) in this process; dropping the sender stops it.
pub async fn spawn_in_process() -> std::io::Result<(SocketAddr, tokio::sync::oneshot::Sender<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, async move {
        let _ = stopped.await;
    }));
    Ok((addr, stop))
}

async fn upgrade(
    ws: WebSocketUpgrade,
    Query(query): Query<RoomQuery>,
    State(rooms): State<Rooms>,
) -> Response {
    let room = rooms.room(&query.room);
    ws.read_buffer_size(4096)
        .on_upgrade(move |socket| connection(socket, room))
}

async fn connection(mut socket: WebSocket, room: broadcast::Sender<Utf8Bytes>) {
    let mut deliveries = room.subscribe();
    if socket.send(Message::Text(JOINED.into())).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let _ = room.send(text);
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            outgoing = deliveries.recv() => match outgoing {
                Ok(text) => {
                    if socket.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    let close = CloseFrame { code: 1013, reason: "demasiado lento".into() };
                    let _ = socket.send(Message::Close(Some(close))).await;
                    break;
                }
                Err(RecvError::Closed) => break,
            },
        }
    }
}

async fn events(State(rooms): State<Rooms>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ticks = rooms.tick.as_ref().map(broadcast::Sender::subscribe);
    let stream = futures_util::stream::unfold(ticks, |ticks| async move {
        let mut ticks = ticks?;
        loop {
            match ticks.recv().await {
                Ok(()) => {
                    return Some((Ok(Event::default().event("stats").data(STATS)), Some(ticks)));
                }
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
}
