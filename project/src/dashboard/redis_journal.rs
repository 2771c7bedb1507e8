//! The activity log in Redis, shared by every node of a cluster, so that each dashboard sees
//! every node's events in one id order and can resume on any node.
//!
//! | key | type | what |
//! |---|---|---|
//! | `{p}:activity:seq` | string | the newest activity id |
//! | `{p}:activity:log` | sorted set | the newest 1,000 events, `"id\njson"` scored by id |
//! | `{p}:activity` | channel | every event as it is stored, `"id\njson"` |
//! | `{p}:dashboard:connections` | hash | node id → `"count:expires_ms"` |
//!
//! One Lua script numbers, keeps and publishes each event (`lua/append.lua`), so the channel
//! carries the events in id order. Every node runs one [`Listener`] that hands them to its live
//! feed; if its subscription drops, it catches up from the kept events when it is back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use redis::Script;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::journal::{ActivityLog, Backlog, KEPT_EVENTS, LiveFeed, StoredActivity};
use crate::backend::redis::pubsub::{Delivery, Subscription};
use crate::backend::redis::store_error;
use crate::backend::{StoreError, StoreResult};
use crate::events::Activity;
use crate::supervisor::Supervisor;

static APPEND: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/append.lua")));
static AFTER: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("lua/after.lua")));
static CONNECTIONS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("lua/connections.lua")));

/// How long a node's reported connection count counts: a node that stops reporting (it
/// crashed) drops out of the sum after this.
const CONNECTIONS_TTL: Duration = Duration::from_secs(5);

/// Key names, in one place.
#[derive(Debug, Clone)]
struct Keys {
    prefix: Arc<str>,
}

impl Keys {
    fn seq(&self) -> String {
        format!("{}:activity:seq", self.prefix)
    }
    fn log(&self) -> String {
        format!("{}:activity:log", self.prefix)
    }
    fn channel(&self) -> String {
        format!("{}:activity", self.prefix)
    }
    fn connections(&self) -> String {
        format!("{}:dashboard:connections", self.prefix)
    }
}

/// The log of a cluster. Cheap to share: the connection manager multiplexes.
pub struct RedisActivityLog {
    conn: ConnectionManager,
    keys: Keys,
    /// This node in the connection counts (a random id per start).
    node: String,
}

/// The listener's name for the supervisor and `/ready`.
pub const LISTENER_TASK: &str = "escucha de actividad del panel";

/// Connects, subscribes this node to the activity channel (events from now on reach `live`),
/// and spawns the listener on `tasks`, supervised: if it panics or stops, a new one subscribes
/// and catches up from the kept events. It stops when `shutdown` is cancelled.
pub async fn connect(
    url: &str,
    prefix: &str,
    live: LiveFeed,
    tasks: &TaskTracker,
    shutdown: CancellationToken,
    supervisor: &Supervisor,
) -> StoreResult<Arc<RedisActivityLog>> {
    let (client, conn) = crate::backend::redis::connect(url).await?;
    let keys = Keys {
        prefix: prefix.into(),
    };
    let log = Arc::new(RedisActivityLog {
        conn,
        keys: keys.clone(),
        node: uuid::Uuid::new_v4().to_string(),
    });
    let subscription = Subscription::open(client.clone(), keys.channel()).await?;
    // Subscribed first, then read the newest id: nothing stored after it is missed.
    let delivered = log.after(u64::MAX).await?.newest;
    let delivered = Arc::new(AtomicU64::new(delivered));
    let mut first = Some(Listener {
        subscription,
        log: log.clone(),
        live: live.clone(),
        delivered: delivered.clone(),
    });
    let (supervisor, stop, resumed) = (supervisor.clone(), shutdown.clone(), log.clone());
    tasks.spawn(async move {
        supervisor
            .run(LISTENER_TASK, shutdown, move || {
                let first = first.take();
                let (client, log, live) = (client.clone(), resumed.clone(), live.clone());
                let (delivered, stop) = (delivered.clone(), stop.clone());
                async move {
                    let listener = match first {
                        Some(listener) => listener,
                        // A new subscription, then what was stored since the last event handed
                        // on: a dashboard misses nothing, whatever the old listener was doing.
                        None => match Subscription::open(client, log.keys.channel()).await {
                            Ok(subscription) => {
                                let mut listener = Listener {
                                    subscription,
                                    log,
                                    live,
                                    delivered,
                                };
                                listener.catch_up().await;
                                listener
                            }
                            Err(error) => {
                                tracing::warn!(%error, "no se pudo suscribir a la actividad");
                                return;
                            }
                        },
                    };
                    listener.run(stop).await;
                }
            })
            .await;
    });
    Ok(log)
}

#[async_trait]
impl ActivityLog for RedisActivityLog {
    async fn append(&self, batch: &[Activity]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut script = APPEND.key(self.keys.seq());
        script
            .key(self.keys.log())
            .arg(self.keys.channel())
            .arg(KEPT_EVENTS);
        for activity in batch {
            let json = serde_json::to_string(activity)
                .map_err(|error| StoreError::Corrupt(error.to_string()))?;
            script.arg(json);
        }
        let _stored: u64 = script
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(())
    }

    async fn after(&self, after: u64) -> StoreResult<Backlog> {
        let mut script = AFTER.key(self.keys.seq());
        let reply: Vec<String> = script
            .key(self.keys.log())
            .arg(after)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        let mut reply = reply.into_iter();
        let newest = reply
            .next()
            .and_then(|newest| newest.parse().ok())
            .ok_or_else(|| StoreError::Corrupt("respuesta de actividad sin id".into()))?;
        let events = reply
            .map(|entry| parse_entry(entry.as_bytes()).map(Arc::new))
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(Backlog { newest, events })
    }

    async fn connections(&self, local: u64) -> StoreResult<u64> {
        let ttl_ms = u64::try_from(CONNECTIONS_TTL.as_millis()).unwrap_or(u64::MAX);
        CONNECTIONS
            .key(self.keys.connections())
            .arg(&self.node)
            .arg(local)
            .arg(ttl_ms)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)
    }
}

/// Reads `"id\njson"`, the format of the kept events and of the channel.
fn parse_entry(entry: &[u8]) -> StoreResult<StoredActivity> {
    let corrupt = || StoreError::Corrupt("evento de actividad ilegible".into());
    let text = std::str::from_utf8(entry).map_err(|_| corrupt())?;
    let (id, json) = text.split_once('\n').ok_or_else(corrupt)?;
    let id = id.parse().map_err(|_| corrupt())?;
    StoredActivity::from_json(id, json)
}

/// This node's subscription to the activity channel.
struct Listener {
    subscription: Subscription,
    log: Arc<RedisActivityLog>,
    live: LiveFeed,
    /// The newest id handed to `live`: anything at or below it is not handed again. Shared with
    /// the listener that replaces this one, which resumes after it.
    delivered: Arc<AtomicU64>,
}

impl Listener {
    /// Hands events to the live feed until `shutdown`, catching up from the kept events
    /// whenever the subscription had to reconnect.
    async fn run(mut self, shutdown: CancellationToken) {
        while let Some(delivery) = self.subscription.next(&shutdown).await {
            match delivery {
                Delivery::Message(payload) => match parse_entry(&payload) {
                    Ok(event) => self.deliver(Arc::new(event)),
                    Err(error) => tracing::warn!(%error, "evento de actividad descartado"),
                },
                // Subscribed again: what was published meanwhile is in the kept events.
                Delivery::Resubscribed => self.catch_up().await,
            }
        }
    }

    /// Hands on the kept events after the newest one handed on.
    async fn catch_up(&mut self) {
        match self.log.after(self.delivered.load(Ordering::Relaxed)).await {
            Ok(backlog) => {
                for event in backlog.events {
                    self.deliver(event);
                }
            }
            Err(error) => {
                tracing::warn!(%error, "no se pudo recuperar la actividad perdida");
            }
        }
    }

    fn deliver(&mut self, event: Arc<StoredActivity>) {
        if event.id > self.delivered.load(Ordering::Relaxed) {
            self.delivered.store(event.id, Ordering::Relaxed);
            // No receiver is fine: nobody is watching right now.
            let _ = self.live.send(event);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_back_and_garbage_is_refused() {
        let stored = StoredActivity::new(42, Activity::join("general", "ana")).unwrap();
        let entry = format!("42\n{}", stored.json);
        assert_eq!(parse_entry(entry.as_bytes()).unwrap(), stored);
        for bad in [&b"42"[..], b"x\n{}", b"1\n{}", b"\xff\n{}"] {
            assert!(parse_entry(bad).is_err(), "{bad:?}");
        }
    }
}
