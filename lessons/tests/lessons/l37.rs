//! Práctica 37: every step of `examples/37_sse_cache` over real sockets (axum on port 0,
//! reqwest as the HTTP client, `eventsource-stream` over `bytes_stream()` as the SSE client),
//! the cache both in process and against a real `redis-server`.

#[allow(dead_code)]
#[path = "../../examples/37_sse_cache/main.rs"]
mod lesson;

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::support::{self, Lesson};
use lesson::cache::{Cache, CacheStatus};
use lesson::{AppState, Settings};

/// Longest a test waits for any single event.
const WAIT: Duration = Duration::from_secs(10);

type Events = Pin<Box<dyn Stream<Item = Event> + Send>>;

/// Test settings: in process, quick query, timers that stay out of the way unless a test
/// shortens them.
fn settings() -> Settings {
    Settings {
        redis_url: None,
        redis_prefix: support::redis_server::unique_prefix(),
        keep_alive: Duration::from_secs(60),
        stats_every: Duration::from_secs(60),
        replay_capacity: 100,
        cache_ttl: Duration::from_secs(30),
        query_cost: Duration::from_millis(5),
        query_gate: None,
    }
}

async fn serve(settings: Settings) -> (Lesson, AppState) {
    let state = AppState::build(settings).await.unwrap();
    let lesson = support::serve(lesson::router(state.clone())).await;
    (lesson, state)
}

/// Opens `/events`, optionally with a `Last-Event-ID`.
async fn open_events(lesson: &Lesson, last_event_id: Option<&str>) -> Events {
    let mut request = reqwest::Client::new().get(lesson.url("/events"));
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = response
        .bytes_stream()
        .eventsource()
        .map(|event| event.expect("a well-formed SSE stream"));
    Box::pin(events)
}

/// The next `message` or `gap` event (`stats` are skipped), or `None` when the stream ended.
async fn next_event(events: &mut Events) -> Option<Event> {
    tokio::time::timeout(WAIT, async {
        loop {
            let event = events.next().await?;
            if event.event != "stats" {
                return Some(event);
            }
        }
    })
    .await
    .expect("no event within the wait")
}

/// The id and data of the next `message` event.
async fn next_message(events: &mut Events) -> (u64, Value) {
    let event = next_event(events).await.expect("the stream ended");
    assert_eq!(event.event, "message", "expected a message, got {event:?}");
    let data: Value = serde_json::from_str(&event.data).unwrap();
    let id: u64 = event.id.parse().unwrap();
    assert_eq!(data["id"], id, "the id: line and the data agree");
    (id, data)
}

async fn publish(lesson: &Lesson, room: &str, text: &str) -> u64 {
    let response = reqwest::Client::new()
        .post(lesson.url("/api/messages"))
        .json(&json!({ "room": room, "user": "ana", "text": text }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    response.json::<Value>().await.unwrap()["id"]
        .as_u64()
        .unwrap()
}

async fn status(lesson: &Lesson) -> Value {
    reqwest::get(lesson.url("/api/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The page
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_page_lists_the_four_steps_and_says_where_the_cache_lives() {
    let (lesson, _) = serve(settings()).await;

    let page = reqwest::get(lesson.url("/"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    for step in ["Paso 1", "Paso 2", "Paso 3", "Paso 4"] {
        assert!(page.contains(step), "the page lists {step}");
    }
    assert!(
        page.contains("en este proceso"),
        "it names the in-process cache"
    );
    assert!(page.contains("new EventSource(\"/events\")"));
    assert!(!page.contains("{{"), "every placeholder is filled");
    assert!(
        page.contains("una consulta lenta (5 ms)"),
        "the page quotes the settings it runs with"
    );
}

#[test]
fn every_project_file_the_lesson_names_exists() {
    assert_project_files_exist("37_sse_cache");
}

/// Every `project/...` file named in a lesson's folder (comments, page) exists, so the pointers
/// stay honest when the project moves files.
pub(crate) fn assert_project_files_exist(lesson: &str) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let folder = format!("{}/examples/{lesson}", env!("CARGO_MANIFEST_DIR"));
    let mut named = 0;
    for entry in std::fs::read_dir(folder).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (start, _) in text.match_indices("project/") {
            let path: String = text[start..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || "/_.-".contains(*c))
                .collect();
            let path = path.trim_end_matches('.');
            if path.ends_with(".rs") || path.ends_with(".html") || path.ends_with('/') {
                named += 1;
                assert!(
                    std::path::Path::new(root).join(path).exists(),
                    "{lesson} names {path}, which does not exist"
                );
            }
        }
    }
    assert!(named >= 5, "{lesson} points at the project's files");
}

// ---------------------------------------------------------------------------------------------
// Step 1: SSE with ids, resume, gap and keep-alive
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_published_message_arrives_on_the_stream_with_its_id() {
    let (lesson, _) = serve(settings()).await;
    let mut events = open_events(&lesson, None).await;

    let id = publish(&lesson, "rust", "hola").await;

    let (received, data) = next_message(&mut events).await;
    assert_eq!(received, id);
    assert_eq!(data["room"], "rust");
    assert_eq!(data["text"], "hola");
}

#[tokio::test]
async fn a_resumed_stream_gets_exactly_the_missed_events() {
    let (lesson, _) = serve(settings()).await;
    let mut first = open_events(&lesson, None).await;
    for n in 1..=3 {
        publish(&lesson, "general", &format!("antes {n}")).await;
    }
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(next_message(&mut first).await.0);
    }
    drop(first);

    // Published while nobody listens.
    let mut missed = Vec::new();
    for n in 1..=3 {
        missed.push(publish(&lesson, "general", &format!("perdido {n}")).await);
    }
    let last_seen = seen.last().unwrap().to_string();
    let mut resumed = open_events(&lesson, Some(&last_seen)).await;
    let live = publish(&lesson, "general", "después").await;

    for expected in missed {
        assert_eq!(next_message(&mut resumed).await.0, expected);
    }
    // Then live, with nothing repeated in between.
    assert_eq!(next_message(&mut resumed).await.0, live);
}

#[tokio::test]
async fn a_fresh_stream_gets_no_backlog_and_a_bad_id_is_ignored() {
    let (lesson, _) = serve(settings()).await;
    publish(&lesson, "general", "viejo").await;
    let mut fresh = open_events(&lesson, None).await;
    let mut bad = open_events(&lesson, Some("no-es-un-numero")).await;
    let mut future = open_events(&lesson, Some("999")).await;

    let live = publish(&lesson, "general", "nuevo").await;

    for events in [&mut fresh, &mut bad, &mut future] {
        assert_eq!(next_message(events).await.0, live);
    }
}

#[tokio::test]
async fn an_id_older_than_the_buffer_gets_a_gap_then_every_kept_event() {
    let (lesson, _) = serve(Settings {
        replay_capacity: 5,
        ..settings()
    })
    .await;
    for n in 1..=10 {
        publish(&lesson, "general", &format!("mensaje {n}")).await;
    }

    let mut resumed = open_events(&lesson, Some("2")).await;

    let gap = next_event(&mut resumed).await.unwrap();
    assert_eq!(gap.event, "gap");
    assert_eq!(
        serde_json::from_str::<Value>(&gap.data).unwrap(),
        json!({ "oldest": 6 })
    );
    for expected in 6..=10 {
        assert_eq!(next_message(&mut resumed).await.0, expected);
    }
}

#[tokio::test]
async fn a_cut_closes_the_streams_and_the_reconnect_gets_what_was_published_meanwhile() {
    let (lesson, _) = serve(settings()).await;
    let mut events = open_events(&lesson, None).await;
    let before = publish(&lesson, "general", "antes del corte").await;
    assert_eq!(next_message(&mut events).await.0, before);

    let cut: Value = reqwest::Client::new()
        .post(lesson.url("/api/cut"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(cut["closed"], 1);
    assert!(
        next_event(&mut events).await.is_none(),
        "the server ended the stream"
    );
    // What a browser does on its own: reconnect with the last id it saw.
    let mut resumed = open_events(&lesson, Some(&before.to_string())).await;
    let published: Vec<u64> = serde_json::from_value(cut["published"].clone()).unwrap();
    assert_eq!(published.len(), 3);
    for expected in published {
        assert_eq!(next_message(&mut resumed).await.0, expected);
    }
}

#[tokio::test]
async fn the_keep_alive_comment_arrives_on_its_own_timer_even_while_events_flow() {
    // Stats every 20 ms: the stream is never idle, so a keep-alive sent only on silence
    // (axum's `KeepAlive`) would never show up.
    let (lesson, _) = serve(Settings {
        keep_alive: Duration::from_millis(300),
        stats_every: Duration::from_millis(20),
        ..settings()
    })
    .await;
    let response = reqwest::get(lesson.url("/events")).await.unwrap();
    let mut bytes = response.bytes_stream();
    let mut text = String::new();

    tokio::time::timeout(WAIT, async {
        while !text.contains("\n: keep-alive\n") {
            let chunk = bytes.next().await.expect("the stream ended").unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no keep-alive comment; the stream sent:\n{text}"));

    let keep_alive = text.find(": keep-alive").unwrap();
    let stats_before = text[..keep_alive].matches("event: stats").count();
    assert!(
        stats_before >= 2,
        "events flowed before the keep-alive ({stats_before} stats)"
    );
    assert!(text.starts_with("retry: 2000\n"), "the stream sets retry");
}

#[tokio::test]
async fn stats_events_carry_the_servers_live_numbers() {
    let (lesson, _) = serve(Settings {
        stats_every: Duration::from_millis(20),
        ..settings()
    })
    .await;
    publish(&lesson, "general", "uno").await;
    let response = reqwest::get(lesson.url("/events")).await.unwrap();
    let mut events = Box::pin(response.bytes_stream().eventsource());

    let stats = tokio::time::timeout(WAIT, async {
        loop {
            let event = events.next().await.unwrap().unwrap();
            if event.event == "stats" {
                return event;
            }
        }
    })
    .await
    .unwrap();

    assert!(
        stats.id.is_empty(),
        "stats carry no id: resuming ignores them"
    );
    let data: Value = serde_json::from_str(&stats.data).unwrap();
    assert_eq!(data["sse_clients"], 1);
    assert_eq!(data["last_event_id"], 1);
    assert_eq!(data["cache"]["backend"], "memory");
}

// ---------------------------------------------------------------------------------------------
// Step 2: the NDJSON export
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_export_streams_its_first_lines_long_before_it_is_all_produced() {
    let (lesson, _) = serve(settings()).await;
    let rows = 1_000_000;

    let response = reqwest::get(lesson.url(&format!("/api/export.ndjson?rows={rows}")))
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    assert!(
        response.headers().get("content-length").is_none(),
        "streamed in chunks, not as one sized body"
    );
    let mut bytes = response.bytes_stream();
    let mut text = String::new();
    while !text.contains('\n') {
        let chunk = tokio::time::timeout(WAIT, bytes.next()).await.unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap().unwrap()));
    }
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], 1);
    // While we hold the first line, the server has produced only what the sockets buffer.
    let now = status(&lesson).await;
    assert_eq!(now["exports_running"], 1);
    let produced = now["exported_rows"].as_u64().unwrap();
    assert!(
        produced < rows,
        "the server produced {produced} of {rows} rows before we read past the first"
    );
}

#[tokio::test]
async fn a_complete_export_has_every_row_once_and_in_order() {
    let (lesson, state) = serve(settings()).await;

    let text = reqwest::get(lesson.url("/api/export.ndjson?rows=1000"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    let ids: Vec<u64> = text
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, (1..=1000).collect::<Vec<_>>());
    assert_eq!(state.export.rows.load(Ordering::Relaxed), 1000);
}

#[tokio::test]
async fn an_export_larger_than_the_limit_is_refused() {
    let (lesson, _) = serve(settings()).await;

    let response = reqwest::get(lesson.url("/api/export.ndjson?rows=999999999"))
        .await
        .unwrap();

    assert_eq!(response.status(), 422);
}

// ---------------------------------------------------------------------------------------------
// Step 3: the cache, one suite for both stores
// ---------------------------------------------------------------------------------------------

/// GET twice (MISS, HIT), write (MISS again, with the new data); another room is untouched.
async fn hit_miss_and_invalidation_on_write(settings: Settings) {
    let (lesson, state) = serve(settings).await;
    let get = |room: &'static str| {
        let url = lesson.url(&format!("/api/rooms/{room}/summary"));
        async move {
            let response = reqwest::get(url).await.unwrap();
            assert_eq!(response.status(), 200);
            let x_cache = response.headers()["x-cache"].to_str().unwrap().to_owned();
            (x_cache, response.json::<Value>().await.unwrap())
        }
    };

    let (first, body) = get("general").await;
    let (second, cached) = get("general").await;
    assert_eq!((first.as_str(), second.as_str()), ("MISS", "HIT"));
    assert_eq!(cached, body, "a HIT is the stored answer");
    assert_eq!(get("rust").await.0, "MISS");
    assert_eq!(state.query_count(), 2);

    publish(&lesson, "general", "esto invalida").await;

    let (after_write, fresh) = get("general").await;
    assert_eq!(after_write, "MISS", "a write invalidates its room");
    assert_eq!(fresh["messages"], 1);
    assert_eq!(fresh["last_message"]["text"], "esto invalida");
    assert_eq!(get("rust").await.0, "HIT", "other rooms keep their entry");
    assert_eq!(state.query_count(), 3);
    let cache = status(&lesson).await["cache"].clone();
    assert_eq!(
        (cache["hits"].as_u64(), cache["misses"].as_u64()),
        (Some(2), Some(3))
    );
}

/// Many concurrent misses of one key run the slow query once: the query waits on a gate
/// that opens only when every other request is waiting for its turn.
async fn concurrent_misses_compute_once(settings: Settings) {
    const REQUESTS: usize = 20;
    let (gate, gate_rx) = watch::channel(false);
    let (lesson, state) = serve(Settings {
        query_gate: Some(gate_rx),
        ..settings
    })
    .await;
    let mut waiting = state.cache.waiting();
    let client = reqwest::Client::new();
    let url = lesson.url("/api/rooms/python/summary");

    let requests: Vec<_> = (0..REQUESTS)
        .map(|_| tokio::spawn(client.get(&url).send()))
        .collect();
    tokio::time::timeout(WAIT, waiting.wait_for(|count| *count == REQUESTS - 1))
        .await
        .unwrap_or_else(|_| {
            panic!(
                "expected {} requests waiting for the one computing; {} queries ran",
                REQUESTS - 1,
                state.query_count()
            )
        })
        .unwrap();
    // And the one with the turn is inside the query, held by the gate.
    let mut queries = state.queries.subscribe();
    tokio::time::timeout(WAIT, queries.wait_for(|count| *count >= 1))
        .await
        .unwrap()
        .unwrap();
    gate.send(true).unwrap();

    let mut statuses = Vec::new();
    let mut bodies = Vec::new();
    for request in requests {
        let response = request.await.unwrap().unwrap();
        statuses.push(response.headers()["x-cache"].to_str().unwrap().to_owned());
        bodies.push(response.text().await.unwrap());
    }
    assert_eq!(state.query_count(), 1, "one computation");
    assert_eq!(statuses.iter().filter(|s| *s == "MISS").count(), 1);
    assert_eq!(
        statuses.iter().filter(|s| *s == "HIT").count(),
        REQUESTS - 1
    );
    assert!(
        bodies.iter().all(|body| *body == bodies[0]),
        "all got its answer"
    );
    assert_eq!(*waiting.borrow(), 0);
}

#[tokio::test]
async fn memory_cache_says_hit_and_a_write_invalidates() {
    hit_miss_and_invalidation_on_write(settings()).await;
}

#[tokio::test]
async fn memory_cache_computes_once_for_concurrent_misses() {
    concurrent_misses_compute_once(settings()).await;
}

/// The TTL under tokio's paused clock (no sockets here: the cache is called directly).
#[tokio::test(start_paused = true)]
async fn a_memory_entry_expires_after_its_ttl() {
    let ttl = Duration::from_secs(30);
    let cache = Cache::in_memory(ttl);
    let body = || async { axum::body::Bytes::from_static(b"{}") };

    assert_eq!(cache.get_or_compute("k", body).await.1, CacheStatus::Miss);
    tokio::time::advance(ttl - Duration::from_millis(1)).await;
    assert_eq!(cache.get_or_compute("k", body).await.1, CacheStatus::Hit);
    tokio::time::advance(Duration::from_millis(2)).await;
    assert_eq!(cache.get_or_compute("k", body).await.1, CacheStatus::Miss);
}

#[tokio::test]
async fn unknown_rooms_and_bad_messages_are_refused() {
    let (lesson, _) = serve(settings()).await;
    let client = reqwest::Client::new();

    let summary = reqwest::get(lesson.url("/api/rooms/cocina/summary"))
        .await
        .unwrap();
    assert_eq!(summary.status(), 404);
    for (body, expected) in [
        (
            json!({ "room": "cocina", "user": "ana", "text": "hola" }),
            404,
        ),
        (
            json!({ "room": "general", "user": " ", "text": "hola" }),
            422,
        ),
        (json!({ "room": "general", "user": "ana", "text": "" }), 422),
        (json!({ "room": "general" }), 422),
    ] {
        let response = client
            .post(lesson.url("/api/messages"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), expected, "{body}");
    }
}

/// Settings for the Redis store, or `None` (skipped, visibly) without a Redis.
async fn redis_settings() -> Option<Settings> {
    let url = support::redis_url().await?;
    Some(Settings {
        redis_url: Some(url),
        ..settings()
    })
}

#[tokio::test]
async fn redis_cache_says_hit_and_a_write_invalidates() {
    let Some(settings) = redis_settings().await else {
        return;
    };
    hit_miss_and_invalidation_on_write(settings).await;
}

#[tokio::test]
async fn redis_cache_computes_once_for_concurrent_misses() {
    let Some(settings) = redis_settings().await else {
        return;
    };
    concurrent_misses_compute_once(settings).await;
}

#[tokio::test]
async fn redis_cache_stores_the_answer_in_redis_with_its_ttl() {
    let Some(settings) = redis_settings().await else {
        return;
    };
    let (url, prefix, ttl) = (
        settings.redis_url.clone().unwrap(),
        settings.redis_prefix.clone(),
        settings.cache_ttl,
    );
    let (lesson, _) = serve(settings).await;
    let client = redis::Client::open(url).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{prefix}:summary:general");

    let answer = reqwest::get(lesson.url("/api/rooms/general/summary"))
        .await
        .unwrap();
    assert_eq!(answer.headers()["x-cache"], "MISS");
    let body = answer.text().await.unwrap();

    let stored: Option<String> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        stored.as_deref(),
        Some(body.as_str()),
        "the answer is in Redis"
    );
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(
        pttl > 0 && pttl <= ttl.as_millis() as i64,
        "it expires within the TTL (PTTL {pttl})"
    );
    publish(&lesson, "general", "borra la clave").await;
    let exists: bool = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!exists, "the write deleted the key");
    assert_eq!(status(&lesson).await["cache"]["backend"], "redis");
}

// ---------------------------------------------------------------------------------------------
// Step 4: the measurement
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_measurement_returns_times_it_measured() {
    let cost = Duration::from_millis(20);
    let (lesson, state) = serve(Settings {
        query_cost: cost,
        ..settings()
    })
    .await;
    let n = 4;

    let answer: Value = reqwest::Client::new()
        .post(lesson.url(&format!("/api/measure?n={n}&room=rust")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    let ms = |value: &Value| value.as_f64().unwrap();
    let without = ms(&answer["without_cache"]["total_ms"]);
    let with = ms(&answer["with_cache"]["times"]["total_ms"]);
    assert!(
        without >= (n as f64) * cost.as_secs_f64() * 1000.0,
        "{n} slow queries take at least {n} × {cost:?}: {answer}"
    );
    assert!(with < without, "the cache is faster: {answer}");
    assert!(
        ms(&answer["with_cache"]["times"]["max_ms"]) >= cost.as_secs_f64() * 1000.0,
        "the MISS ran the query"
    );
    assert_eq!(answer["with_cache"]["misses"], 1);
    assert_eq!(answer["with_cache"]["hits"], n - 1);
    assert_eq!(answer["room"], "rust");
    // n queries without the cache, one with it: the numbers come from real runs.
    assert_eq!(state.query_count(), n + 1);
}

#[tokio::test]
async fn the_measurement_refuses_a_bad_n() {
    let (lesson, _) = serve(settings()).await;

    for n in ["0", "51"] {
        let response = reqwest::Client::new()
            .post(lesson.url(&format!("/api/measure?n={n}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "n={n}");
    }
}
