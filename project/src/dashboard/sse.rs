//! `GET /dashboard/events`: the Server-Sent Events stream of one dashboard.
//!
//! Each stream is a small state machine pulled by the HTTP connection: it produces an event
//! only when the socket can take one, so a stalled dashboard holds no queue of its own. What it
//! has not read yet waits in the node's shared, bounded structures: the latest stats snapshot
//! (a `watch`: only the newest is kept) and the live activity channel (a `broadcast` ring). If
//! the ring moves past it (`Lagged`), it reads what it missed from the activity log, the same
//! way a reconnecting dashboard resumes with `Last-Event-ID`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use tokio::sync::{broadcast, watch};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Dashboard;
use super::journal::{Backlog, StoredActivity};
use crate::auth::StreamAdmin;
use crate::backend::StoreError;
use crate::error::ApiError;

// ANCHOR: sse_events
/// Opens the stream: replays what a `Last-Event-ID` missed, then live events, a `stats` event
/// every second and a keep-alive comment on its own timer.
///
/// Only for admins: the token comes as `Authorization: Bearer` or, since an `EventSource`
/// cannot send headers, as `?token=` ([`StreamAdmin`]).
pub async fn events(
    State(dashboard): State<Dashboard>,
    State(shutdown): State<CancellationToken>,
    _admin: StreamAdmin,
    headers: HeaderMap,
) -> Response {
    let last_event_id = headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok());
    let opened = Subscription::open(dashboard, shutdown, last_event_id);
    match opened.await {
        Ok(subscription) => Sse::new(subscription.into_stream()).into_response(),
        Err(error) => ApiError::from(error).into_response(),
    }
}
// ANCHOR_END: sse_events

/// What a stream sends next, before it becomes an SSE [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Out {
    Activity(Arc<StoredActivity>),
    /// Events after the client's position are no longer kept: resuming starts at this id.
    Gap(u64),
    Stats(Arc<str>),
    KeepAlive,
}

impl Out {
    // ANCHOR: sse_out
    /// The wire form, built per stream from JSON that was serialized once for all of them.
    fn into_event(self) -> Event {
        match self {
            Self::Activity(event) => Event::default()
                .event("activity")
                .id(event.id.to_string())
                .data(&*event.json),
            Self::Gap(oldest) => Event::default()
                .event("gap")
                .data(format!(r#"{{"oldest":{oldest}}}"#)),
            Self::Stats(json) => Event::default().event("stats").data(&*json),
            Self::KeepAlive => Event::default().comment("keep-alive"),
        }
    }
    // ANCHOR_END: sse_out
}

/// One dashboard's position in the node's feeds.
struct Subscription {
    dashboard: Dashboard,
    /// What to send before anything else: a replay (at most one log's worth, plus a gap).
    pending: VecDeque<Out>,
    live: broadcast::Receiver<Arc<StoredActivity>>,
    stats: watch::Receiver<Option<Arc<str>>>,
    keep_alive: Interval,
    /// The newest activity id this stream has sent (or chose to skip).
    sent_up_to: u64,
    shutdown: CancellationToken,
}

impl Subscription {
    /// Positions a new stream: after `last_event_id` when it is a kept or older id, else at
    /// the newest event (no backlog). The stream ends when `shutdown` is cancelled.
    async fn open(
        dashboard: Dashboard,
        shutdown: CancellationToken,
        last_event_id: Option<u64>,
    ) -> Result<Self, StoreError> {
        // Subscribe before reading the log, so nothing stored in between is missed; what is in
        // both is skipped by id.
        let live = dashboard.live.subscribe();
        let mut stats = dashboard.latest.subscribe();
        // An idle stats task starts computing again (it counts the receivers of `latest`).
        dashboard.watched.notify_one();
        let backlog = dashboard
            .log
            .after(last_event_id.unwrap_or(u64::MAX))
            .await?;
        let mut pending = VecDeque::new();
        let sent_up_to = match last_event_id {
            // An id newer than the newest event is ignored, like no id at all.
            Some(last) if last <= backlog.newest => replay(&mut pending, last, backlog),
            _ => backlog.newest,
        };
        // The current snapshot at once, so a new dashboard shows numbers immediately.
        if let Some(json) = stats.borrow_and_update().clone() {
            pending.push_back(Out::Stats(json));
        }
        let period = dashboard.keep_alive;
        let mut keep_alive = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        keep_alive.set_missed_tick_behavior(MissedTickBehavior::Delay);
        metrics::gauge!(crate::metrics::SSE_SUBSCRIBERS).increment(1.0);
        Ok(Self {
            dashboard,
            pending,
            live,
            stats,
            keep_alive,
            sent_up_to,
            shutdown,
        })
    }

    fn into_stream(self) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
        futures_util::stream::unfold(self, |mut subscription| async move {
            let out = subscription.next().await?;
            Some((Ok(out.into_event()), subscription))
        })
    }

    // ANCHOR: sse_next
    /// The next event to write; `None` ends the stream (shutdown).
    async fn next(&mut self) -> Option<Out> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some(event);
            }
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return None,
                _ = self.keep_alive.tick() => return Some(Out::KeepAlive),
                changed = self.stats.changed() => {
                    if changed.is_err() {
                        return None;
                    }
                    if let Some(json) = self.stats.borrow_and_update().clone() {
                        return Some(Out::Stats(json));
                    }
                }
                received = self.live.recv() => match received {
                    Ok(event) if event.id > self.sent_up_to => {
                        self.sent_up_to = event.id;
                        return Some(Out::Activity(event));
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up().await,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            }
        }
    }
    // ANCHOR_END: sse_next

    /// Fell behind the live ring: reads what was missed from the log instead.
    async fn catch_up(&mut self) {
        match self.dashboard.log.after(self.sent_up_to).await {
            Ok(backlog) => {
                self.sent_up_to = replay(&mut self.pending, self.sent_up_to, backlog);
            }
            Err(error) => tracing::warn!(%error, "panel: no se pudo recuperar la actividad"),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        metrics::gauge!(crate::metrics::SSE_SUBSCRIBERS).decrement(1.0);
    }
}

/// Queues the backlog after `last` (a `gap` first when some events after `last` are no longer
/// kept) and returns the newest id queued, or `last` when there was nothing to queue.
fn replay(pending: &mut VecDeque<Out>, last: u64, backlog: Backlog) -> u64 {
    let Some(oldest) = backlog.events.first().map(|event| event.id) else {
        return last;
    };
    if oldest > last + 1 {
        pending.push_back(Out::Gap(oldest));
    }
    let newest = backlog
        .events
        .last()
        .map_or(last, |newest| newest.id.max(last));
    pending.extend(backlog.events.into_iter().map(Out::Activity));
    newest
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use tokio_util::task::TaskTracker;

    use super::*;
    use crate::config::Config;
    use crate::events::Activity;

    // ANCHOR: fixture
    async fn memory_dashboard() -> Dashboard {
        let mut config = Config::from_env();
        config.redis_url = None;
        let supervisor = crate::supervisor::Supervisor::new();
        Dashboard::build(
            &config,
            &TaskTracker::new(),
            CancellationToken::new(),
            &supervisor,
        )
        .await
        .unwrap()
    }
    // ANCHOR_END: fixture

    async fn record(dashboard: &Dashboard, count: u64) {
        let batch: Vec<Activity> = (0..count)
            .map(|i| Activity::message("general", "ana", i + 1))
            .collect();
        dashboard.log.append(&batch).await.unwrap();
    }

    fn activity_id(out: Option<Out>) -> u64 {
        match out {
            Some(Out::Activity(event)) => event.id,
            other => panic!("expected an activity, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_lagging_stream_catches_up_from_the_log_without_duplicates() {
        let dashboard = memory_dashboard().await;
        let mut stream = Subscription::open(dashboard.clone(), CancellationToken::new(), None)
            .await
            .unwrap();
        // More than the live ring holds, and more than the log keeps.
        record(&dashboard, 1500).await;
        assert_eq!(stream.next().await, Some(Out::Gap(501)));
        for expected in 501..=1500 {
            assert_eq!(activity_id(stream.next().await), expected);
        }
        record(&dashboard, 1).await;
        assert_eq!(activity_id(stream.next().await), 1501);
    }

    // ANCHOR: resume_test
    #[tokio::test]
    async fn a_resume_replays_exactly_what_was_missed_and_ignores_bad_ids() {
        let dashboard = memory_dashboard().await;
        record(&dashboard, 10).await;
        let mut resumed = Subscription::open(dashboard.clone(), CancellationToken::new(), Some(7))
            .await
            .unwrap();
        let mut fresh = Subscription::open(dashboard.clone(), CancellationToken::new(), None)
            .await
            .unwrap();
        let mut future = Subscription::open(dashboard.clone(), CancellationToken::new(), Some(11))
            .await
            .unwrap();
        record(&dashboard, 1).await;
        for expected in [8, 9, 10, 11] {
            assert_eq!(activity_id(resumed.next().await), expected);
        }
        assert_eq!(activity_id(fresh.next().await), 11);
        assert_eq!(activity_id(future.next().await), 11);
    }
    // ANCHOR_END: resume_test

    #[tokio::test]
    async fn a_stream_ends_on_shutdown() {
        let dashboard = memory_dashboard().await;
        let shutdown = CancellationToken::new();
        let mut stream = Subscription::open(dashboard, shutdown.clone(), None)
            .await
            .unwrap();
        shutdown.cancel();
        assert_eq!(stream.next().await, None);
    }
}
