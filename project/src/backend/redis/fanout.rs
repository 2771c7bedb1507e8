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
//! `@user` for every connection of that user, joined to the room or not (a `notification`), and
//! `*` for every connection of every user (the `rooms_changed` of a new public room).
//! A window's presence changes ([`PresenceBatch`]) are one event: the audience is
//! `#node:number` and the frame field holds one line per user, `user frame` (a JSON frame
//! never contains a raw `\n`, a username never a space).
//!
//! Pub/sub is fire-and-forget: while a node is reconnecting it misses events. Messages are still
//! in the history, and clients catch up by joining with `since`.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::pubsub::{Delivery, Subscription};
use super::{Keys, store_error};
use crate::backend::{
    Audience, EventSink, Fanout, PresenceBatch, PresenceChange, RoomEvent, StoreError, StoreResult,
};
use crate::domain::RoomId;

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
        Audience::AllUsers => "*".to_owned(),
        Audience::Presence(batch) => {
            return encode_presence(&event.room, batch);
        }
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

/// Writes a window's presence changes: one line per user after the header.
fn encode_presence(room: &RoomId, batch: &PresenceBatch) -> StoreResult<String> {
    let mut payload = format!("{room}\n\n#{}:{}\n", batch.origin, batch.seq);
    for (i, change) in batch.changes.iter().enumerate() {
        let frame = change.frame.as_str();
        if change.user.contains([' ', '\n']) || frame.contains('\n') {
            return Err(StoreError::Corrupt(format!(
                "presencia inválida: {:?}",
                change.user
            )));
        }
        if i > 0 {
            payload.push('\n');
        }
        payload.push_str(&change.user);
        payload.push(' ');
        payload.push_str(frame);
    }
    Ok(payload)
}

/// Reads the lines of a presence event (see [`encode_presence`]).
fn decode_presence(tag: &str, body: &str) -> Option<Audience> {
    let (origin, seq) = tag.split_once(':')?;
    let changes = body
        .split('\n')
        .map(|line| {
            let (user, frame) = line.split_once(' ')?;
            Some(PresenceChange {
                user: user.to_owned(),
                frame: frame.to_owned().into(),
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Audience::Presence(std::sync::Arc::new(PresenceBatch {
        origin: origin.parse().ok()?,
        seq: seq.parse().ok()?,
        changes,
    })))
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
        // By character, never by byte index: the payload may hold anything, and slicing inside
        // a multi-byte character panics (which would stop this node's listener).
        other => {
            let mut chars = other.chars();
            let marker = chars.next()?;
            let user = chars.as_str().to_owned();
            if marker == '#' {
                let audience = decode_presence(&user, fields.next()?)?;
                return Some(RoomEvent {
                    room,
                    message_id: None,
                    audience,
                    frame: Default::default(),
                });
            }
            match marker {
                '-' => Audience::AllBut(user),
                '!' => Audience::Revoked(user),
                '@' => Audience::User(user),
                '*' if user.is_empty() => Audience::AllUsers,
                _ => return None,
            }
        }
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
    subscription: Subscription,
    sink: Arc<dyn EventSink>,
}

impl Listener {
    /// Connects and subscribes; when this returns, every event published from now on arrives.
    pub(super) async fn subscribe(
        client: redis::Client,
        channel: String,
        sink: Arc<dyn EventSink>,
    ) -> StoreResult<Self> {
        let subscription = Subscription::open(client, channel).await?;
        Ok(Self { subscription, sink })
    }

    /// What the app's [`Supervisor`](crate::supervisor::Supervisor) runs: `first`, and after a
    /// failure (the listener panicked, or stopped before `shutdown`) a new subscription, after
    /// which this node's clients are told to rejoin with `since`, which fetches the events
    /// missed meanwhile.
    pub(super) fn restarts(
        first: Self,
        client: redis::Client,
        channel: String,
        sink: Arc<dyn EventSink>,
        shutdown: CancellationToken,
    ) -> impl FnMut() -> BoxFuture<'static, ()> + Send + 'static {
        let mut first = Some(first);
        move || {
            let first = first.take();
            let (client, channel, sink, stop) = (
                client.clone(),
                channel.clone(),
                sink.clone(),
                shutdown.clone(),
            );
            async move {
                let listener = match first {
                    Some(listener) => listener,
                    None => match Self::subscribe(client, channel, sink.clone()).await {
                        Ok(listener) => {
                            sink.resync_everyone();
                            listener
                        }
                        Err(error) => {
                            tracing::warn!(%error, "no se pudo suscribir a los eventos de Redis");
                            return;
                        }
                    },
                };
                listener.run(stop).await;
            }
            .boxed()
        }
    }

    // ANCHOR: listener_run
    /// Delivers events to the hub until `shutdown`, reconnecting whenever the connection drops.
    pub(super) async fn run(mut self, shutdown: CancellationToken) {
        while let Some(delivery) = self.subscription.next(&shutdown).await {
            match delivery {
                Delivery::Message(payload) => match decode(&payload) {
                    Some(event) => self.sink.deliver(event),
                    None => tracing::warn!("evento de Redis ilegible; se descarta"),
                },
                // Events published while we were away are lost for this node's clients; make
                // them rejoin with `since`, which fetches exactly those from the history.
                Delivery::Resubscribed => self.sink.resync_everyone(),
            }
        }
    }
    // ANCHOR_END: listener_run
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
    fn an_event_for_every_user_survives_the_wire_format() {
        let event =
            RoomEvent::rooms_changed(RoomId::parse("publica-nueva").unwrap(), Audience::AllUsers);
        let wire = encode(&event).unwrap();
        assert_eq!(wire, "publica-nueva\n\n*\n{\"type\":\"rooms_changed\"}");
        assert_eq!(decode(wire.as_bytes()), Some(event));
        // `*` takes no username: a user named after it would be someone else's audience.
        assert_eq!(decode(b"general\n\n*ana\n{}"), None);
    }

    #[test]
    fn a_presence_batch_survives_the_wire_format() {
        let change = |user: &str, status: &str| PresenceChange {
            user: user.into(),
            frame: format!(
                r#"{{"type":"presence","room":"general","user":"{user}","status":"{status}"}}"#
            )
            .into(),
        };
        let event = RoomEvent {
            room: RoomId::general(),
            message_id: None,
            audience: Audience::Presence(Arc::new(PresenceBatch {
                origin: uuid::Uuid::new_v4(),
                seq: 7,
                changes: vec![change("ana", "online"), change("bea", "offline")],
            })),
            frame: Default::default(),
        };
        let wire = encode(&event).unwrap();
        assert_eq!(decode(wire.as_bytes()), Some(event));
        assert_eq!(decode(b"general\n\n#nodo:1\nana {}"), None);
        assert_eq!(
            decode(b"general\n\n#00000000-0000-0000-0000-000000000000:1\nana"),
            None
        );
    }

    #[test]
    fn bad_payloads_are_rejected_not_panicked_on() {
        for bad in [
            &b"general"[..],
            b"Sala\n\n\n{}",
            b"general\nx\n\n{}",
            b"\xff\n\n\n",
            // A multi-byte first character where a one-byte marker is expected.
            "general\n\nñandú\n{}".as_bytes(),
            "general\n\n€\n{}".as_bytes(),
            "sala-ñ\n\n\n{}".as_bytes(),
            "general\n½\n\n{}".as_bytes(),
            b"general\n\n*",
        ] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
    }
}
