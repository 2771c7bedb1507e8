//! The live dashboard: `GET /dashboard/events` (Server-Sent Events), `GET /admin/stats` and
//! the page `GET /dashboard`.
//!
//! The stream is read by a real SSE client (eventsource-stream over reqwest's `bytes_stream()`);
//! the raw bytes are kept too, to check what the parser hides (comments, which fields an event
//! carries).

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat::AppState;
use chat::events::Activity;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures_util::{Stream, StreamExt};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use tokio::time::Instant;

use crate::helpers::*;

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// A dashboard's connection to `/dashboard/events` (also used by `supervision.rs`).
pub(crate) struct SseClient {
    events: Events,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl SseClient {
    /// Opens the stream as an `EventSource` does: `?token=`, and `Last-Event-ID` when resuming.
    pub(crate) async fn open(app: &TestApp, token: &str, last_event_id: Option<&str>) -> Self {
        let mut request = app
            .http
            .get(app.url(&format!("/dashboard/events?token={token}")));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let content_type = response.headers()[CONTENT_TYPE].to_str().unwrap();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let raw = Arc::new(Mutex::new(Vec::new()));
        let copy = raw.clone();
        let events = response
            .bytes_stream()
            .inspect(move |chunk| {
                if let Ok(bytes) = chunk {
                    copy.lock().unwrap().extend_from_slice(bytes);
                }
            })
            .eventsource();
        Self {
            events: Box::pin(events),
            raw,
        }
    }

    /// The next event (comments are not events). Panics on timeout or end.
    pub(crate) async fn next(&mut self) -> Event {
        tokio::time::timeout(FRAME_TIMEOUT, self.events.next())
            .await
            .expect("timed out waiting for an SSE event")
            .expect("the SSE stream ended")
            .expect("the SSE stream failed")
    }

    /// The next event that is not `stats`.
    pub(crate) async fn next_not_stats(&mut self) -> Event {
        loop {
            let event = self.next().await;
            if event.event != "stats" {
                return event;
            }
        }
    }

    /// The next `stats` event's data.
    pub(crate) async fn stats(&mut self) -> Value {
        loop {
            let event = self.next().await;
            if event.event == "stats" {
                return serde_json::from_str(&event.data).unwrap();
            }
        }
    }

    /// The next `activity` event: its id and data. Panics on any other event but `stats`.
    pub(crate) async fn activity(&mut self) -> (u64, Value) {
        let event = self.next_not_stats().await;
        assert_eq!(
            event.event, "activity",
            "expected an activity, got {event:?}"
        );
        let id = event.id.parse().expect("an activity id is a number");
        (id, serde_json::from_str(&event.data).unwrap())
    }

    /// The next `count` activity events.
    pub(crate) async fn activities(&mut self, count: usize) -> Vec<(u64, Value)> {
        let mut events = Vec::with_capacity(count);
        while events.len() < count {
            events.push(self.activity().await);
        }
        events
    }

    /// Everything received so far, as text.
    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }
}

/// The `kind`, `room`, `user` of an activity's data (enough to recognise it).
fn summary(data: &Value) -> (String, String, String) {
    let field = |name: &str| data[name].as_str().unwrap_or("").to_owned();
    (field("kind"), field("room"), field("user"))
}

fn expected(kind: &str, room: &str, user: &str) -> (String, String, String) {
    (kind.into(), room.into(), user.into())
}

/// Makes one activity event happen (`sentinel` joins `room`) and returns the user's client, so
/// a test can check what a stream receives next.
async fn sentinel_join(app: &TestApp, token: &str, room: &str) -> WsClient {
    let mut client = app.ws(token).await;
    client.join(room).await;
    client
}

crate::on_both_backends!(
    the_stream_and_the_stats_are_for_admins_only,
    stats_come_every_second_with_every_contract_field,
    activity_reports_joins_messages_and_leaves_but_never_the_text,
    a_fresh_connection_gets_no_backlog,
    last_event_id_resumes_with_exactly_the_missed_events,
    ids_that_are_not_numbers_or_from_the_future_are_ignored,
    admin_stats_is_the_snapshot_and_counts_what_happens,
);

async fn the_stream_and_the_stats_are_for_admins_only(app: TestApp) {
    // Arrange
    let member = app.signup("ana").await;
    let admin = app.admin_token().await;

    // Act
    let anonymous = app.get("/dashboard/events", None).await;
    let forged = app.get("/dashboard/events?token=nope", None).await;
    let member_query = app
        .get(&format!("/dashboard/events?token={member}"), None)
        .await;
    let member_bearer = app.get("/dashboard/events", Some(&member)).await;
    let stats_anonymous = app.get("/admin/stats", None).await;
    let stats_member = app.get("/admin/stats", Some(&member)).await;
    let admin_bearer = app
        .http
        .get(app.url("/dashboard/events"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();

    // Assert
    for answer in [&anonymous, &forged, &stats_anonymous] {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{:?}", answer.body);
        assert_eq!(answer.error_code(), "unauthorized");
    }
    for answer in [&member_query, &member_bearer, &stats_member] {
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{:?}", answer.body);
        assert_eq!(answer.error_code(), "forbidden");
        assert!(answer.body["error"]["message"].is_string());
    }
    assert_eq!(admin_bearer.status(), StatusCode::OK);
}

/// Checks the shape of a `stats` data: every field of the contract, all counts integers.
fn assert_stats_shape(stats: &Value) {
    let keys: BTreeSet<&str> = stats
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "connections",
            "users_online",
            "rooms",
            "messages_total",
            "jobs",
            "ts"
        ]),
        "{stats}"
    );
    for field in ["connections", "users_online", "messages_total"] {
        assert!(stats[field].is_u64(), "{field} in {stats}");
    }
    for status in ["pending", "running", "done", "failed", "dead"] {
        assert!(stats["jobs"][status].is_u64(), "jobs.{status} in {stats}");
    }
    let rooms = stats["rooms"].as_array().unwrap();
    assert!(
        rooms.iter().any(|room| room["room"] == "general"),
        "{stats}"
    );
    for room in rooms {
        assert!(room["room"].is_string(), "{room}");
        assert!(room["online"].is_u64(), "{room}");
        assert!(room["messages_per_min"].is_u64(), "{room}");
    }
    let ts = stats["ts"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
}

async fn stats_come_every_second_with_every_contract_field(app: TestApp) {
    // Arrange
    let admin = app.admin_token().await;
    let mut dashboard = SseClient::open(&app, &admin, None).await;

    // Act: the first may be the snapshot of the moment of connecting; time the next ones.
    dashboard.stats().await;
    let second = dashboard.stats().await;
    let started = Instant::now();
    let mut last = second.clone();
    for _ in 0..3 {
        last = dashboard.stats().await;
    }
    let three_periods = started.elapsed();

    // Assert
    assert_stats_shape(&second);
    assert_stats_shape(&last);
    assert!(
        three_periods >= Duration::from_millis(1500) && three_periods <= Duration::from_secs(8),
        "three stats periods took {three_periods:?}"
    );
    // On the wire: `event: stats`, one `data:` line, and no `id:` (only activity has ids).
    let raw = dashboard.raw();
    let blocks: Vec<&str> = raw
        .split("\n\n")
        .filter(|block| block.contains("event: stats"))
        .collect();
    assert!(blocks.len() >= 5, "{raw}");
    for block in blocks {
        let lines: Vec<&str> = block.lines().collect();
        assert_eq!(lines.len(), 2, "{block}");
        assert_eq!(lines[0], "event: stats");
        assert!(lines[1].starts_with("data: {"), "{block}");
    }
}

async fn activity_reports_joins_messages_and_leaves_but_never_the_text(app: TestApp) {
    // Arrange
    let admin = app.admin_token().await;
    let mut dashboard = SseClient::open(&app, &admin, None).await;
    let mut ana = app.connected("ana").await;

    // Act: a join, a repeated join, a send, its idempotent repeat, a leave, then a join and a
    // disconnection.
    ana.join("general").await;
    ana.join("general").await;
    let send =
        json!({ "type": "send", "room": "general", "text": "texto secreto 42", "client_id": "c1" });
    ana.send_json(send.clone()).await;
    let stored = ana.recv_type("message").await;
    ana.send_json(send).await;
    assert_eq!(ana.recv_type("message").await, stored);
    ana.send_json(json!({ "type": "leave", "room": "general" }))
        .await;
    ana.recv_type("left").await;
    ana.join("general").await;
    ana.stream.close(None).await.unwrap();
    let events = dashboard.activities(5).await;

    // Assert
    let kinds: Vec<_> = events.iter().map(|(_, data)| summary(data)).collect();
    assert_eq!(
        kinds,
        vec![
            expected("join", "general", "ana"),
            expected("message", "general", "ana"),
            expected("leave", "general", "ana"),
            expected("join", "general", "ana"),
            expected("leave", "general", "ana"),
        ]
    );
    let ids: Vec<u64> = events.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|pair| pair[1] == pair[0] + 1), "{ids:?}");
    assert_eq!(events[1].1["message_id"], stored["id"]);
    for (_, data) in &events {
        assert!(data.get("text").is_none(), "{data}");
        assert!(chrono::DateTime::parse_from_rfc3339(data["ts"].as_str().unwrap()).is_ok());
    }
    let raw = dashboard.raw();
    assert!(!raw.contains("secreto"), "the text leaked: {raw}");
    // On the wire: `event: activity`, `id: N`, `data: {...}`.
    let first = format!("event: activity\nid: {}\ndata: {{", ids[0]);
    assert!(raw.contains(&first), "{raw}");
}

async fn a_fresh_connection_gets_no_backlog(app: TestApp) {
    // Arrange: activity before the dashboard connects.
    let admin = app.admin_token().await;
    let token = app.signup("ana").await;
    let mut ana = app.ws(&token).await;
    ana.join("general").await;
    let mut witness = SseClient::open(&app, &admin, None).await;

    // Act
    let mut dashboard = SseClient::open(&app, &admin, None).await;
    ana.send_json(json!({ "type": "leave", "room": "general" }))
        .await;

    // Assert: the first activity it gets is the new one.
    let (id, data) = dashboard.activity().await;
    assert_eq!(summary(&data), expected("leave", "general", "ana"));
    assert_eq!(witness.activity().await.0, id);
}

async fn last_event_id_resumes_with_exactly_the_missed_events(app: TestApp) {
    // Arrange: a witness stays connected; the dashboard sees ana join, then disconnects.
    let admin = app.admin_token().await;
    let token = app.signup("ana").await;
    let mut witness = SseClient::open(&app, &admin, None).await;
    let mut dashboard = SseClient::open(&app, &admin, None).await;
    let mut ana = app.ws(&token).await;
    ana.join("general").await;
    let (last_seen, _) = dashboard.activity().await;
    drop(dashboard);

    // Act: activity while it is away, then it resumes.
    let texts: Vec<String> = (0..3).map(|i| format!("mientras no miras {i}")).collect();
    for text in &texts {
        ana.send_json(json!({ "type": "send", "room": "general", "text": text }))
            .await;
        ana.recv_type("message").await;
    }
    ana.send_json(json!({ "type": "leave", "room": "general" }))
        .await;
    ana.recv_type("left").await;
    let seen_by_witness = witness.activities(5).await;
    let missed = seen_by_witness[1..].to_vec();
    let mut resumed = SseClient::open(&app, &admin, Some(&last_seen.to_string())).await;
    let replayed = resumed.activities(missed.len()).await;
    let sentinel = sentinel_join(&app, &token, "general").await;

    // Assert: exactly the missed events, then live ones with no repeat.
    assert_eq!(seen_by_witness[0].0, last_seen);
    assert_eq!(replayed, missed);
    let (next_id, next) = resumed.activity().await;
    assert_eq!(next_id, missed.last().unwrap().0 + 1);
    assert_eq!(summary(&next), expected("join", "general", "ana"));
    drop(sentinel);
}

async fn ids_that_are_not_numbers_or_from_the_future_are_ignored(app: TestApp) {
    // Arrange: some activity exists.
    let admin = app.admin_token().await;
    let token = app.signup("ana").await;
    let mut ana = sentinel_join(&app, &token, "general").await;
    ana.send_json(json!({ "type": "leave", "room": "general" }))
        .await;
    ana.recv_type("left").await;
    let mut witness = SseClient::open(&app, &admin, None).await;

    // Act
    let mut not_a_number = SseClient::open(&app, &admin, Some("abc")).await;
    let mut future = SseClient::open(&app, &admin, Some("999999")).await;
    let _sentinel = sentinel_join(&app, &token, "general").await;

    // Assert: no backlog, like a fresh connection: the first activity is the new join.
    let (id, _) = witness.activity().await;
    for dashboard in [&mut not_a_number, &mut future] {
        let (first_id, data) = dashboard.activity().await;
        assert_eq!(first_id, id);
        assert_eq!(summary(&data), expected("join", "general", "ana"));
    }
}

async fn admin_stats_is_the_snapshot_and_counts_what_happens(app: TestApp) {
    // Arrange
    let admin = app.admin_token().await;
    let mut ana = app.connected("ana").await;
    ana.join("general").await;

    // Act
    ana.say("general", "hola").await;
    let deadline = Instant::now() + FRAME_TIMEOUT;
    let stats = loop {
        let answer = app.get("/admin/stats", Some(&admin)).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
        let general = answer.body["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|room| room["room"] == "general")
            .cloned()
            .unwrap();
        if general["messages_per_min"] == 1 || Instant::now() > deadline {
            break answer.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // Assert
    assert_stats_shape(&stats);
    assert_eq!(stats["connections"], 1, "{stats}");
    assert_eq!(stats["users_online"], 1, "{stats}");
    assert_eq!(stats["messages_total"], 1, "{stats}");
    let general = stats["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|room| room["room"] == "general")
        .unwrap();
    assert_eq!(general["online"], 1, "{stats}");
    assert_eq!(general["messages_per_min"], 1, "{stats}");
}

// ----------------------------------------------------------------------------------------------
// Tests that need a shorter keep-alive or the server's state
// ----------------------------------------------------------------------------------------------

/// A server on `backend` with a 2 s keep-alive, and its state; `None` when there is no Redis.
pub(crate) async fn spawn_dashboard_app(backend: Backend) -> Option<(TestApp, AppState)> {
    let mut config = test_config(backend).await?;
    config.sse_keepalive_secs = 2;
    Some(spawn_app_with_state(config).await)
}

/// Like `on_both_backends!`, for tests of an `async fn(TestApp, AppState)`.
macro_rules! on_both_backends_with_state {
    ($($test:ident),* $(,)?) => {
        mod with_state {
            mod memory {
                $(
                    #[tokio::test]
                    async fn $test() {
                        let (app, state) =
                            super::super::spawn_dashboard_app($crate::helpers::Backend::Memory)
                                .await
                                .unwrap();
                        super::super::$test(app, state).await;
                    }
                )*
            }
            mod redis {
                $(
                    #[tokio::test]
                    async fn $test() {
                        let Some((app, state)) =
                            super::super::spawn_dashboard_app($crate::helpers::Backend::Redis).await
                        else {
                            return;
                        };
                        super::super::$test(app, state).await;
                    }
                )*
            }
        }
    };
}

on_both_backends_with_state!(
    stats_are_computed_only_while_a_dashboard_watches,
    keep_alive_comments_come_on_their_own_timer,
    an_id_older_than_what_is_kept_gets_a_gap_then_every_kept_event,
);

/// Waits until this node has no SSE stream open (the server notices a closed stream when it
/// next writes to it).
async fn wait_for_no_watchers(state: &AppState) {
    tokio::time::timeout(FRAME_TIMEOUT, async {
        while state.dashboard.stats_watchers() > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the closed dashboard is still counted");
}

async fn stats_are_computed_only_while_a_dashboard_watches(app: TestApp, state: AppState) {
    // Arrange: a dashboard that got a few snapshots, then closed.
    let admin = app.admin_token().await;
    let mut dashboard = SseClient::open(&app, &admin, None).await;
    dashboard.stats().await;
    dashboard.stats().await;
    assert!(state.dashboard.stats_computed() >= 1);
    drop(dashboard);
    wait_for_no_watchers(&state).await;

    // Act: nobody watches for three ticks.
    let idle_from = state.dashboard.stats_computed();
    tokio::time::sleep(3 * chat::dashboard::stats::STATS_EVERY).await;
    let idle_until = state.dashboard.stats_computed();
    // `GET /admin/stats` computes its own snapshot, watched or not.
    let answer = app.get("/admin/stats", Some(&admin)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let mut again = SseClient::open(&app, &admin, None).await;
    let fresh = again.stats().await;

    // Assert: at most the snapshot in flight when the dashboard closed, and computing resumes
    // at once for the next one (which gets no leftover from before).
    assert!(idle_until <= idle_from + 1, "{idle_from} -> {idle_until}");
    assert!(state.dashboard.stats_computed() > idle_until);
    assert!(
        fresh["ts"].as_str() > answer.body["ts"].as_str(),
        "{fresh} vs {answer:?}"
    );
}

async fn keep_alive_comments_come_on_their_own_timer(app: TestApp, _state: AppState) {
    // Arrange
    let admin = app.admin_token().await;
    let mut dashboard = SseClient::open(&app, &admin, None).await;

    // Act: `stats` every second means the stream is never idle for the 2 s period.
    let deadline = Instant::now() + FRAME_TIMEOUT;
    while dashboard.raw().matches(": keep-alive\n").count() < 2 && Instant::now() < deadline {
        dashboard.next().await;
    }

    // Assert
    let raw = dashboard.raw();
    assert!(
        raw.matches(": keep-alive\n\n").count() >= 2,
        "expected keep-alive comments: {raw}"
    );
}

async fn an_id_older_than_what_is_kept_gets_a_gap_then_every_kept_event(
    app: TestApp,
    state: AppState,
) {
    // Arrange: more job transitions than the log keeps, as the jobs engine reports them.
    let admin = app.admin_token().await;
    let mut witness = SseClient::open(&app, &admin, None).await;
    for i in 0..1100 {
        state
            .activity
            .record(Activity::job(&format!("job-{i}"), "done"));
    }
    let newest = loop {
        let event = witness.next_not_stats().await;
        if event.event == "activity" && event.data.contains("\"job-1099\"") {
            break event.id.parse::<u64>().unwrap();
        }
    };
    let oldest_kept = newest - 999;

    // Act
    let mut resumed = SseClient::open(&app, &admin, Some("5")).await;
    let gap = resumed.next_not_stats().await;
    let replayed = resumed.activities(1000).await;

    // Assert
    assert_eq!(gap.event, "gap");
    assert_eq!(
        serde_json::from_str::<Value>(&gap.data).unwrap(),
        json!({ "oldest": oldest_kept })
    );
    let ids: Vec<u64> = replayed.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids, (oldest_kept..=newest).collect::<Vec<_>>());
    assert_eq!(replayed.last().unwrap().1["job_id"], "job-1099");
    assert_eq!(replayed.last().unwrap().1["kind"], "job");
}

// ----------------------------------------------------------------------------------------------
// Two nodes on one Redis
// ----------------------------------------------------------------------------------------------

#[tokio::test]
async fn two_nodes_share_one_activity_sequence_and_resume_across_nodes() {
    // Arrange: two nodes of one cluster, a dashboard on each.
    let Some(config) = test_config(Backend::Redis).await else {
        return;
    };
    let a = spawn_app_with(config.clone()).await;
    let b = spawn_app_with(config).await;
    let admin = a.admin_token().await;
    let mut on_a = SseClient::open(&a, &admin, None).await;
    let mut on_b = SseClient::open(&b, &admin, None).await;
    let mut ana = a.connected("ana").await;
    let mut bea = b.connected("bea").await;

    // Act: a join on each node.
    ana.join("general").await;
    let first_on_a = on_a.activity().await;
    bea.join("general").await;
    let both_on_a = vec![first_on_a, on_a.activity().await];
    let both_on_b = on_b.activities(2).await;

    // Assert: the same events with the same ids on both nodes.
    assert_eq!(both_on_a, both_on_b);
    assert_eq!(both_on_a[1].0, both_on_a[0].0 + 1);
    assert_eq!(summary(&both_on_a[0].1), expected("join", "general", "ana"));
    assert_eq!(summary(&both_on_a[1].1), expected("join", "general", "bea"));

    // Act: B's dashboard goes away; ana writes on A; it comes back on B.
    let last_seen_on_b = both_on_b[1].0;
    drop(on_b);
    let stored = ana.say("general", "hola desde A").await;
    let message_on_a = on_a.activity().await;
    let mut resumed_on_b = SseClient::open(&b, &admin, Some(&last_seen_on_b.to_string())).await;

    // Assert: exactly the missed event, with A's id.
    let replayed = resumed_on_b.activity().await;
    assert_eq!(replayed, message_on_a);
    assert_eq!(replayed.1["message_id"], stored["id"]);

    // Assert: B's stats count the whole cluster (one connection per node, two users online).
    let deadline = Instant::now() + FRAME_TIMEOUT;
    loop {
        let stats = resumed_on_b.stats().await;
        if stats["connections"] == 2 && stats["users_online"] == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B's stats never saw the cluster: {stats}"
        );
    }
    ana.stream.close(None).await.unwrap();
    bea.stream.close(None).await.unwrap();
}

// ----------------------------------------------------------------------------------------------
// The page
// ----------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_the_ids_browser_tests_use() {
    let app = spawn_app(Backend::Memory).await.unwrap();

    let page = app.http.get(app.url("/dashboard")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(
        page.headers()[CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    for id in [
        "login-form",
        "username",
        "password",
        "stat-connections",
        "stat-users-online",
        "stat-messages-total",
        "activity-feed",
        "connection-status",
    ] {
        assert!(html.contains(&format!("id=\"{id}\"")), "#{id} missing");
    }
    for asset in ["/dashboard/dashboard.js", "/dashboard/dashboard.css"] {
        let answer = app.http.get(app.url(asset)).send().await.unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{asset}");
        assert!(html.contains(asset), "the page does not load {asset}");
    }
    // No CDN: everything comes from this server.
    assert!(!html.contains("http://") && !html.contains("https://"));
}

#[tokio::test]
async fn an_open_dashboard_does_not_hold_up_shutdown() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let admin = app.admin_token().await;
    let mut dashboard = SseClient::open(&app, &admin, None).await;

    // Act: the server stops (its grace period is 10 s) while the stream is open.
    let stopped = tokio::time::timeout(FRAME_TIMEOUT, app.stop()).await;

    // Assert: it stopped, and the stream ended instead of hanging.
    assert!(stopped.is_ok(), "shutdown waited for the SSE stream");
    let end = tokio::time::timeout(FRAME_TIMEOUT, async {
        while let Some(Ok(_)) = dashboard.events.next().await {}
    })
    .await;
    assert!(end.is_ok(), "the stream did not end");
}
