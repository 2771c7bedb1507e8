//! `idle`: C connections, authenticated and joined, then held without traffic. The server's
//! resident memory before and after says what one connection costs (with `--pid`).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;

use super::Common;
use crate::client;
use crate::procfs::{mib, rss_kib};
use crate::report::Run;
use crate::target::Target;

#[derive(Debug, Clone, clap::Args)]
pub struct Idle {
    /// Connections to hold.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// Rooms they join (spread evenly).
    #[arg(long, default_value_t = 10)]
    pub rooms: usize,
    /// Seconds to hold them before reading the memory.
    #[arg(long, default_value_t = 5)]
    pub hold_secs: u64,
}

impl Default for Idle {
    fn default() -> Self {
        Self {
            connections: 1000,
            rooms: 10,
            hold_secs: 5,
        }
    }
}

pub async fn run(
    target: &Target,
    common: &Common,
    prefix: &str,
    opts: &Idle,
) -> anyhow::Result<Run> {
    let rss = || target.pid.and_then(rss_kib);
    let rss_start = rss();
    let http = client::http()?;
    let users = common
        .users
        .unwrap_or_else(|| client::users_for(opts.connections, common.per_user));
    let tokens = client::accounts(target, &http, prefix, users).await?;
    let rooms: Vec<String> = (0..opts.rooms.max(1))
        .map(|r| format!("{prefix}-{r}"))
        .collect();
    for room in &rooms {
        client::create_room(target, &http, &tokens[0], room).await?;
    }
    let rss_accounts = rss();
    let opening = Instant::now();
    let sockets = client::open_joined(
        target,
        &tokens,
        opts.connections,
        |i| rooms[i % rooms.len()].clone(),
        "conexiones en reposo",
    )
    .await?;
    let open_secs = opening.elapsed().as_secs_f64();
    // Read every connection while holding (the server's pings need an answer); count closes.
    let (stop, stopped) = watch::channel(false);
    let readers: Vec<_> = sockets
        .into_iter()
        .map(|mut ws| {
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                loop {
                    tokio::select! {
                        _ = stopped.changed() => return (false, ws),
                        message = ws.next() => if !matches!(message, Some(Ok(_))) {
                            return (true, ws);
                        },
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(opts.hold_secs)).await;
    let rss_held = rss();
    let _ = stop.send(true);
    let mut closed = 0;
    let mut sockets = Vec::with_capacity(readers.len());
    for reader in readers {
        if let Ok((was_closed, ws)) = reader.await {
            closed += usize::from(was_closed);
            sockets.push(ws);
        }
    }
    drop(sockets);

    let mut run = Run::new(target.kind.name());
    run.param("conexiones", opts.connections);
    run.param("salas", rooms.len());
    run.param("usuarios", users);
    run.param("espera_s", opts.hold_secs);
    run.metric("open_secs", "tiempo en abrir y unir todas", "s", open_secs);
    run.metric(
        "connections_per_s",
        "conexiones abiertas y unidas por segundo",
        "/s",
        opts.connections as f64 / open_secs.max(1e-6),
    );
    if let (Some(start), Some(accounts), Some(held)) = (rss_start, rss_accounts, rss_held) {
        run.metric(
            "rss_start_mib",
            "RSS del servidor al empezar",
            "MiB",
            mib(start),
        );
        run.metric(
            "rss_accounts_mib",
            "RSS tras registros y logins",
            "MiB",
            mib(accounts),
        );
        run.metric(
            "rss_held_mib",
            "RSS con las conexiones en reposo",
            "MiB",
            mib(held),
        );
        run.metric(
            "kib_per_connection",
            "memoria por conexión",
            "KiB",
            held.saturating_sub(accounts) as f64 / opts.connections.max(1) as f64,
        );
    } else {
        run.note("sin --pid no se mide la memoria del servidor");
    }
    if closed > 0 {
        run.note(format!("el servidor cerró {closed} conexiones en reposo"));
    }
    Ok(run)
}
