//! One WebSocket connection: a task that writes answers and forwards the events of the rooms it
//! joined, and beside it a reader (`read_frames`) that takes frames as they arrive and counts
//! them against the rate limit then (a frame that waits behind a slow one is not penalised).
//!
//! Everything the client sees is written in one `select!` loop, so its order is simply the
//! order in which this loop writes: a `joined` answer is written before any live message of that
//! room (those wait in the bounded queue meanwhile, and the ones the history already contained
//! are skipped by id).
//!
//! Frames are answered in order (contract 1.1). The answer to a `send` is the sender's own copy
//! of the broadcast, which reaches the queue like everyone else's (through Redis, later than the
//! append returns): the loop forwards the queue until that copy is written before it reads the
//! next frame. Writing the copy directly instead would overtake another node's messages with
//! lower ids that are still on their way, and the id filter would then drop them.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{AbortOnDropHandle, TaskTracker};

use super::hub::{self, Hub, Subscriber};
use super::protocol::{self, ClientFrame, ErrorCode, ErrorContext, FrameError, ServerFrame};
use crate::auth::AuthUser;
use crate::backend::{
    Audience, Backends, Checked, ConnId, Draft, HistoryQuery, RoomEvent, StoreError,
};
use crate::cache::Cache;
use crate::config::Config;
use crate::connections::Slot;
use crate::dashboard::Dashboard;
use crate::domain::{Room, RoomId, now_rfc3339};
use crate::events::{Activity, ActivityFeed};
use crate::jobs::Jobs;

/// Frames a connection's outbound queue holds before it counts as a slow consumer. (A window's
/// presence changes are one item, however many users changed.)
pub const OUTBOUND_QUEUE: usize = 256;
/// Most queued events written before one flush (write batching).
const WRITE_BATCH: usize = 64;
/// Frames read ahead while an earlier one is being answered (it may wait on the backend). Past
/// this the reader stops reading, and the peer's frames wait in TCP buffers.
const INBOUND_QUEUE: usize = 32;
/// Sustained frames per second a client may send.
pub const FRAMES_PER_SECOND: u32 = 20;
/// Frames a client may send in a burst (a new connection starts with a full burst).
pub const FRAME_BURST: u32 = 40;
/// History sent with `joined` when the client gives no `since`.
const JOIN_HISTORY: usize = 50;
/// Most messages sent with `joined` when the client gives `since`.
const RECOVERY_HISTORY: usize = 1000;
/// Longest a sender waits for its own message to come back through the fan-out. Only a broken
/// fan-out takes this long: then the connection closes with 1013 and the client recovers with
/// `since`, which finds the message in the history.
const ECHO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a join waits for its presence window (which closes within [`hub::LONGEST`], plus one
/// read of the backend): only a broken backend takes longer, and the join is answered
/// `unavailable`.
const WINDOW_TIMEOUT: Duration = Duration::from_secs(10);

/// Close codes of the contract.
mod close {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const INVALID_DATA: u16 = 1007;
    pub const TOO_BIG: u16 = 1009;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Why the loop ended, and how to say goodbye.
enum Exit {
    /// The peer vanished or broke the transport: nothing to send.
    Gone,
    /// The peer sent a Close: tungstenite has queued the answer (its code echoed, or 1002 for a
    /// code that may not be sent on the wire), which only needs flushing.
    PeerClosed,
    /// Close the socket with this code and reason.
    Close(u16, &'static str),
}

/// What a connection uses of the server: the upgrade handler takes each from the router's state
/// (`super::upgrade`), and the connection keeps them for as long as it lives.
pub struct Handles {
    /// The ping interval and the idle timeout.
    pub config: Arc<Config>,
    /// Rooms, history, presence and fan-out.
    pub backends: Backends,
    /// This node's subscribers and presence windows.
    pub hub: Arc<Hub>,
    /// Joins, leaves and messages, for the dashboard's journal.
    pub activity: ActivityFeed,
    /// Counts the open connections for the dashboard.
    pub dashboard: Dashboard,
    /// `GET /rooms`, stale after a first join changes a member count.
    pub cache: Cache,
    /// Where a message with mentions is handed over.
    pub jobs: Jobs,
    /// The presence windows' tasks, which shutdown waits for.
    pub tasks: TaskTracker,
    /// Cancelled when the server starts shutting down.
    pub shutdown: CancellationToken,
}

/// The state of one connection.
struct Connection {
    server: Handles,
    user: AuthUser,
    id: ConnId,
    /// Rooms joined → the highest message id already sent to the client for that room.
    joined: HashMap<RoomId, u64>,
    subscriber: Subscriber,
    /// The room events queued for this connection (the receiving end of `subscriber.queue`).
    events: mpsc::Receiver<Arc<RoomEvent>>,
}

/// The writing half of the socket; the reading half belongs to `read_frames`.
type Sink = SplitSink<WebSocket, Message>;

/// One read from the socket, with the rate limit's verdict taken when it arrived. It travels
/// boxed: the queue's first block of 32 slots is reserved when the connection opens, and 32
/// pointers are 256 B where 32 `Arrival`s were 2.3 KiB per connection, talking or not.
struct Arrival {
    incoming: Option<Result<Message, axum::Error>>,
    at: Instant,
    /// `false` for a data frame over the rate limit.
    allowed: bool,
}

impl Arrival {
    /// What an empty queue means: the reader ended, so the peer is gone.
    fn gone() -> Self {
        Self {
            incoming: None,
            at: Instant::now(),
            allowed: true,
        }
    }
}

// ANCHOR: read_frames
/// Reads frames as they arrive and counts each data frame against the rate limit then, not when
/// the connection gets to it: while an earlier frame waits on a slow backend, the frames that
/// arrive meanwhile are not counted as if they had all been sent at once. Ends after the read
/// that ends the connection, or when the connection stops listening.
async fn read_frames(
    mut stream: SplitStream<WebSocket>,
    limiter: DefaultDirectRateLimiter,
    arrivals: mpsc::Sender<Box<Arrival>>,
) {
    loop {
        let incoming = stream.next().await;
        let last = matches!(&incoming, None | Some(Err(_)) | Some(Ok(Message::Close(_))));
        let allowed = match &incoming {
            Some(Ok(Message::Text(_) | Message::Binary(_))) => limiter.check().is_ok(),
            _ => true,
        };
        let arrival = Box::new(Arrival {
            incoming,
            at: Instant::now(),
            allowed,
        });
        if arrivals.send(arrival).await.is_err() || last {
            return;
        }
    }
}
// ANCHOR_END: read_frames

/// A stored message the sender must see before its next frame is answered.
struct Echo {
    room: RoomId,
    id: u64,
}

/// Serves one upgraded connection until it closes, then cleans up its rooms and presence; the
/// connection holds its user's `slot` until then.
///
/// Not an `async fn`: a future keeps its arguments for as long as it lives, beside what it
/// builds from them, so every idle connection would hold the socket and the handles twice
/// (0.7 KiB). The setup runs here, and the future holds only what it built.
pub fn run(
    socket: WebSocket,
    server: Handles,
    user: AuthUser,
    slot: Slot,
) -> impl Future<Output = ()> + Send + 'static {
    // `chat_connections` +1 now, -1 when the connection ends, however it ends.
    let gauge = crate::metrics::ConnectionGauge::open();
    // Counted in the dashboard's `connections` while the connection lives.
    let counted = server.dashboard.connection_opened();
    let (queue, events) = mpsc::channel(OUTBOUND_QUEUE);
    let overflow = CancellationToken::new();
    let subscriber = Subscriber {
        user: user.username.as_str().into(),
        queue,
        overflow: overflow.clone(),
    };
    let quota = Quota::per_second(NonZeroU32::MIN.saturating_add(FRAMES_PER_SECOND - 1))
        .allow_burst(NonZeroU32::MIN.saturating_add(FRAME_BURST - 1));
    let (socket, stream) = socket.split();
    let (arrived, arrivals) = mpsc::channel(INBOUND_QUEUE);
    // Aborted when the connection ends, however it ends (even cancelled).
    let reader = AbortOnDropHandle::new(tokio::spawn(read_frames(
        stream,
        RateLimiter::direct(quota),
        arrived,
    )));
    let mut connection = Connection {
        id: ConnId::new_v4(),
        joined: HashMap::new(),
        subscriber,
        events,
        user,
        server,
    };
    async move {
        let _held = (slot, gauge, counted);
        connection.serve(socket, arrivals, reader, overflow).await;
    }
}

impl Connection {
    /// Runs the connection's loop until it ends, then leaves its rooms and says goodbye.
    async fn serve(
        &mut self,
        mut socket: Sink,
        mut arrivals: mpsc::Receiver<Box<Arrival>>,
        reader: AbortOnDropHandle<()>,
        overflow: CancellationToken,
    ) {
        self.connect().await;
        tracing::debug!(user = %self.user.username, conn = %self.id, "websocket conectado");

        let shutdown = self.server.shutdown.clone();
        let idle_timeout = self.server.config.idle_timeout();
        let mut pings = tokio::time::interval(self.server.config.ping_interval());
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        pings.tick().await;
        let mut last_heard = Instant::now();

        // ANCHOR: connection_loop
        let exit = loop {
            // Both answers are boxed: a task keeps room for the deepest `.await` it may reach (a
            // join's history and presence window), idle or not. Boxed, an idle connection holds only
            // the waits below, and answering costs one allocation per frame or batch of events.
            let step = async {
                tokio::select! {
                    arrival = arrivals.recv() => {
                        // The reader ends after the read that ends the connection: none left is gone.
                        let arrival = arrival.map_or_else(Arrival::gone, |arrival| *arrival);
                        last_heard = arrival.at;
                        Box::pin(self.on_incoming(&mut socket, arrival)).await
                    }
                    Some(event) = self.events.recv() => Box::pin(self.forward_queued(&mut socket, event)).await,
                    _ = pings.tick() => send(&mut socket, Message::Ping(Default::default())).await,
                    // Any frame, pongs included, proves the peer is alive and pushes this deadline back.
                    _ = tokio::time::sleep_until(last_heard + idle_timeout) => {
                        Err(Exit::Close(close::GOING_AWAY, "sin actividad: conexión cerrada"))
                    }
                }
            };
            // A write to a peer that stops reading waits until it reads again, maybe forever: the
            // step races shutdown and overflow, so such a peer cannot keep its connection open.
            let step = tokio::select! {
                biased;
                _ = shutdown.cancelled() => Err(Exit::Close(close::GOING_AWAY, "el servidor se está reiniciando")),
                _ = overflow.cancelled() => Err(Exit::Close(close::TRY_AGAIN_LATER, "reconecta y únete con since para recuperar lo perdido")),
                step = step => step,
            };
            if let Err(exit) = step {
                break exit;
            }
        };
        // ANCHOR_END: connection_loop
        drop(reader);

        // Leave first: the rooms must not wait for a peer that may never read its close frame.
        // Unreachable for mentions first, so whoever sees this user leave a room also knows that a
        // mention now becomes an e-mail.
        self.disconnect().await;
        self.leave_all().await;
        // The peer may be gone, or not reading: it gets as long as a silent peer would.
        match exit {
            Exit::Gone => {}
            // Flushing writes the queued answer; tungstenite then reports the connection closed.
            Exit::PeerClosed => {
                let _ = tokio::time::timeout(idle_timeout, socket.flush()).await;
            }
            Exit::Close(code, reason) => {
                let frame = CloseFrame {
                    code,
                    reason: Utf8Bytes::from_static(reason),
                };
                let _ =
                    tokio::time::timeout(idle_timeout, socket.send(Message::Close(Some(frame))))
                        .await;
            }
        }
        tracing::debug!(user = %self.user.username, conn = %self.id, "websocket cerrado");
    }
}

/// Longest a single write may wait for a peer that stopped reading. In a busy room the queue
/// overflows first (close 1013); this catches a non-reader in a quiet room.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Writes one message and flushes; a failed or stuck write means the peer is gone.
async fn send(socket: &mut Sink, message: Message) -> Result<(), Exit> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Exit::Gone),
    }
}

/// Writes one text frame without flushing: [`flush`] sends what was fed at once.
async fn feed(socket: &mut Sink, text: Utf8Bytes) -> Result<(), Exit> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.feed(Message::Text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Exit::Gone),
    }
}

async fn flush(socket: &mut Sink) -> Result<(), Exit> {
    match tokio::time::timeout(WRITE_TIMEOUT, socket.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) | Err(_) => Err(Exit::Gone),
    }
}

async fn send_text(socket: &mut Sink, text: impl Into<Utf8Bytes>) -> Result<(), Exit> {
    send(socket, Message::Text(text.into())).await
}

// ANCHOR: read_error
/// How a failed read ends the connection (RFC 6455, section 7.4): a message over the limit is
/// 1009, a text that is not UTF-8 is 1007, any other broken frame (unmasked, reserved bits or
/// opcode, a fragmented or oversized control frame, a stray continuation, a bad Close) is 1002.
/// A transport that failed has nobody left to tell.
fn exit_for(error: axum::Error) -> Exit {
    use tungstenite::error::{Error, ProtocolError};
    // axum wraps tungstenite's error; `into_inner` gives it back.
    let Ok(error) = error.into_inner().downcast::<Error>() else {
        return Exit::Gone;
    };
    match *error {
        Error::Capacity(_) => Exit::Close(close::TOO_BIG, "mensaje de más de 64 KiB"),
        Error::Utf8(_) => Exit::Close(close::INVALID_DATA, "el texto no es UTF-8 válido"),
        Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Exit::Gone,
        Error::Protocol(_) => Exit::Close(close::PROTOCOL_ERROR, "frame WebSocket no válido"),
        _ => Exit::Gone,
    }
}
// ANCHOR_END: read_error

impl Connection {
    async fn on_incoming(&mut self, socket: &mut Sink, arrival: Arrival) -> Result<(), Exit> {
        let message = match arrival.incoming {
            None => return Err(Exit::Gone),
            Some(Err(error)) => return Err(exit_for(error)),
            Some(Ok(message)) => message,
        };
        let text = match message {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
            // Pings are answered by the library; pongs only prove the peer is alive.
            Message::Ping(_) | Message::Pong(_) => return Ok(()),
            Message::Close(_) => return Err(Exit::PeerClosed),
        };
        // Parsed first only to know what an error frame must repeat (`room`, `client_id`).
        let (frame, context) = match text {
            Some(text) => protocol::parse_with_context(&text),
            None => (
                Err(FrameError::invalid("solo se aceptan frames de texto JSON")),
                ErrorContext::default(),
            ),
        };
        // The first check: every data frame counts against the rate limit, valid or not (counted
        // by the reader, when it arrived).
        if !arrival.allowed {
            let error = FrameError::new(
                ErrorCode::RateLimited,
                "demasiados frames: máximo 20 por segundo",
            );
            return send_text(socket, error.to_frame(&context)).await;
        }
        let answer = match frame {
            Ok(frame) => self.handle(socket, frame).await,
            Err(error) => Err(error),
        };
        match answer {
            Ok(None) => Ok(()),
            Ok(Some(echo)) => self.forward_until(socket, &echo).await,
            Err(error) => send_text(socket, error.to_frame(&context)).await,
        }
    }

    /// Forwards queued room events until the sender's own copy of `echo` has been written (or
    /// the room is no longer joined: access was revoked meanwhile). Events queued before it are
    /// written first, in order, so nothing with a lower id is skipped.
    async fn forward_until(&mut self, socket: &mut Sink, echo: &Echo) -> Result<(), Exit> {
        let deadline = Instant::now() + ECHO_TIMEOUT;
        while self
            .joined
            .get(&echo.room)
            .is_some_and(|sent_up_to| *sent_up_to < echo.id)
        {
            let next = match self.events.try_recv() {
                Ok(event) => Ok(Some(event)),
                // Nothing queued: send what was fed, then wait.
                Err(_) => {
                    flush(socket).await?;
                    tokio::time::timeout_at(deadline, self.events.recv()).await
                }
            };
            match next {
                Ok(Some(event)) => self.forward(socket, &event).await?,
                // The queue cannot close while this connection holds a sender of its own.
                Ok(None) => return Err(Exit::Gone),
                Err(_) => {
                    tracing::warn!(room = %echo.room, id = echo.id, "un mensaje enviado no volvió por la difusión");
                    return Err(Exit::Close(
                        close::TRY_AGAIN_LATER,
                        "reconecta y únete con since para recuperar lo perdido",
                    ));
                }
            }
        }
        flush(socket).await
    }

    /// Runs one valid frame. Errors become `error` frames; transport failures while answering
    /// are left for the next read to notice. A stored `send` returns the [`Echo`] the client
    /// must get before anything else is answered.
    async fn handle(
        &mut self,
        socket: &mut Sink,
        frame: ClientFrame,
    ) -> Result<Option<Echo>, FrameError> {
        match frame {
            ClientFrame::Join { room, since, epoch } => {
                self.join(socket, &room, since, epoch.as_deref()).await
            }
            ClientFrame::Leave { room } => self.leave(socket, &room).await,
            ClientFrame::Send {
                room,
                text,
                client_id,
            } => {
                return self.send_message(socket, &room, text, client_id).await;
            }
            ClientFrame::Typing { room } => self.typing(&room).await,
            ClientFrame::Ping => {
                let _ = send_text(socket, protocol::to_json(&ServerFrame::Pong)).await;
                Ok(())
            }
        }
        .map(|()| None)
    }

    async fn join(
        &mut self,
        socket: &mut Sink,
        room: &str,
        since: Option<u64>,
        epoch: Option<&str>,
    ) -> Result<(), FrameError> {
        let room_id = self.room_the_user_may_use(room).await?;
        let already_joined = self.joined.contains_key(&room_id);
        let joined = self
            .join_and_answer(socket, &room_id, since, epoch, already_joined)
            .await;
        if joined.is_err() && !already_joined {
            // The backend failed half-way: undo the subscription, or live messages of a room
            // the client was told nothing about would start to arrive.
            self.leave_room(&room_id).await;
        }
        joined
    }

    /// Subscribes (unless `already_joined`), records presence and membership, and answers with
    /// `joined`. A `since` counts only in the epoch the client names (or when it names none).
    /// A first join waits for the room's presence window ([`hub::Hub::join_window`]), which
    /// publishes its presence and gives the `online` list; a repeated join reads the list now.
    async fn join_and_answer(
        &mut self,
        socket: &mut Sink,
        room_id: &RoomId,
        since: Option<u64>,
        epoch: Option<&str>,
        already_joined: bool,
    ) -> Result<(), FrameError> {
        let room_id = room_id.clone();
        let backends = &self.server.backends;
        let mut window = None;
        if !already_joined {
            // Subscribe first, so nothing published from now on is missed; what arrives before
            // `joined` waits in the queue.
            self.server
                .hub
                .subscribe(&room_id, self.id, self.subscriber.clone());
            self.joined.insert(room_id.clone(), 0);
            self.server
                .activity
                .record(Activity::join(room_id.as_str(), &self.user.username));
            let new_member = backends
                .rooms
                .add_member(&room_id, &self.user.username)
                .await
                .map_err(unavailable)?;
            if new_member {
                // A first join of a public room: its member count in `GET /rooms` grew.
                self.server.cache.invalidate_rooms().await;
            }
            let first = backends
                .presence
                .join(&room_id, &self.user.username, self.id)
                .await
                .map_err(unavailable)?;
            let first = first.then_some(self.user.username.as_str());
            window = Some(
                self.server
                    .hub
                    .join_window(&room_id, self.id, first, &self.flush()),
            );
        }
        let current = backends
            .messages
            .epoch(&room_id)
            .await
            .map_err(unavailable)?;
        // Ids of another epoch mean nothing here: start again from the last messages.
        let reset = epoch.is_some_and(|epoch| epoch != current);
        let since = since.filter(|_| !reset);
        let query = match since {
            Some(after) => HistoryQuery::After {
                after,
                limit: RECOVERY_HISTORY,
            },
            None => HistoryQuery::Latest {
                limit: JOIN_HISTORY,
            },
        };
        let page = backends
            .messages
            .history(&room_id, query)
            .await
            .map_err(unavailable)?;
        // The history is read while the window is open; what is stored meanwhile is queued.
        let online = match window {
            Some(window) => match tokio::time::timeout(WINDOW_TIMEOUT, window).await {
                Ok(Ok(online)) => online,
                Ok(Err(_)) | Err(_) => {
                    return Err(unavailable(StoreError::Unavailable(
                        "la ventana de presencia no respondió".into(),
                    )));
                }
            },
            None => Arc::new(
                backends
                    .presence
                    .online(&room_id)
                    .await
                    .map_err(unavailable)?,
            ),
        };
        let answer = protocol::joined(&protocol::Joined {
            room: room_id.as_str(),
            online: &online,
            history: &page.frames,
            epoch: &current,
            reset,
            truncated: since.is_some() && page.has_more,
            has_more: since.is_none().then_some(page.has_more),
        });
        let newest = page.frames.last().map_or(0, |frame| frame.id);
        if let Some(floor) = self.joined.get_mut(&room_id) {
            // After a reset the ids started again: what was sent before says nothing.
            *floor = if reset { newest } else { (*floor).max(newest) };
        }
        let _ = send_text(socket, answer).await;
        Ok(())
    }

    async fn leave(&mut self, socket: &mut Sink, room: &str) -> Result<(), FrameError> {
        let room_id = self.joined_room(room)?;
        self.leave_room(&room_id).await;
        let _ = send_text(
            socket,
            protocol::to_json(&ServerFrame::Left {
                room: room_id.as_str(),
            }),
        )
        .await;
        Ok(())
    }

    // ANCHOR: send_message
    async fn send_message(
        &mut self,
        socket: &mut Sink,
        room: &str,
        text: String,
        client_id: Option<String>,
    ) -> Result<Option<Echo>, FrameError> {
        let valid_text = protocol::check_text(&text);
        let room_id = match self.joined_room(room) {
            // The common case: a joined room and a valid text. The backend checks the rest with
            // the append, in one round trip (with Redis, one script).
            Ok(room_id) if valid_text.is_ok() => room_id,
            // An error is due: the room's checks come before the text's (contract order).
            _ => {
                let room_id = self.room_in_use(room).await?;
                valid_text?;
                room_id
            }
        };
        // Only a text with an `@` can mention someone: keep it for the mention logic.
        let mentions = text.contains('@').then(|| (room_id.clone(), text.clone()));
        let draft = Draft {
            room: room_id.clone(),
            user: self.user.username.clone(),
            text,
            client_id,
            ts: now_rfc3339(),
        };
        let backends = &self.server.backends;
        let checked = backends
            .messages
            .append_checked(backends.rooms.as_ref(), draft)
            .await
            .map_err(unavailable)?;
        let frame = match checked {
            Checked::Stored(frame) => frame,
            Checked::Duplicate(frame) => {
                // A retry of a send we already stored: answer the sender alone with the original.
                let _ = send_text(socket, frame.json).await;
                return Ok(None);
            }
            // The joined room vanished (a Redis emptied), or access to it was revoked: stop
            // delivering it, as `room_in_use` does.
            Checked::NotFound => {
                self.leave_room(&room_id).await;
                return Err(room_not_found(room));
            }
            Checked::NotMember => {
                self.leave_room(&room_id).await;
                return Err(access_revoked());
            }
        };
        crate::metrics::message_stored();
        self.server
            .activity
            .record(Activity::message(room, &self.user.username, frame.id));
        if let Some((room_id, text)) = mentions {
            // Queued, never awaited: notifications and e-mails happen off this path.
            let author = &self.user.username;
            self.server
                .jobs
                .message_sent(room_id, frame.id, author, text);
        }
        Ok(Some(Echo {
            room: room_id,
            id: frame.id,
        }))
    }
    // ANCHOR_END: send_message

    async fn typing(&mut self, room: &str) -> Result<(), FrameError> {
        let room_id = self.room_in_use(room).await?;
        let frame = protocol::to_json(&ServerFrame::Typing {
            room: room_id.as_str(),
            user: &self.user.username,
        });
        let event = RoomEvent {
            room: room_id,
            message_id: None,
            audience: Audience::AllBut(self.user.username.clone()),
            frame: frame.into(),
        };
        self.server
            .backends
            .fanout
            .publish(event)
            .await
            .map_err(unavailable)
    }

    // ANCHOR: forward_queued
    /// Writes a queued event and whatever else is queued already (up to [`WRITE_BATCH`]
    /// events), then flushes once: a burst costs one flush, not one per frame.
    async fn forward_queued(
        &mut self,
        socket: &mut Sink,
        event: Arc<RoomEvent>,
    ) -> Result<(), Exit> {
        self.forward(socket, &event).await?;
        for _ in 1..WRITE_BATCH {
            let Ok(event) = self.events.try_recv() else {
                break;
            };
            self.forward(socket, &event).await?;
        }
        flush(socket).await
    }
    // ANCHOR_END: forward_queued

    // ANCHOR: forward
    /// Feeds a room event to the socket (the caller flushes), unless the client left the room
    /// or already got the message in a `joined` history.
    async fn forward(&mut self, socket: &mut Sink, event: &Arc<RoomEvent>) -> Result<(), Exit> {
        if let Audience::User(_) = event.audience {
            // Addressed to this user (a mention), whether or not they joined the room.
            return feed(socket, event.frame.clone()).await;
        }
        let Some(sent_up_to) = self.joined.get_mut(&event.room) else {
            return Ok(());
        };
        match &event.audience {
            Audience::Revoked(_) => {
                // Removed from a private room: stop receiving it at once, on every node.
                flush(socket).await?;
                self.leave_room(&event.room).await;
                return feed(socket, event.frame.clone()).await;
            }
            Audience::Presence(batch) => {
                // A window's changes: each user's frame, but not those about this user.
                for change in &batch.changes {
                    if change.user != self.user.username {
                        feed(socket, change.frame.clone()).await?;
                    }
                }
                return Ok(());
            }
            _ => {}
        }
        if let Some(id) = event.message_id {
            if id <= *sent_up_to {
                return Ok(());
            }
            *sent_up_to = id;
        }
        feed(socket, event.frame.clone()).await
    }
    // ANCHOR_END: forward

    /// The room id if the room exists and the user may join it (`not_found`, `not_member`).
    async fn room_the_user_may_use(&self, room: &str) -> Result<RoomId, FrameError> {
        let (room_id, stored) = self.existing_room(room).await?;
        let backends = &self.server.backends;
        if stored.private
            && !backends
                .rooms
                .is_member(&room_id, &self.user.username)
                .await
                .map_err(unavailable)?
        {
            return Err(FrameError::new(
                ErrorCode::NotMember,
                "esta sala es privada y no eres miembro",
            ));
        }
        Ok(room_id)
    }

    /// The room's id and record, or `not_found` (an id that is not a slug names no room).
    async fn existing_room(&self, room: &str) -> Result<(RoomId, Room), FrameError> {
        let not_found = || room_not_found(room);
        let room_id = RoomId::parse(room).map_err(|_| not_found())?;
        let stored = self
            .server
            .backends
            .rooms
            .room(&room_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(not_found)?;
        Ok((room_id, stored))
    }

    /// The id of a room this connection has joined, or `not_member`.
    fn joined_room(&self, room: &str) -> Result<RoomId, FrameError> {
        RoomId::parse(room)
            .ok()
            .filter(|room_id| self.joined.contains_key(room_id))
            .ok_or_else(|| {
                FrameError::new(
                    ErrorCode::NotMember,
                    format!("no te has unido a la sala «{room}»"),
                )
            })
    }

    // ANCHOR: check_still_allowed
    /// The room of a `send` or `typing`, checked in the contract's order: it exists
    /// (`not_found`), then this connection joined it and may still use it (`not_member`).
    /// Authorization is checked on every frame, not only at join: a user who lost access to a
    /// private room is taken out of it.
    async fn room_in_use(&mut self, room: &str) -> Result<RoomId, FrameError> {
        let (room_id, stored) = match self.existing_room(room).await {
            Ok(found) => found,
            Err(error) => {
                // A joined room that vanished (a Redis emptied): stop delivering it.
                if let (ErrorCode::NotFound, Ok(room_id)) = (error.code, self.joined_room(room)) {
                    self.leave_room(&room_id).await;
                }
                return Err(error);
            }
        };
        let room_id = self.joined_room(room_id.as_str())?;
        let allowed = !stored.private
            || self
                .server
                .backends
                .rooms
                .is_member(&room_id, &self.user.username)
                .await
                .map_err(unavailable)?;
        if allowed {
            return Ok(room_id);
        }
        self.leave_room(&room_id).await;
        Err(access_revoked())
    }
    // ANCHOR_END: check_still_allowed

    async fn leave_room(&mut self, room_id: &RoomId) {
        self.server.hub.unsubscribe(room_id, self.id);
        if self.joined.remove(room_id).is_some() {
            self.server
                .activity
                .record(Activity::leave(room_id.as_str(), &self.user.username));
        }
        match self
            .server
            .backends
            .presence
            .leave(room_id, &self.user.username, self.id)
            .await
        {
            Ok(true) => {
                let user = &self.user.username;
                self.server.hub.left_window(room_id, user, &self.flush());
            }
            Ok(false) => {}
            Err(error) => {
                tracing::warn!(%error, room = %room_id, "no se pudo registrar una salida")
            }
        }
    }

    /// Makes the connection reachable by user-addressed events (mentions) on any node.
    async fn connect(&self) {
        let (user, server) = (&self.user.username, &self.server);
        server.hub.connect(self.id, self.subscriber.clone());
        if let Err(error) = server.backends.presence.connect(user, self.id).await {
            tracing::warn!(%error, "no se pudo registrar una conexión");
        }
    }

    /// Undoes [`Connection::connect`].
    async fn disconnect(&self) {
        let (user, server) = (&self.user.username, &self.server);
        server.hub.disconnect(user, self.id);
        if let Err(error) = server.backends.presence.disconnect(user, self.id).await {
            tracing::warn!(%error, "no se pudo registrar una desconexión");
        }
    }

    async fn leave_all(&mut self) {
        let rooms: Vec<RoomId> = self.joined.keys().cloned().collect();
        for room_id in rooms {
            self.leave_room(&room_id).await;
        }
    }

    /// What the hub's presence windows need from this server.
    fn flush(&self) -> hub::Flush {
        hub::Flush {
            presence: self.server.backends.presence.clone(),
            fanout: self.server.backends.fanout.clone(),
            tasks: self.server.tasks.clone(),
            shutdown: self.server.shutdown.clone(),
        }
    }
}

/// `not_found` for a room id that names no room.
fn room_not_found(room: &str) -> FrameError {
    FrameError::new(ErrorCode::NotFound, format!("la sala «{room}» no existe"))
}

/// `not_member` for a joined private room the user was removed from.
fn access_revoked() -> FrameError {
    FrameError::new(ErrorCode::NotMember, "ya no tienes acceso a esta sala")
}

/// A backend failure, as the client sees it.
fn unavailable(error: StoreError) -> FrameError {
    tracing::error!(%error, "el backend falló al atender un frame del websocket");
    FrameError::new(
        ErrorCode::Unavailable,
        "el servicio no está disponible; inténtalo de nuevo",
    )
}
