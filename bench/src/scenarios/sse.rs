//! `sse`: D dashboard subscribers (`GET /dashboard/events` with the admin token) and nothing
//! else happening. Measures the server's CPU with none and with D subscribers over the same
//! stretch, the memory each subscriber costs, and how many `stats` events each one gets per
//! second (the contract: one per second).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use eventsource_stream::Eventsource;
use futures_util::{StreamExt, stream};
use tokio::sync::watch;

use super::{CpuMeter, wait_until};
use crate::client;
use crate::procfs::rss_kib;
use crate::report::Run;
use crate::target::Target;

#[derive(Debug, Clone, clap::Args)]
pub struct SseOpts {
    /// Subscribers.
    #[arg(long, default_value_t = 100)]
    pub subscribers: usize,
    /// Seconds of each CPU measurement (without and with the subscribers).
    #[arg(long, default_value_t = 10)]
    pub window_secs: u64,
}

impl Default for SseOpts {
    fn default() -> Self {
        Self {
            subscribers: 100,
            window_secs: 10,
        }
    }
}

#[derive(Default)]
struct Tally {
    first: AtomicU64,
    stats: AtomicU64,
    ended: AtomicU64,
}

pub async fn run(target: &Target, opts: &SseOpts) -> anyhow::Result<Run> {
    let http = client::http()?;
    let token = client::admin_token(target, &http).await?;
    // A client without a total timeout: the streams live as long as the measurement.
    let streaming = reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(client::WAIT)
        .pool_max_idle_per_host(0)
        .build()?;
    let window = Duration::from_secs(opts.window_secs.max(1));
    let url = if token.is_empty() {
        target.url("/dashboard/events")
    } else {
        target.url(&format!("/dashboard/events?token={token}"))
    };

    let rss_before = target.pid.and_then(rss_kib);
    let cpu = CpuMeter::start(target.pid);
    tokio::time::sleep(window).await;
    let cpu_none = cpu.percent();

    let tally = Arc::new(Tally::default());
    let (stop, stopped) = watch::channel(false);
    let bar = crate::progress::bar(opts.subscribers as u64, "suscriptores");
    let responses: Vec<reqwest::Response> = stream::iter(0..opts.subscribers)
        .map(|_| {
            let request = streaming.get(&url).send();
            async move {
                let response = tokio::time::timeout(client::WAIT, request).await??;
                anyhow::ensure!(
                    response.status().is_success(),
                    "GET /dashboard/events: HTTP {}",
                    response.status()
                );
                anyhow::Ok(response)
            }
        })
        .buffered(64)
        .inspect(|_| bar.inc(1))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    bar.finish_and_clear();
    let readers: Vec<_> = responses
        .into_iter()
        .map(|response| {
            let (tally, mut stopped) = (tally.clone(), stopped.clone());
            tokio::spawn(async move {
                let mut events = response.bytes_stream().eventsource();
                let mut first = true;
                loop {
                    let event = tokio::select! {
                        _ = stopped.changed() => return,
                        event = events.next() => event,
                    };
                    match event {
                        Some(Ok(event)) if event.event == "stats" => {
                            if first {
                                first = false;
                                tally.first.fetch_add(1, Ordering::Relaxed);
                            } else {
                                tally.stats.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Some(Ok(_)) => {}
                        _ => {
                            tally.ended.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            })
        })
        .collect();
    let d = opts.subscribers as u64;
    let all_live = wait_until(Duration::from_secs(30), || {
        tally.first.load(Ordering::Relaxed) + tally.ended.load(Ordering::Relaxed) >= d
    })
    .await;
    let rss_with = target.pid.and_then(rss_kib);
    let stats_before = tally.stats.load(Ordering::Relaxed);
    let cpu = CpuMeter::start(target.pid);
    let measuring = Instant::now();
    tokio::time::sleep(window).await;
    let cpu_with = cpu.percent();
    let stats = tally.stats.load(Ordering::Relaxed) - stats_before;
    let seconds = measuring.elapsed().as_secs_f64();
    let _ = stop.send(true);
    for reader in readers {
        let _ = reader.await;
    }

    let mut run = Run::new(target.kind.name());
    run.param("suscriptores", opts.subscribers);
    run.param("ventana_s", window.as_secs());
    run.metric(
        "stats_per_subscriber_per_s",
        "eventos stats por suscriptor y segundo",
        "/s",
        stats as f64 / d.max(1) as f64 / seconds,
    );
    if let (Some(none), Some(with)) = (cpu_none, cpu_with) {
        run.metric(
            "cpu_none_pct",
            "CPU del servidor sin suscriptores",
            "% de un núcleo",
            none,
        );
        run.metric(
            "cpu_pct",
            "CPU del servidor con los suscriptores",
            "% de un núcleo",
            with,
        );
        run.metric(
            "cpu_per_1000_pct",
            "CPU por cada 1000 suscriptores",
            "% de un núcleo",
            (with - none) / d.max(1) as f64 * 1000.0,
        );
    }
    if let (Some(before), Some(with)) = (rss_before, rss_with) {
        run.metric(
            "kib_per_subscriber",
            "memoria por suscriptor",
            "KiB",
            with.saturating_sub(before) as f64 / d.max(1) as f64,
        );
    } else {
        run.note("sin --pid no se miden la CPU ni la memoria del servidor");
    }
    let ended = tally.ended.load(Ordering::Relaxed);
    if ended > 0 || !all_live {
        run.note(format!("{ended} flujos terminaron antes de tiempo"));
    }
    Ok(run)
}
