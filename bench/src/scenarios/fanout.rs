//! `fanout`: R rooms × N connections; the first S connections of each room send. Each message
//! carries its send time (`"<sender> <seq> <µs>"`), so every delivery is timed by its receiver.
//!
//! Open loop: each sender sends `--messages` at `--rate` per second. Closed loop
//! (`--window K`): besides the pace, at most K messages of a room are in flight, from their
//! `send` until every connection of the room has received them (so no reader of the generator
//! falls more than K messages behind, and the test measures the server, not a lagging client).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::sync::{Semaphore, watch};
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use super::{Common, CpuMeter, wait_until};
use crate::client::{self, Frame};
use crate::latency::{Clock, Latencies, ms_at};
use crate::report::Run;
use crate::target::Target;

#[derive(Debug, Clone, clap::Args)]
pub struct Fanout {
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Connections per room (senders included).
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// Senders per room.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages per sender.
    #[arg(long, default_value_t = 100)]
    pub messages: usize,
    /// Messages per second per sender (the chat allows 20 frames/s per connection).
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    /// Closed loop: at most this many messages of a room in flight.
    #[arg(long)]
    pub window: Option<usize>,
    /// Seconds to wait for the last deliveries after the last send.
    #[arg(long, default_value_t = 10)]
    pub drain_secs: u64,
    /// Spread the senders' clocks evenly over one period (sender k of S starts k/S of a period
    /// late). Without it they all start at once, so every tick is a burst of one message per
    /// sender: with 50 senders × 1,000 connections, 50,000 frames at the same instant.
    #[arg(long)]
    pub spread: bool,
}

impl Default for Fanout {
    fn default() -> Self {
        Self {
            rooms: 1,
            clients: 100,
            senders: 10,
            messages: 100,
            rate: 10.0,
            window: None,
            drain_secs: 10,
            spread: false,
        }
    }
}

/// What the readers count, shared by all of them.
#[derive(Default)]
struct Tally {
    received: AtomicU64,
    errors: AtomicU64,
    /// The `code` of every error frame, counted (few: errors are rare and worth naming).
    codes: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    closed: AtomicU64,
    last_delivery_us: AtomicU64,
}

pub async fn run(
    target: &Target,
    common: &Common,
    prefix: &str,
    opts: &Fanout,
) -> anyhow::Result<Run> {
    let clients = opts.clients.max(1);
    let senders = opts.senders.min(clients);
    let total = opts.rooms.max(1) * clients;
    let http = client::http()?;
    let users = common
        .users
        .unwrap_or_else(|| client::users_for(total, common.per_user));
    let tokens = client::accounts(target, &http, prefix, users).await?;
    let rooms: Vec<String> = (0..opts.rooms.max(1))
        .map(|r| format!("{prefix}-{r}"))
        .collect();
    for room in &rooms {
        client::create_room(target, &http, &tokens[0], room).await?;
    }
    let sockets = client::open_joined(
        target,
        &tokens,
        total,
        |i| rooms[i / clients].clone(),
        "conexiones",
    )
    .await?;

    let clock = Clock::start();
    let latencies = Arc::new(Latencies::new());
    let tally = Arc::new(Tally::default());
    let sent: Arc<Vec<AtomicU64>> = Arc::new(rooms.iter().map(|_| AtomicU64::new(0)).collect());
    let windows: Vec<Option<Arc<Semaphore>>> = rooms
        .iter()
        .map(|_| opts.window.map(|k| Arc::new(Semaphore::new(k.max(1)))))
        .collect();
    // Closed loop: per room, how many connections got each message (by sender and sequence).
    let got: Vec<Arc<Vec<AtomicU32>>> = rooms
        .iter()
        .map(|_| {
            let slots = if opts.window.is_some() {
                senders * opts.messages
            } else {
                0
            };
            Arc::new((0..slots).map(|_| AtomicU32::new(0)).collect())
        })
        .collect();
    let messages_per_sender = opts.messages;
    let (stop, stopped) = watch::channel(false);
    let cpu = CpuMeter::start(target.pid);
    let own_cpu = CpuMeter::start(Some(std::process::id()));
    let period = Duration::from_secs_f64(1.0 / opts.rate.max(0.01));
    let drain = Duration::from_secs(opts.drain_secs);
    let bar = crate::progress::bar(
        (rooms.len() * senders * opts.messages) as u64,
        "mensajes enviados",
    );

    let mut readers = Vec::with_capacity(total);
    let mut sending = Vec::new();
    for (i, ws) in sockets.into_iter().enumerate() {
        let room_index = i / clients;
        let me = (i % clients < senders).then(|| room_index * senders + i % clients);
        let (mut sink, mut stream) = ws.split();
        let (latencies, tally, mut stopped) = (latencies.clone(), tally.clone(), stopped.clone());
        let window = windows[room_index].clone();
        let got = got[room_index].clone();
        let first_sender = room_index * senders;
        readers.push(tokio::spawn({
            let window = window.clone();
            async move {
                loop {
                    let message = tokio::select! {
                        _ = stopped.changed() => break,
                        message = stream.next() => message,
                    };
                    let Some(Ok(message)) = message else {
                        tally.closed.fetch_add(1, Ordering::Relaxed);
                        break;
                    };
                    let Message::Text(text) = message else {
                        continue;
                    };
                    let Ok(frame) = serde_json::from_str::<Frame>(&text) else {
                        continue;
                    };
                    match &*frame.kind {
                        // `message` from a chat; the baseline echoes the `send` frame itself.
                        "message" | "send" => {
                            let Some((sender, seq, sent_us)) =
                                frame.text.as_deref().and_then(parse_text)
                            else {
                                continue;
                            };
                            let now = clock.micros();
                            latencies.record(i, now.saturating_sub(sent_us));
                            tally.received.fetch_add(1, Ordering::Relaxed);
                            tally.last_delivery_us.fetch_max(now, Ordering::Relaxed);
                            // The last connection of the room to get a message reopens the window.
                            let slot = sender
                                .checked_sub(first_sender)
                                .map(|local| local * messages_per_sender + seq);
                            if let (Some(window), Some(count)) =
                                (&window, slot.and_then(|slot| got.get(slot)))
                            {
                                if count.fetch_add(1, Ordering::Relaxed) + 1 == clients as u32 {
                                    window.add_permits(1);
                                }
                            }
                        }
                        "error" => {
                            tally.errors.fetch_add(1, Ordering::Relaxed);
                            let code = frame.code.as_deref().unwrap_or("?").to_owned();
                            if let Ok(mut codes) = tally.codes.lock() {
                                *codes.entry(code).or_default() += 1;
                            }
                        }
                        _ => {}
                    }
                }
            }
        }));
        let Some(me) = me else {
            drop(sink);
            continue;
        };
        let (room, sent, bar) = (rooms[room_index].clone(), sent.clone(), bar.clone());
        let messages = opts.messages;
        let offset = if opts.spread {
            period.mul_f64(me as f64 / (rooms.len() * senders).max(1) as f64)
        } else {
            Duration::ZERO
        };
        sending.push(tokio::spawn(async move {
            let mut pace = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
            for seq in 0..messages {
                if let Some(window) = &window {
                    match tokio::time::timeout(drain, window.acquire()).await {
                        Ok(Ok(permit)) => permit.forget(),
                        // A room whose window never reopens lost messages: stop sending there.
                        _ => break,
                    }
                }
                pace.tick().await;
                let text = format!("{me} {seq} {}", clock.micros());
                let frame = json!({ "type": "send", "room": room, "text": text }).to_string();
                if sink.send(Message::text(frame)).await.is_err() {
                    break;
                }
                sent[room_index].fetch_add(1, Ordering::Relaxed);
                bar.inc(1);
            }
            sink
        }));
    }
    let mut sinks = Vec::with_capacity(sending.len());
    for task in sending {
        if let Ok(sink) = task.await {
            sinks.push(sink);
        }
    }
    bar.finish_and_clear();
    let sent_total: u64 = sent.iter().map(|s| s.load(Ordering::Relaxed)).sum();
    let expected = sent_total * clients as u64;
    let all_in = wait_until(drain, || tally.received.load(Ordering::Relaxed) >= expected).await;
    let server_cpu = cpu.percent();
    let generator_cpu = own_cpu.percent();
    let _ = stop.send(true);
    for reader in readers {
        let _ = reader.await;
    }
    drop(sinks);

    let received = tally.received.load(Ordering::Relaxed);
    let seconds = (tally.last_delivery_us.load(Ordering::Relaxed) as f64 / 1e6).max(1e-6);
    let histogram = latencies.merged();
    let mut run = Run::new(target.kind.name());
    run.param("salas", rooms.len());
    run.param("clientes_por_sala", clients);
    run.param("emisores_por_sala", senders);
    run.param("mensajes_por_emisor", opts.messages);
    run.param("ritmo_por_emisor", opts.rate);
    run.param("escalonados", opts.spread);
    run.param(
        "ventana",
        opts.window.map_or(serde_json::Value::Null, |k| k.into()),
    );
    run.param("usuarios", users);
    run.metric(
        "deliveries_per_s",
        "entregas por segundo",
        "/s",
        received as f64 / seconds,
    );
    run.metric("deliveries", "entregas", "", received as f64);
    run.metric("expected", "entregas esperadas", "", expected as f64);
    run.metric(
        "lost",
        "perdidas",
        "",
        expected.saturating_sub(received) as f64,
    );
    run.metric("sent", "mensajes enviados", "", sent_total as f64);
    run.metric(
        "seconds",
        "duración (primer envío a última entrega)",
        "s",
        seconds,
    );
    run.metric("p50_ms", "latencia p50", "ms", ms_at(&histogram, 0.50));
    run.metric("p90_ms", "latencia p90", "ms", ms_at(&histogram, 0.90));
    run.metric("p99_ms", "latencia p99", "ms", ms_at(&histogram, 0.99));
    run.metric(
        "max_ms",
        "latencia máxima",
        "ms",
        histogram.max() as f64 / 1000.0,
    );
    run.metric(
        "errors",
        "tramas de error recibidas",
        "",
        tally.errors.load(Ordering::Relaxed) as f64,
    );
    if let Some(cpu) = server_cpu {
        run.metric("server_cpu_pct", "CPU del servidor", "% de un núcleo", cpu);
    }
    if let Some(cpu) = generator_cpu {
        run.metric(
            "generator_cpu_pct",
            "CPU del generador",
            "% de un núcleo",
            cpu,
        );
    }
    if !all_in {
        run.note(format!(
            "faltaron entregas tras esperar {} s después del último envío",
            opts.drain_secs
        ));
    }
    if let Ok(codes) = tally.codes.lock() {
        if !codes.is_empty() {
            let codes: Vec<String> = codes.iter().map(|(c, n)| format!("{c} × {n}")).collect();
            run.note(format!("errores recibidos: {}", codes.join(", ")));
        }
    }
    let closed = tally.closed.load(Ordering::Relaxed);
    if closed > 0 {
        run.note(format!(
            "el servidor cerró {closed} conexiones durante la medida"
        ));
    }
    Ok(run)
}

/// `"<sender> <seq> <µs>"` → (sender, seq, µs).
fn parse_text(text: &str) -> Option<(usize, usize, u64)> {
    let mut parts = text.split(' ');
    let sender = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let sent_us = parts.next()?.parse().ok()?;
    Some((sender, seq, sent_us))
}
