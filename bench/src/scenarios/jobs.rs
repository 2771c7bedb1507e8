//! `jobs`: mention e-mails. U users join R rooms once and go offline; one author then sends
//! messages that mention them, 20 per message (the chat's cap per message), so U × R e-mail
//! jobs are queued (one per user and room: the contract allows one per 10 minutes, and at most
//! 10 per user and hour, hence R ≤ 10), from one connection per room at 15 messages/s each (the
//! chat allows 20 frames/s per connection). Measures how fast the messages are stored, how long
//! until every job is `done` (from `chat_jobs_total` in `/metrics`), and, with `--outbox`, the
//! `.eml` files that appear.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt, TryStreamExt, stream};
use serde_json::json;
use tokio::time::MissedTickBehavior;
use tokio_tungstenite::tungstenite::Message;

use super::wait_until;
use crate::client::{self, Frame, WAIT};
use crate::report::Run;
use crate::target::{Kind, Target};

/// Mentions per message (the chat notifies at most 20 users per message).
const MENTIONS_PER_MESSAGE: usize = 20;

#[derive(Debug, Clone, clap::Args)]
pub struct JobsOpts {
    /// Users mentioned while offline.
    #[arg(long, default_value_t = 100)]
    pub offline: usize,
    /// Rooms where each is mentioned (at most 10: the hourly cap per user).
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Seconds to wait for the jobs to be done.
    #[arg(long, default_value_t = 120)]
    pub drain_secs: u64,
    /// The server's outbox folder, to count the `.eml` files it writes.
    #[arg(long)]
    pub outbox: Option<PathBuf>,
}

impl Default for JobsOpts {
    fn default() -> Self {
        Self {
            offline: 100,
            rooms: 10,
            drain_secs: 120,
            outbox: None,
        }
    }
}

/// The `chat_jobs_total` counters (done, failed, dead) of `/metrics`.
async fn job_counters(target: &Target, http: &reqwest::Client) -> anyhow::Result<[u64; 3]> {
    let text = http
        .get(target.url("/metrics"))
        .send()
        .await
        .context("GET /metrics")?
        .text()
        .await?;
    let mut counts = [0; 3];
    for line in text.lines().filter(|l| l.starts_with("chat_jobs_total{")) {
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        for (slot, status) in ["done", "failed", "dead"].iter().enumerate() {
            if line.contains(&format!("status=\"{status}\"")) {
                counts[slot] += value;
            }
        }
    }
    Ok(counts)
}

/// `.eml` files in the outbox (`None` without `--outbox`; a folder not yet created holds 0).
fn eml_files(outbox: &Option<PathBuf>) -> Option<usize> {
    let Ok(dir) = std::fs::read_dir(outbox.as_ref()?) else {
        return Some(0);
    };
    Some(
        dir.filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "eml"))
            .count(),
    )
}

pub async fn run(target: &Target, prefix: &str, opts: &JobsOpts) -> anyhow::Result<Run> {
    if target.kind == Kind::Baseline {
        bail!("la base no tiene cola de trabajos: el escenario jobs solo se mide contra el chat");
    }
    let rooms_n = opts.rooms.clamp(1, 10);
    let http = client::http()?;
    // Account 0 is the author; 1..=offline are mentioned.
    let tokens = client::accounts(target, &http, prefix, opts.offline + 1).await?;
    let rooms: Vec<String> = (0..rooms_n).map(|r| format!("{prefix}-{r}")).collect();
    for room in &rooms {
        client::create_room(target, &http, &tokens[0], room).await?;
    }
    // Each mentioned user joins every room once (so it is a member), then leaves for good.
    let bar = crate::progress::bar(opts.offline as u64, "miembros que se van");
    stream::iter(1..=opts.offline)
        .map(|i| {
            let (token, rooms, bar) = (&tokens[i], &rooms, bar.clone());
            async move {
                let mut ws = client::connect(target, token, "", i).await?;
                for room in rooms {
                    client::join(target, &mut ws, room).await?;
                }
                ws.close(None).await.ok();
                // Until the server's close answer: it has let go of the connection.
                let _ =
                    tokio::time::timeout(WAIT, async { while ws.next().await.is_some() {} }).await;
                bar.inc(1);
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<()>>()
        .await?;
    bar.finish_and_clear();

    let before = job_counters(target, &http).await?;
    let files_before = eml_files(&opts.outbox);
    // One connection of the author per room (each with its own rate limit), all at once.
    let mut authors = Vec::with_capacity(rooms.len());
    for (r, room) in rooms.iter().enumerate() {
        let mut ws = client::connect(target, &tokens[0], "", r).await?;
        client::join(target, &mut ws, room).await?;
        authors.push(ws);
    }
    let names: Vec<String> = (1..=opts.offline)
        .map(|i| format!("{prefix}_{i}"))
        .collect();
    let expected = (opts.offline * rooms_n) as u64;
    let messages = rooms.len() * names.len().div_ceil(MENTIONS_PER_MESSAGE);
    let started = Instant::now();
    let tasks: Vec<_> = authors
        .into_iter()
        .zip(&rooms)
        .map(|(ws, room)| {
            let frames: Vec<String> = names
                .chunks(MENTIONS_PER_MESSAGE)
                .map(|chunk| {
                    let mentions: Vec<String> = chunk.iter().map(|n| format!("@{n}")).collect();
                    let text = format!("aviso para {}", mentions.join(" "));
                    json!({ "type": "send", "room": room, "text": text }).to_string()
                })
                .collect();
            tokio::spawn(author(ws, frames))
        })
        .collect();
    let (mut echoes, mut errors, mut echoed) = (0, 0, true);
    let mut sockets = Vec::new();
    for task in tasks {
        match task.await {
            Ok((ok, failed, all, ws)) => {
                echoes += ok;
                errors += failed;
                echoed &= all;
                sockets.push(ws);
            }
            Err(_) => echoed = false,
        }
    }
    let stored_secs = started.elapsed().as_secs_f64();

    let mut now = before;
    let mut failures = None;
    let drained = {
        let deadline = Instant::now() + Duration::from_secs(opts.drain_secs);
        loop {
            match job_counters(target, &http).await {
                Ok(counts) => now = counts,
                Err(error) => failures = Some(error.to_string()),
            }
            let finished = (now[0] - before[0]) + (now[2] - before[2]);
            if finished >= expected {
                break true;
            }
            if Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let drain_secs = started.elapsed().as_secs_f64();
    let files_after = if let Some(before) = files_before {
        let target_files = before + expected as usize;
        wait_until(Duration::from_secs(5), || {
            eml_files(&opts.outbox).unwrap_or(0) >= target_files
        })
        .await;
        eml_files(&opts.outbox).map(|after| after.saturating_sub(before))
    } else {
        None
    };
    drop(sockets);

    let done = now[0] - before[0];
    let mut run = Run::new(target.kind.name());
    run.param("desconectados", opts.offline);
    run.param("salas", rooms_n);
    run.metric("jobs_expected", "trabajos esperados", "", expected as f64);
    run.metric("messages", "mensajes con menciones", "", messages as f64);
    run.metric(
        "stored_secs",
        "tiempo en guardar los mensajes",
        "s",
        stored_secs,
    );
    run.metric(
        "enqueue_per_s",
        "menciones enviadas por segundo",
        "/s",
        expected as f64 / stored_secs.max(1e-6),
    );
    run.metric("drain_secs", "tiempo hasta el último done", "s", drain_secs);
    run.metric(
        "drained_per_s",
        "trabajos terminados por segundo",
        "/s",
        done as f64 / drain_secs.max(1e-6),
    );
    run.metric("done", "trabajos done", "", done as f64);
    run.metric(
        "failed",
        "intentos fallidos",
        "",
        (now[1] - before[1]) as f64,
    );
    run.metric("dead", "trabajos dead", "", (now[2] - before[2]) as f64);
    run.metric(
        "lost",
        "trabajos perdidos",
        "",
        expected.saturating_sub(done + now[2] - before[2]) as f64,
    );
    if let Some(files) = files_after {
        run.metric(
            "eml_files",
            "ficheros .eml nuevos en el outbox",
            "",
            files as f64,
        );
    }
    if errors > 0 || !echoed {
        run.note(format!(
            "{echoes} de {messages} mensajes guardados, {errors} errores"
        ));
    }
    if !drained {
        run.note(format!(
            "no todos los trabajos terminaron en {} s",
            opts.drain_secs
        ));
    }
    if let Some(failure) = failures {
        run.note(format!("/metrics falló alguna vez: {failure}"));
    }
    Ok(run)
}

/// One author connection: sends its frames at 15 per second (under the chat's 20) and reads
/// until each has its echo or its error; returns (echoes, errors, all answered, the socket).
async fn author(ws: client::Ws, frames: Vec<String>) -> (usize, usize, bool, Option<client::Ws>) {
    let (mut sink, mut stream) = ws.split();
    let count = frames.len();
    let sender = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(67));
        pace.set_missed_tick_behavior(MissedTickBehavior::Delay);
        for frame in frames {
            pace.tick().await;
            if sink.send(Message::text(frame)).await.is_err() {
                break;
            }
        }
        sink
    });
    let (mut echoes, mut errors) = (0, 0);
    let answered = tokio::time::timeout(WAIT + Duration::from_secs(count as u64 / 10), async {
        while echoes + errors < count {
            let Some(Ok(Message::Text(text))) = stream.next().await else {
                break;
            };
            match serde_json::from_str::<Frame>(&text)
                .map(|f| f.kind.into_owned())
                .as_deref()
            {
                Ok("message") => echoes += 1,
                Ok("error") => errors += 1,
                _ => {}
            }
        }
    })
    .await
    .is_ok();
    // Kept open (and returned) until the jobs are counted: closing now would not change them,
    // but it keeps the author online like a real one.
    let ws = sender.await.ok().and_then(|sink| sink.reunite(stream).ok());
    (echoes, errors, answered && echoes + errors == count, ws)
}
