//! Presence windows: the presence changes of one room on this node, coalesced over a short
//! window and published as one [`PresenceBatch`], and the joins of that window answered
//! together with one `online` list.
//!
//! Without them a storm of N first joins into one room costs N² frames: each join is announced
//! to everyone already there, and each joiner's `joined` only knows those before it. Here a
//! join waits for its window: the window closes when the room has had no change for [`QUIET`]
//! (or has been open for [`LONGEST`]), and then
//!
//! 1. its joiners are marked as answered by this batch (they get every later batch, and not
//!    this one, which their list already counts);
//! 2. its changes, netted per user (an `online` and an `offline` of the same user in one window
//!    cancel out), are serialized once and published as one event: one queue item per
//!    recipient, however many users changed;
//! 3. the room's `online` list is read once and handed to every joiner for its `joined`.
//!
//! A join into a room that had no change in the last [`QUIET`] is answered at once (its window
//! closes as soon as it opens), so a lone join waits for nothing. A join that follows another
//! within [`QUIET`] waits until the room is quiet: a storm that arrives within [`LONGEST`] is
//! one batch, and costs one `joined` per joiner and one `presence` per joiner for each
//! connection that was there before.
//!
//! Why nothing is lost: a connection is *pending* from its subscription until its window
//! closes, and pending connections get no presence batch at all, because the list they will
//! get is read later than any change they skip. Step 1 comes before step 3, so a change that
//! the list may miss comes in a later batch, which the connection gets. A batch from another
//! node reaches a connection only once it is answered; one from this node, only if it is newer
//! than the batch that answered it (batch numbers grow across every room of the node).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Hub;
use crate::backend::{ConnId, Fanout, Presence};
use crate::domain::RoomId;
use crate::events::{Audience, PresenceBatch, PresenceChange, RoomEvent};
use crate::ws::protocol::{self, PresenceStatus, ServerFrame};

/// How long a room must go without a presence change before its window closes.
pub const QUIET: Duration = Duration::from_millis(50);
/// The longest a window stays open while changes keep coming.
pub const LONGEST: Duration = Duration::from_secs(1);

/// What a window needs to close: the backends it reads and publishes through, and the server's
/// tasks and shutdown (the task that closes a room's windows is tracked and stops with it).
#[derive(Clone)]
pub struct Flush {
    pub presence: Arc<dyn Presence>,
    pub fanout: Arc<dyn Fanout>,
    pub tasks: TaskTracker,
    pub shutdown: CancellationToken,
}

/// The `online` list a joiner's `joined` carries.
pub type Online = Arc<Vec<String>>;

/// One room's presence on this node: its open window, and whether a task is closing windows.
#[derive(Default)]
pub(super) struct RoomWindow {
    open: Option<Batch>,
    /// A closer task runs for this room (at most one, so windows close in order).
    closing: bool,
    /// When the last window closed: a window that opens within [`QUIET`] of it waits.
    last_closed: Option<Instant>,
}

/// An open window.
struct Batch {
    opened: Instant,
    last_change: Instant,
    /// Opened in a quiet room: closes at once.
    eager: bool,
    /// User → net new status (an `online` and an `offline` cancel out).
    changes: BTreeMap<String, PresenceStatus>,
    /// The joins waiting for this window's `online` list.
    joiners: Vec<(ConnId, oneshot::Sender<Online>)>,
}

impl Batch {
    fn new(now: Instant, eager: bool) -> Self {
        Self {
            opened: now,
            last_change: now,
            eager,
            changes: BTreeMap::new(),
            joiners: Vec::new(),
        }
    }

    /// Notes a user's new status. Statuses alternate (a first join, then a last leave), so a
    /// change that undoes the pending one leaves nothing to announce.
    fn change(&mut self, user: String, status: PresenceStatus) {
        match self.changes.get(&user) {
            Some(pending) if *pending != status => {
                self.changes.remove(&user);
            }
            _ => {
                self.changes.insert(user, status);
            }
        }
    }

    /// When the window closes.
    fn due(&self) -> Instant {
        if self.eager {
            self.opened
        } else {
            (self.last_change + QUIET).min(self.opened + LONGEST)
        }
    }
}

impl Hub {
    // ANCHOR: join_window
    /// Registers a join of `conn` (already subscribed, and recorded in the backend's presence):
    /// `first` names the user when it is their first connection in the room. The answer is the
    /// `online` list for its `joined`, once the window closes; dropped if the list could not be
    /// read.
    pub fn join_window(
        self: &Arc<Self>,
        room: &RoomId,
        conn: ConnId,
        first: Option<&str>,
        flush: &Flush,
    ) -> oneshot::Receiver<Online> {
        let (answer, online) = oneshot::channel();
        let change = first.map(|user| (user.to_owned(), PresenceStatus::Online));
        self.register(room, change, Some((conn, answer)), flush);
        online
    }
    // ANCHOR_END: join_window

    /// Registers a user's last connection leaving the room (already recorded in the backend).
    pub fn left_window(self: &Arc<Self>, room: &RoomId, user: &str, flush: &Flush) {
        let change = Some((user.to_owned(), PresenceStatus::Offline));
        self.register(room, change, None, flush);
    }

    fn register(
        self: &Arc<Self>,
        room: &RoomId,
        change: Option<(String, PresenceStatus)>,
        joiner: Option<(ConnId, oneshot::Sender<Online>)>,
        flush: &Flush,
    ) {
        let now = Instant::now();
        let mut window = self.windows.entry(room.clone()).or_default();
        let quiet = window
            .last_closed
            .is_none_or(|closed| now.duration_since(closed) >= QUIET);
        let batch = window.open.get_or_insert_with(|| Batch::new(now, quiet));
        batch.last_change = now;
        if let Some((user, status)) = change {
            batch.change(user, status);
        }
        batch.joiners.extend(joiner);
        if window.closing {
            return;
        }
        window.closing = true;
        drop(window);
        let (hub, room, flush) = (self.clone(), room.clone(), flush.clone());
        flush
            .tasks
            .clone()
            .spawn(async move { hub.close_windows(room, flush).await });
    }

    /// Closes the room's windows as they fall due, until none has opened for [`QUIET`]; then
    /// forgets the room (its next window starts quiet). Once the server is shutting down every
    /// window closes at once, and is still published: the leaves of this node's connections must
    /// reach the other nodes' clients. (Each close is bounded by the backend's own timeouts.)
    async fn close_windows(self: Arc<Self>, room: RoomId, flush: Flush) {
        loop {
            let now = Instant::now();
            let stopping = flush.shutdown.is_cancelled();
            let wake = {
                let Some(mut window) = self.windows.get_mut(&room) else {
                    return;
                };
                match window.open.as_ref().map(Batch::due) {
                    Some(due) if due <= now || stopping => {
                        let batch = window.open.take();
                        window.last_closed = Some(now);
                        drop(window);
                        if let Some(batch) = batch {
                            self.close(&room, batch, &flush).await;
                        }
                        continue;
                    }
                    Some(due) => due,
                    None => {
                        let forget_at = window.last_closed.map_or(now, |closed| closed + QUIET);
                        if forget_at <= now || stopping {
                            // Forget the room, unless a window opened in between.
                            drop(window);
                            let idle = |_: &RoomId, window: &RoomWindow| window.open.is_none();
                            if self.windows.remove_if(&room, idle).is_some() {
                                return;
                            }
                            continue;
                        }
                        forget_at
                    }
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(wake) => {}
                () = flush.shutdown.cancelled() => {}
            }
        }
    }

    // ANCHOR: close_window
    /// Closes one window: marks its joiners answered, publishes its changes, then reads the
    /// room's `online` list once for all its joiners.
    async fn close(&self, room: &RoomId, batch: Batch, flush: &Flush) {
        let seq = self.batches.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(
            room = %room,
            seq,
            joiners = batch.joiners.len(),
            changes = batch.changes.len(),
            "ventana de presencia cerrada"
        );
        self.answered(room, batch.joiners.iter().map(|(conn, _)| *conn), seq);
        let changes: Vec<PresenceChange> = batch
            .changes
            .into_iter()
            .map(|(user, status)| {
                let frame = protocol::to_json(&ServerFrame::Presence {
                    room: room.as_str(),
                    user: &user,
                    status,
                });
                PresenceChange {
                    user,
                    frame: frame.into(),
                }
            })
            .collect();
        // Published before the joiners are answered, as a lone join always did: whoever sees
        // this `joined` and then acts can count on the others having been told.
        if !changes.is_empty() {
            let event = RoomEvent {
                room: room.clone(),
                message_id: None,
                audience: Audience::Presence(Arc::new(PresenceBatch {
                    origin: self.node,
                    seq,
                    changes,
                })),
                frame: Utf8Bytes::default(),
            };
            if let Err(error) = flush.fanout.publish(event).await {
                tracing::warn!(%error, room = %room, "no se pudo publicar la presencia");
            }
        }
        if batch.joiners.is_empty() {
            return;
        }
        match flush.presence.online(room).await {
            Ok(online) => {
                let online = Arc::new(online);
                for (_, answer) in batch.joiners {
                    // A joiner that gave up (its connection closed) no longer listens.
                    let _ = answer.send(online.clone());
                }
            }
            // The joiners' answers are dropped: they report the backend unavailable.
            Err(error) => {
                tracing::warn!(%error, room = %room, "no se pudo leer quién está conectado")
            }
        }
    }
    // ANCHOR_END: close_window
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio::sync::mpsc;

    use super::*;
    use crate::backend::Backends;
    use crate::ws::hub::Subscriber;

    fn flush(backends: &Backends) -> Flush {
        Flush {
            presence: backends.presence.clone(),
            fanout: backends.fanout.clone(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// A connection of `user` subscribed to the room and recorded in its presence; `true` when
    /// it is the user's first.
    async fn connection(
        hub: &Hub,
        backends: &Backends,
        room: &RoomId,
        user: &str,
    ) -> (ConnId, bool, mpsc::Receiver<Arc<RoomEvent>>) {
        let (queue, events) = mpsc::channel(16);
        let conn = ConnId::new_v4();
        let subscriber = Subscriber {
            user: user.into(),
            queue,
            overflow: CancellationToken::new(),
        };
        hub.subscribe(room, conn, subscriber);
        let first = backends.presence.join(room, user, conn).await.unwrap();
        (conn, first, events)
    }

    fn users(event: &RoomEvent) -> Vec<(String, String)> {
        let Audience::Presence(batch) = &event.audience else {
            panic!("not a presence batch: {event:?}");
        };
        batch
            .changes
            .iter()
            .map(|change| {
                let frame: serde_json::Value = serde_json::from_str(change.frame.as_str()).unwrap();
                (
                    change.user.clone(),
                    frame["status"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    // Paused time: the window closes only when everything else waits, so what the test does
    // before it awaits an answer happens within one window.
    #[tokio::test(start_paused = true)]
    async fn one_window_is_one_batch_and_a_join_undone_in_it_is_never_announced() {
        let hub = Arc::new(Hub::new());
        let backends = crate::backend::memory::backends(hub.clone());
        let flush = flush(&backends);
        let room = RoomId::general();
        // The observer, alone, is answered at once.
        let (observer, first, mut seen) = connection(&hub, &backends, &room, "vigia").await;
        let alone = hub.join_window(&room, observer, first.then_some("vigia"), &flush);
        assert_eq!(*alone.await.unwrap(), vec!["vigia"]);

        // ana joins and her connection closes before her window does; bea and carl join.
        let (ana, first, _) = connection(&hub, &backends, &room, "ana").await;
        let ana_answer = hub.join_window(&room, ana, first.then_some("ana"), &flush);
        drop(ana_answer);
        hub.unsubscribe(&room, ana);
        assert!(backends.presence.leave(&room, "ana", ana).await.unwrap());
        hub.left_window(&room, "ana", &flush);
        let mut answers = Vec::new();
        let mut queues = Vec::new();
        for user in ["bea", "carl"] {
            let (conn, first, queue) = connection(&hub, &backends, &room, user).await;
            answers.push(hub.join_window(&room, conn, first.then_some(user), &flush));
            queues.push(queue);
        }

        // Both get the same list, the observer one batch without ana, the joiners nothing.
        for answer in answers {
            assert_eq!(*answer.await.unwrap(), vec!["bea", "carl", "vigia"]);
        }
        let batch = seen.try_recv().unwrap();
        assert_eq!(
            users(&batch),
            vec![
                ("bea".to_owned(), "online".to_owned()),
                ("carl".to_owned(), "online".to_owned())
            ]
        );
        assert!(seen.try_recv().is_err());
        for mut queue in queues {
            assert!(queue.try_recv().is_err());
        }
        flush.tasks.close();
        flush.tasks.wait().await;
        assert!(hub.windows.is_empty(), "a quiet room is forgotten");
    }

    #[test]
    fn an_online_and_an_offline_of_one_user_in_one_window_cancel_out() {
        let now = Instant::now();
        let mut batch = Batch::new(now, false);
        batch.change("ana".into(), PresenceStatus::Online);
        batch.change("bea".into(), PresenceStatus::Offline);
        batch.change("ana".into(), PresenceStatus::Offline);
        batch.change("bea".into(), PresenceStatus::Online);
        batch.change("carl".into(), PresenceStatus::Online);
        let changes: Vec<_> = batch.changes.into_iter().collect();
        assert_eq!(changes, vec![("carl".to_owned(), PresenceStatus::Online)]);
    }

    #[tokio::test(start_paused = true)]
    async fn leaves_during_shutdown_are_still_published_at_once() {
        let hub = Arc::new(Hub::new());
        let backends = crate::backend::memory::backends(hub.clone());
        let flush = flush(&backends);
        let room = RoomId::general();
        let (observer, first, mut seen) = connection(&hub, &backends, &room, "vigia").await;
        let alone = hub.join_window(&room, observer, first.then_some("vigia"), &flush);
        alone.await.unwrap();
        let (ana, first, _) = connection(&hub, &backends, &room, "ana").await;
        let ana_answer = hub.join_window(&room, ana, first.then_some("ana"), &flush);
        ana_answer.await.unwrap();
        assert_eq!(
            users(&seen.try_recv().unwrap()),
            vec![("ana".to_owned(), "online".to_owned())]
        );

        // The server stops; ana's connection leaves the room on its way out.
        flush.shutdown.cancel();
        hub.unsubscribe(&room, ana);
        assert!(backends.presence.leave(&room, "ana", ana).await.unwrap());
        hub.left_window(&room, "ana", &flush);
        flush.tasks.close();
        flush.tasks.wait().await;

        assert_eq!(
            users(&seen.try_recv().unwrap()),
            vec![("ana".to_owned(), "offline".to_owned())]
        );
        assert!(hub.windows.is_empty());
    }

    #[test]
    fn a_window_closes_when_quiet_or_at_the_longest() {
        let now = Instant::now();
        let mut batch = Batch::new(now, false);
        assert_eq!(batch.due(), now + QUIET);
        batch.last_change = now + LONGEST;
        assert_eq!(batch.due(), now + LONGEST);
        assert_eq!(Batch::new(now, true).due(), now);
    }
}
