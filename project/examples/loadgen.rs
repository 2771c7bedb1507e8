//! Load generator for the chat: many WebSocket clients in one room, a few of them sending, and a
//! report of throughput, latency percentiles and losses. Speed claims are proven with this, not
//! with timed assertions in tests.
//!
//! Ejecuta con (el servidor en otra terminal, mejor en release):
//!   cargo run --release -p chat
//!   cargo run --release -p chat --example loadgen -- --clients 500 --senders 20 --messages 50
//! Con `--pid <pid del servidor>` informa también de la memoria residente (RSS) del servidor.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_tungstenite::tungstenite::Message;

#[derive(Debug, Parser)]
#[command(about = "Generador de carga para el chat")]
struct Args {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8000")]
    url: String,
    /// Connections that join the room (senders included).
    #[arg(long, default_value_t = 200)]
    clients: usize,
    /// How many of them send messages.
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages each sender sends.
    #[arg(long, default_value_t = 50)]
    messages: usize,
    /// Messages per second per sender (the server allows 20 sustained).
    #[arg(long, default_value_t = 10.0)]
    rate: f64,
    /// PID of the server, to report its resident memory.
    #[arg(long)]
    pid: Option<u32>,
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let http = reqwest::Client::new();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let room = format!("carga-{run}");
    println!("preparando {} clientes en la sala {room}…", args.clients);

    let first = token(&http, &args.url, &format!("load_{run}_0")).await;
    let created = http
        .post(format!("{}/rooms", args.url))
        .bearer_auth(&first)
        .json(&json!({ "id": room, "name": "Prueba de carga" }))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "no se pudo crear la sala: {}",
        created.status()
    );

    let mut tokens = vec![first];
    for i in 1..args.clients {
        tokens.push(token(&http, &args.url, &format!("load_{run}_{i}")).await);
    }
    // Memory before and after opening the connections: the difference is what they cost.
    let rss_without_connections = args.pid.and_then(rss_kib);
    let mut sockets = Vec::with_capacity(args.clients);
    for token in tokens {
        let ws_url = format!("{}/ws?token={token}", args.url.replacen("http", "ws", 1));
        let (mut socket, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .expect("conexión WebSocket");
        socket
            .send(Message::text(
                json!({ "type": "join", "room": room }).to_string(),
            ))
            .await
            .unwrap();
        wait_for(&mut socket, "joined").await;
        sockets.push(socket);
    }
    let rss_with_connections = args.pid.and_then(rss_kib);

    let expected = (args.senders * args.messages * args.clients) as u64;
    let received = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(expected as usize)));
    let started = Instant::now();
    let mut readers = Vec::new();
    let mut senders = Vec::new();
    for (i, socket) in sockets.into_iter().enumerate() {
        let (mut sink, mut stream) = socket.split();
        let (received, latencies, room) = (received.clone(), latencies.clone(), room.clone());
        let to_receive = (args.senders * args.messages) as u64;
        readers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            let mut count = 0;
            while count < to_receive {
                let Ok(Some(Ok(Message::Text(text)))) =
                    tokio::time::timeout(Duration::from_secs(30), stream.next()).await
                else {
                    break;
                };
                let frame: Value = serde_json::from_str(&text).unwrap_or_default();
                if frame["type"] == "message" {
                    let sent_at: u64 = frame["text"]
                        .as_str()
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0);
                    mine.push(
                        started.elapsed().as_micros() as u64
                            - sent_at.min(started.elapsed().as_micros() as u64),
                    );
                    count += 1;
                }
            }
            received.fetch_add(count, Ordering::Relaxed);
            latencies.lock().await.extend(mine);
        }));
        if i < args.senders {
            let (messages, pause) = (args.messages, Duration::from_secs_f64(1.0 / args.rate));
            senders.push(tokio::spawn(async move {
                for _ in 0..messages {
                    let text = started.elapsed().as_micros().to_string();
                    let frame = json!({ "type": "send", "room": room, "text": text });
                    if sink.send(Message::text(frame.to_string())).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                }
                // Keep the write half (and so the connection) open until the readers are done.
                std::future::pending::<()>().await;
            }));
        } else {
            drop(sink);
        }
    }
    for reader in readers {
        let _ = reader.await;
    }
    let elapsed = started.elapsed();
    for sender in senders {
        sender.abort();
    }

    let mut latencies = latencies.lock().await.clone();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    let received = received.load(Ordering::Relaxed);
    println!(
        "entregas: {received} de {expected} ({} perdidas)",
        expected - received.min(expected)
    );
    println!(
        "duración: {:.2} s, {:.0} entregas/s",
        elapsed.as_secs_f64(),
        received as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latencia (ms): p50 {:.2}, p95 {:.2}, p99 {:.2}, máx {:.2}",
        percentile(0.50),
        percentile(0.95),
        percentile(0.99),
        latencies.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    if let (Some(without), Some(with), Some(end)) = (
        rss_without_connections,
        rss_with_connections,
        args.pid.and_then(rss_kib),
    ) {
        println!(
            "memoria del servidor (RSS): {without} KiB sin conexiones, {with} KiB con {} en reposo \
             ({:.1} KiB por conexión), {end} KiB al final",
            args.clients,
            with.saturating_sub(without) as f64 / args.clients as f64
        );
    }
}

/// Registers a user (ignoring "already exists") and logs it in.
async fn token(http: &reqwest::Client, base: &str, username: &str) -> String {
    let password = "contraseña-de-carga";
    let email = format!("{username}@carga.test");
    let _ = http
        .post(format!("{base}/auth/register"))
        .json(&json!({ "username": username, "password": password, "email": email }))
        .send()
        .await;
    let login: Value = http
        .post(format!("{base}/auth/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"].as_str().expect("login").to_owned()
}

async fn wait_for(socket: &mut Socket, kind: &str) {
    while let Some(Ok(message)) = socket.next().await {
        if let Message::Text(text) = message {
            let frame: Value = serde_json::from_str(&text).unwrap_or_default();
            if frame["type"] == kind {
                return;
            }
        }
    }
    panic!("la conexión terminó antes de recibir «{kind}»");
}

/// Resident memory of a process, from /proc (Linux only).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
