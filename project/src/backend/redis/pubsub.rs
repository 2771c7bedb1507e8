//! A Redis pub/sub subscription that survives lost connections.
//!
//! Pub/sub is fire-and-forget: while the connection is down, messages are lost for this node.
//! So besides reconnecting (with a growing wait), [`Subscription::next`] says when it had to
//! resubscribe, and each user decides how to catch up (the chat makes its clients rejoin with
//! `since`; the dashboard re-reads its kept events).

use std::time::Duration;

use futures_util::StreamExt;
use redis::Value;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::time::{Instant, Interval};
use tokio_util::sync::CancellationToken;

use super::{RESPONSE_TIMEOUT, store_error};
use crate::backend::{StoreError, StoreResult};

/// How often the subscription pings Redis, so that a connection that died silently (no TCP
/// reset) is noticed and replaced. (A subscribed connection answers pings but no other command.)
const PING_EVERY: Duration = Duration::from_secs(15);
/// The first wait before reconnecting; it doubles after each failure up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the subscription has for its user.
#[derive(Debug)]
pub(crate) enum Delivery {
    /// The payload of one published message.
    Message(Vec<u8>),
    /// The connection was lost and is back: messages published meanwhile were missed.
    Resubscribed,
}

/// One channel, on a dedicated connection.
pub(crate) struct Subscription {
    client: redis::Client,
    channel: String,
    sink: PubSubSink,
    stream: PubSubStream,
    ping: Interval,
}

impl Subscription {
    /// Connects and subscribes; when this returns, every message published from now on arrives.
    pub(crate) async fn open(client: redis::Client, channel: String) -> StoreResult<Self> {
        let (sink, stream) = subscribe(&client, &channel).await?;
        let ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
        Ok(Self {
            client,
            channel,
            sink,
            stream,
            ping,
        })
    }

    /// The next message, or `Resubscribed` after a reconnection; `None` once `shutdown` is
    /// cancelled.
    pub(crate) async fn next(&mut self, shutdown: &CancellationToken) -> Option<Delivery> {
        loop {
            let alive = tokio::select! {
                () = shutdown.cancelled() => return None,
                message = self.stream.next() => match message {
                    Some(message) => {
                        return Some(Delivery::Message(message.get_payload_bytes().to_vec()));
                    }
                    // The stream ends when the connection is closed.
                    None => false,
                },
                _ = self.ping.tick() => {
                    let pong = tokio::time::timeout(RESPONSE_TIMEOUT, self.sink.ping::<Value>());
                    matches!(pong.await, Ok(Ok(_)))
                }
            };
            if !alive {
                break;
            }
        }
        tracing::warn!(channel = %self.channel, "conexión pub/sub con Redis perdida; reconectando");
        (self.sink, self.stream) = self.reconnect(shutdown).await?;
        tracing::info!(channel = %self.channel, "conexión pub/sub con Redis restablecida");
        Some(Delivery::Resubscribed)
    }

    /// Tries to subscribe again, waiting longer after each failure; `None` on shutdown.
    async fn reconnect(&self, shutdown: &CancellationToken) -> Option<(PubSubSink, PubSubStream)> {
        let mut backoff = MIN_BACKOFF;
        loop {
            shutdown
                .run_until_cancelled(tokio::time::sleep(backoff))
                .await?;
            match shutdown
                .run_until_cancelled(subscribe(&self.client, &self.channel))
                .await?
            {
                Ok(subscription) => return Some(subscription),
                Err(error) => tracing::warn!(%error, "no se pudo reconectar el pub/sub con Redis"),
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }
}

/// Opens a dedicated pub/sub connection and subscribes it to the channel. The library sets no
/// time limit on this connection, so we do.
async fn subscribe(
    client: &redis::Client,
    channel: &str,
) -> StoreResult<(PubSubSink, PubSubStream)> {
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
