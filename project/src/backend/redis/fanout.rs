//! Fan-out through one Redis pub/sub channel, `{p}:events`.
//!
//! Every node publishes there (messages from `append.lua`, presence and typing from
//! [`RedisFanout`]) and every node runs one [`Listener`] that hands each event to its local hub.
//! Redis delivers a channel's messages to each subscriber in publish order, which is what keeps
//! a room's messages in id order on every node.
//!
//! The payload of one event is four fields separated by `\n`, the frame last because it may
//! contain anything (room ids and usernames never contain `\n`):
//! `room \n message id or empty \n audience \n frame`, where the audience is empty for everyone,
//! `-user` for everyone but that user, `!user` for that user alone, who loses the room, and
//! `@user` for every connection of that user, joined to the room or not (a `notification`).
//!
//! Pub/sub is fire-and-forget: while a node is reconnecting it misses events. Messages are still
//! in the history, and clients catch up by joining with `since`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use redis::AsyncCommands;
use redis::Value;
use redis::aio::{ConnectionManager, PubSubSink, PubSubStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{Keys, RESPONSE_TIMEOUT, store_error};
use crate::backend::{Audience, Fanout, RoomEvent, StoreError, StoreResult};
use crate::domain::RoomId;
use crate::ws::hub::Hub;

/// How often the listener pings Redis, so that a connection that died silently (no TCP reset)
/// is noticed and replaced. (A subscribed connection answers pings but no other command.)
const PING_EVERY: Duration = Duration::from_secs(15);
/// The first wait before reconnecting; it doubles after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Publishes the events that are not stored (presence, typing).
pub(super) struct RedisFanout {
    conn: ConnectionManager,
    channel: String,
}

impl RedisFanout {
    pub(super) fn new(conn: ConnectionManager, keys: Keys) -> Self {
        Self {
            conn,
            channel: keys.events(),
        }
    }
}

#[async_trait]
impl Fanout for RedisFanout {
    async fn publish(&self, event: RoomEvent) -> StoreResult<()> {
        let payload = encode(&event)?;
        let _receivers: u64 = self
            .conn
            .clone()
            .publish(&self.channel, payload)
            .await
            .map_err(store_error)?;
        Ok(())
    }
}

/// Writes an event in the channel's format (see the module docs).
fn encode(event: &RoomEvent) -> StoreResult<String> {
    let audience = match &event.audience {
        Audience::Everyone => String::new(),
        Audience::AllBut(user) => format!("-{user}"),
        Audience::Revoked(user) => format!("!{user}"),
        Audience::User(user) => format!("@{user}"),
    };
    if audience.contains('\n') {
        return Err(StoreError::Corrupt(format!(
            "usuario inválido: {audience:?}"
        )));
    }
    let message_id = event
        .message_id
        .map(|id| id.to_string())
        .unwrap_or_default();
    Ok(format!(
        "{}\n{message_id}\n{audience}\n{}",
        event.room,
        event.frame.as_str()
    ))
}

/// Reads an event in the channel's format; `None` for anything else.
fn decode(payload: &[u8]) -> Option<RoomEvent> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut fields = text.splitn(4, '\n');
    let room = RoomId::parse(fields.next()?).ok()?;
    let message_id = match fields.next()? {
        "" => None,
        id => Some(id.parse().ok()?),
    };
    let audience = match fields.next()? {
        "" => Audience::Everyone,
        other => match other.split_at(1) {
            ("-", user) => Audience::AllBut(user.to_owned()),
            ("!", user) => Audience::Revoked(user.to_owned()),
            ("@", user) => Audience::User(user.to_owned()),
            _ => return None,
        },
    };
    Some(RoomEvent {
        room,
        message_id,
        audience,
        frame: fields.next()?.to_owned().into(),
    })
}

/// This node's subscription to the events channel.
pub(super) struct Listener {
    client: redis::Client,
    channel: String,
    hub: Arc<Hub>,
    sink: PubSubSink,
    stream: PubSubStream,
}

impl Listener {
    /// Connects and subscribes; when this returns, every event published from now on arrives.
    pub(super) async fn subscribe(
        client: redis::Client,
        channel: String,
        hub: Arc<Hub>,
    ) -> StoreResult<Self> {
        let (sink, stream) = connect(&client, &channel).await?;
        Ok(Self {
            client,
            channel,
            hub,
            sink,
            stream,
        })
    }

    /// Delivers events to the hub until `shutdown`, reconnecting whenever the connection drops.
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        loop {
            self.deliver_until_dropped(&shutdown).await;
            if shutdown.is_cancelled() {
                return;
            }
            tracing::warn!("conexión pub/sub con Redis perdida; reconectando");
            let Some((sink, stream)) = self.reconnect(&shutdown).await else {
                return;
            };
            (self.sink, self.stream) = (sink, stream);
            tracing::info!("conexión pub/sub con Redis restablecida");
            // Events published while we were away are lost for this node's clients; make them
            // rejoin with `since`, which fetches exactly those from the history.
            self.hub.resync_everyone();
        }
    }

    /// Hands each event to the hub; returns on shutdown or when the connection is lost.
    async fn deliver_until_dropped(&mut self, shutdown: &CancellationToken) {
        let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                message = self.stream.next() => {
                    // The stream ends when the connection is closed.
                    let Some(message) = message else { return };
                    match decode(message.get_payload_bytes()) {
                        Some(event) => self.hub.deliver(event),
                        None => tracing::warn!("evento de Redis ilegible; se descarta"),
                    }
                }
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(RESPONSE_TIMEOUT, self.sink.ping::<Value>());
                    if !matches!(pong.await, Ok(Ok(_))) {
                        return;
                    }
                }
            }
        }
    }

    /// Tries to subscribe again, waiting longer after each failure; `None` on shutdown.
    async fn reconnect(&self, shutdown: &CancellationToken) -> Option<(PubSubSink, PubSubStream)> {
        let mut backoff = MIN_BACKOFF;
        loop {
            shutdown
                .run_until_cancelled(tokio::time::sleep(backoff))
                .await?;
            match shutdown
                .run_until_cancelled(connect(&self.client, &self.channel))
                .await?
            {
                Ok(subscription) => return Some(subscription),
                Err(err) => tracing::warn!(%err, "no se pudo reconectar el pub/sub con Redis"),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Opens a dedicated pub/sub connection and subscribes it to the channel. The library sets no
/// time limit on this connection, so we do.
async fn connect(client: &redis::Client, channel: &str) -> StoreResult<(PubSubSink, PubSubStream)> {
    let subscribe = async {
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        Ok(pubsub.split())
    };
    match tokio::time::timeout(RESPONSE_TIMEOUT, subscribe).await {
        Ok(subscribed) => subscribed.map_err(store_error),
        Err(_) => Err(StoreError::Unavailable("Redis no responde".into())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_the_wire_format_even_with_newlines_in_the_frame() {
        let event = RoomEvent {
            room: RoomId::general(),
            message_id: Some(42),
            audience: Audience::AllBut("ana".into()),
            frame: "{\"text\":\"a\nb\n\nc\"}".into(),
        };
        let wire = encode(&event).unwrap();
        assert_eq!(decode(wire.as_bytes()), Some(event));
        let bare = RoomEvent {
            message_id: None,
            audience: Audience::Revoked("bea".into()),
            ..decode(wire.as_bytes()).unwrap()
        };
        assert_eq!(decode(encode(&bare).unwrap().as_bytes()), Some(bare));
        let addressed = RoomEvent {
            audience: Audience::User("carl".into()),
            ..decode(wire.as_bytes()).unwrap()
        };
        assert_eq!(
            decode(encode(&addressed).unwrap().as_bytes()),
            Some(addressed)
        );
    }

    #[test]
    fn bad_payloads_are_rejected_not_panicked_on() {
        for bad in [
            &b"general"[..],
            b"Sala\n\n\n{}",
            b"general\nx\n\n{}",
            b"\xff\n\n\n",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
