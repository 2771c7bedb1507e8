//! Micro-benchmarks of the chat's hot paths, through the crate's public API:
//! `cargo bench -p chat --bench hot_paths` (add `-- --quick` for a short run).
//!
//! - parsing a client frame (`ws::protocol::parse`, and beside it what it did before: through a
//!   `serde_json::Value`) and serializing server frames
//!   (`message_frame_parts`, `to_json`, `joined` with 1,000 users online and 50 messages);
//! - the hub's fan-out of one event to 1,000 local subscribers (`Hub::deliver`);
//! - appending to a room's history on the in-process backend (`MessageLog::append`);
//! - the per-frame rate limit: the limiter lives inside a connection (private), so this measures
//!   the same `governor` call with the same quota (20 frames/s, burst 40), not the chat's code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat::backend::{self, Audience, Draft, RoomEvent, StoredFrame};
use chat::domain::RoomId;
use chat::ws::hub::{Hub, Subscriber};
use chat::ws::protocol::{self, PresenceStatus, ServerFrame};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn draft(text: &str) -> Draft {
    Draft {
        room: RoomId::general(),
        user: "ana_99".into(),
        text: text.into(),
        client_id: Some("c-123".into()),
        ts: "2026-12-01T20:00:00.000Z".into(),
    }
}

fn frames(c: &mut Criterion) {
    let mut group = c.benchmark_group("frames");
    let send = r#"{"type":"send","room":"general","text":"hola @luis, ¿vienes a la reunión de las 10?","client_id":"c-123"}"#;
    group.bench_function("parse_send", |b| {
        b.iter(|| protocol::parse(black_box(send)))
    });
    // What `parse` did before issue 13: a `serde_json::Value` tree, then the typed enum.
    group.bench_function("parse_send_via_value", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_str(black_box(send)).unwrap();
            serde_json::from_value::<protocol::ClientFrame>(value).unwrap()
        })
    });
    let join = r#"{"type":"join","room":"general","since":1234}"#;
    group.bench_function("parse_join", |b| {
        b.iter(|| protocol::parse(black_box(join)))
    });
    group.bench_function("parse_invalid", |b| {
        b.iter(|| protocol::parse(black_box(r#"{"type":"send","room":7}"#)))
    });
    let message = draft("hola @luis, ¿vienes a la reunión de las 10?");
    group.bench_function("serialize_message", |b| {
        b.iter(|| backend::message_frame_parts(black_box(&message)))
    });
    group.bench_function("serialize_presence", |b| {
        b.iter(|| {
            protocol::to_json(black_box(&ServerFrame::Presence {
                room: "general",
                user: "ana_99",
                status: PresenceStatus::Online,
            }))
        })
    });
    let online: Vec<String> = (0..1000).map(|i| format!("usuario_{i}")).collect();
    let history: Vec<StoredFrame> = (1..=50)
        .map(|id| {
            let (prefix, suffix) = backend::message_frame_parts(&message);
            StoredFrame {
                id,
                json: format!("{prefix}{id}{suffix}").into(),
            }
        })
        .collect();
    let answer = protocol::Joined {
        room: "general",
        online: &online,
        history: &history,
        epoch: "a1b2c3",
        reset: false,
        truncated: false,
        has_more: Some(true),
    };
    group.bench_function("serialize_joined_1000_online_50_history", |b| {
        b.iter(|| protocol::joined(black_box(&answer)))
    });
    group.finish();
}

fn hub_fanout(c: &mut Criterion) {
    const SUBSCRIBERS: usize = 1000;
    let hub = Hub::new();
    let room = RoomId::general();
    let mut queues = Vec::with_capacity(SUBSCRIBERS);
    for i in 0..SUBSCRIBERS {
        let (queue, events) = mpsc::channel(256);
        let subscriber = Subscriber {
            user: format!("usuario_{i}").into(),
            queue,
            overflow: CancellationToken::new(),
        };
        hub.subscribe(&room, uuid::Uuid::new_v4(), subscriber);
        queues.push(events);
    }
    let (prefix, suffix) = backend::message_frame_parts(&draft("hola a todos"));
    let event = RoomEvent {
        room: room.clone(),
        message_id: Some(1),
        audience: Audience::Everyone,
        frame: format!("{prefix}1{suffix}").into(),
    };
    let mut group = c.benchmark_group("hub");
    group.throughput(Throughput::Elements(SUBSCRIBERS as u64));
    group.bench_function("deliver_to_1000_subscribers", |b| {
        // Only `deliver` is timed; emptying the queues afterwards keeps them from overflowing.
        b.iter_custom(|iterations| {
            let mut timed = Duration::ZERO;
            for _ in 0..iterations {
                let event = event.clone();
                let started = Instant::now();
                hub.deliver(event);
                timed += started.elapsed();
                for queue in &mut queues {
                    while queue.try_recv().is_ok() {}
                }
            }
            timed
        })
    });
    group.finish();
}

fn history_append(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("history");
    // A fresh backend every 10,000 appends: every batch measures a room's first 10,000 messages
    // (what `CHAT_HISTORY_LIMIT` keeps by default), not a heap that grows for millions of them.
    let runtime = &runtime;
    let appends = |with_client_id: bool| {
        move |iterations: u64| {
            let mut timed = Duration::ZERO;
            let mut left = iterations;
            while left > 0 {
                let chunk = left.min(10_000);
                let log = backend::memory::backends(Arc::new(Hub::new())).messages;
                let drafts: Vec<Draft> = (0..chunk)
                    .map(|n| {
                        let mut message = draft("hola @luis, ¿vienes a la reunión de las 10?");
                        message.client_id = with_client_id.then(|| format!("c-{n}"));
                        message
                    })
                    .collect();
                let started = Instant::now();
                runtime.block_on(async {
                    for message in drafts {
                        black_box(log.append(message).await.unwrap());
                    }
                });
                timed += started.elapsed();
                left -= chunk;
            }
            timed
        }
    };
    group.bench_function("append_memory_backend", |b| b.iter_custom(appends(false)));
    // With a `client_id` (what the web client sends), averaged over a room's first 10,000.
    group.bench_function("append_memory_backend_with_client_id", |b| {
        b.iter_custom(appends(true))
    });
    group.finish();
}

fn rate_limit(c: &mut Criterion) {
    let quota =
        Quota::per_second(NonZeroU32::new(20).unwrap()).allow_burst(NonZeroU32::new(40).unwrap());
    let limiter = RateLimiter::direct(quota);
    let mut group = c.benchmark_group("rate_limit");
    // Mostly refusals once the burst is spent: the cost a flooding client imposes per frame.
    group.bench_function("governor_check_20_per_s_burst_40", |b| {
        b.iter(|| black_box(limiter.check().is_ok()))
    });
    group.finish();
}

criterion_group!(benches, frames, hub_fanout, history_append, rate_limit);
criterion_main!(benches);
