//! `join-storm`: N users, one connection each, already connected, send `join` for the same room
//! at the same moment. Measures the time until every one has its `joined`, and every frame the
//! server sends until it goes quiet: O(N) frames is the goal, N² the symptom of presence sent
//! to everyone for everyone.
//!
//! On the baseline, which has no `join`, the storm is N connections opened at once and greeted.
//!
//! Each client also keeps its view of who is online (its `joined` list with every `presence`
//! applied): at the end, the clients whose view holds all N users show that nothing was lost.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

use super::wait_until;
use crate::client::{self, Frame, WAIT, Ws};
use crate::latency::{Clock, Latencies, ms_at};
use crate::report::Run;
use crate::target::{Kind, Target};

#[derive(Debug, Clone, clap::Args)]
pub struct JoinStorm {
    /// Users (one connection each) that join at once.
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Milliseconds without a frame after the last `joined` that count as "the server is done".
    #[arg(long, default_value_t = 1000)]
    pub quiet_ms: u64,
}

impl Default for JoinStorm {
    fn default() -> Self {
        Self {
            users: 1000,
            quiet_ms: 1000,
        }
    }
}

#[derive(Default)]
struct Tally {
    joined: AtomicU64,
    frames: AtomicU64,
    presence: AtomicU64,
    bytes: AtomicU64,
    last_frame_us: AtomicU64,
    last_joined_us: AtomicU64,
    failed: AtomicU64,
    /// Connections the server closed during the storm, and how many of those with 1013
    /// (its outbound queue overflowed).
    closed: AtomicU64,
    closed_1013: AtomicU64,
    /// Clients whose view ended with every one of the N users online.
    complete_views: AtomicU64,
}

/// Applies a `joined` or `presence` frame to a client's view of who is online.
fn apply(view: &mut HashSet<String>, text: &str) {
    let Ok(frame) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let name = |value: &serde_json::Value| value.as_str().map(str::to_owned);
    match frame["type"].as_str() {
        Some("joined") => {
            let online = frame["online"].as_array().into_iter().flatten();
            *view = online.filter_map(name).collect();
        }
        Some("presence") => {
            let Some(user) = name(&frame["user"]) else {
                return;
            };
            if frame["status"] == "online" {
                view.insert(user);
            } else {
                view.remove(&user);
            }
        }
        _ => {}
    }
}

pub async fn run(target: &Target, prefix: &str, opts: &JoinStorm) -> anyhow::Result<Run> {
    let n = opts.users.max(1);
    let http = client::http()?;
    let tokens = client::accounts(target, &http, prefix, n).await?;
    let room = format!("{prefix}-storm");
    client::create_room(target, &http, &tokens[0], &room).await?;
    // On a chat, connect everyone first (without joining); on the baseline connecting is joining.
    let mut prepared: Vec<Option<Ws>> = Vec::with_capacity(n);
    if target.kind == Kind::Chat {
        let bar = crate::progress::bar(n as u64, "conexiones");
        for (i, token) in tokens.iter().enumerate() {
            prepared.push(Some(client::connect(target, token, &room, i).await?));
            bar.inc(1);
        }
        bar.finish_and_clear();
    } else {
        prepared.resize_with(n, || None);
    }

    let clock = Clock::start();
    let latencies = Arc::new(Latencies::new());
    let tally = Arc::new(Tally::default());
    let (go, started) = watch::channel(false);
    let (stop, stopped) = watch::channel(false);
    let cpu = super::CpuMeter::start(target.pid);
    let mut tasks = Vec::with_capacity(n);
    for (i, ws) in prepared.into_iter().enumerate() {
        let (target, room, latencies, tally) = (
            target.clone(),
            room.clone(),
            latencies.clone(),
            tally.clone(),
        );
        let (mut started, mut stopped) = (started.clone(), stopped.clone());
        tasks.push(tokio::spawn(async move {
            if started.wait_for(|go| *go).await.is_err() {
                return None;
            }
            let begun = clock.micros();
            let mut ws = match ws {
                Some(mut ws) => {
                    if ws.send(client::join_frame(&room)).await.is_err() {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                    ws
                }
                None => match client::connect(&target, "", &room, i).await {
                    Ok(ws) => ws,
                    Err(_) => {
                        tally.failed.fetch_add(1, Ordering::Relaxed);
                        return None;
                    }
                },
            };
            let mut joined = false;
            let mut view = HashSet::new();
            loop {
                let message = tokio::select! {
                    _ = stopped.changed() => break,
                    message = tokio::time::timeout(WAIT, ws.next()) => message,
                };
                let Ok(Some(Ok(message))) = message else {
                    tally.closed.fetch_add(1, Ordering::Relaxed);
                    break;
                };
                if let Message::Close(frame) = &message {
                    tally.closed.fetch_add(1, Ordering::Relaxed);
                    if frame.as_ref().is_some_and(|f| u16::from(f.code) == 1013) {
                        tally.closed_1013.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
                let Message::Text(text) = message else {
                    continue;
                };
                let now = clock.micros();
                tally.frames.fetch_add(1, Ordering::Relaxed);
                tally.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
                tally.last_frame_us.fetch_max(now, Ordering::Relaxed);
                let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
                    continue;
                };
                if matches!(&*frame.kind, "joined" | "presence") {
                    apply(&mut view, &text);
                }
                match &*frame.kind {
                    "joined" if !joined => {
                        joined = true;
                        latencies.record(i, now - begun);
                        tally.joined.fetch_add(1, Ordering::Relaxed);
                        tally.last_joined_us.fetch_max(now, Ordering::Relaxed);
                    }
                    "presence" => {
                        tally.presence.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
            if view.len() == n {
                tally.complete_views.fetch_add(1, Ordering::Relaxed);
            }
            Some(ws)
        }));
    }
    let _ = go.send(true);
    let bar = crate::progress::bar(n as u64, "joined recibidos");
    let everyone = wait_until(Duration::from_secs(60), || {
        let joined = tally.joined.load(Ordering::Relaxed);
        bar.set_position(joined);
        joined + tally.failed.load(Ordering::Relaxed) >= n as u64
    })
    .await;
    bar.finish_and_clear();
    // Then until nothing arrives for `quiet_ms` (at most 60 s more).
    let quiet_us = opts.quiet_ms * 1000;
    wait_until(Duration::from_secs(60), || {
        clock
            .micros()
            .saturating_sub(tally.last_frame_us.load(Ordering::Relaxed))
            >= quiet_us
    })
    .await;
    let server_cpu = cpu.percent();
    let _ = stop.send(true);
    let mut sockets = Vec::with_capacity(n);
    for task in tasks {
        if let Ok(Some(ws)) = task.await {
            sockets.push(ws);
        }
    }
    drop(sockets);

    let joined = tally.joined.load(Ordering::Relaxed);
    let frames = tally.frames.load(Ordering::Relaxed);
    let histogram = latencies.merged();
    let mut run = Run::new(target.kind.name());
    run.param("usuarios", n);
    run.metric("joined", "conexiones con su joined", "", joined as f64);
    run.metric(
        "all_joined_s",
        "tiempo hasta el último joined",
        "s",
        tally.last_joined_us.load(Ordering::Relaxed) as f64 / 1e6,
    );
    run.metric(
        "join_p50_ms",
        "espera de joined p50",
        "ms",
        ms_at(&histogram, 0.50),
    );
    run.metric(
        "join_p99_ms",
        "espera de joined p99",
        "ms",
        ms_at(&histogram, 0.99),
    );
    run.metric("frames", "tramas recibidas en total", "", frames as f64);
    run.metric(
        "frames_per_user",
        "tramas por usuario",
        "",
        frames as f64 / n as f64,
    );
    run.metric(
        "presence_frames",
        "tramas presence",
        "",
        tally.presence.load(Ordering::Relaxed) as f64,
    );
    run.metric(
        "mib_received",
        "bytes recibidos en total",
        "MiB",
        tally.bytes.load(Ordering::Relaxed) as f64 / 1_048_576.0,
    );
    if let Some(cpu) = server_cpu {
        run.metric("server_cpu_pct", "CPU del servidor", "% de un núcleo", cpu);
    }
    if !everyone {
        run.note(format!("solo {joined} de {n} recibieron joined en 60 s"));
    }
    run.metric(
        "closed",
        "conexiones cerradas por el servidor",
        "",
        tally.closed.load(Ordering::Relaxed) as f64,
    );
    run.metric(
        "closed_1013",
        "de ellas con 1013 (cola de salida llena)",
        "",
        tally.closed_1013.load(Ordering::Relaxed) as f64,
    );
    if target.kind == Kind::Chat {
        run.metric(
            "complete_views",
            "clientes que terminan viendo a los N en línea",
            "",
            tally.complete_views.load(Ordering::Relaxed) as f64,
        );
    }
    let failed = tally.failed.load(Ordering::Relaxed);
    if failed > 0 {
        run.note(format!("{failed} conexiones fallaron"));
    }
    if target.kind == Kind::Baseline {
        run.note("en la base no hay join: la tormenta es abrir las N conexiones a la vez");
    }
    Ok(run)
}
