//! `chat-bench`: runs one scenario against a chat server (any implementation of the contract)
//! and, with `--baseline`, against the bare broadcast server of [`chat_bench::baseline`] right
//! after, printing both and their ratio.
//!
//! Ejemplos (el servidor en release, en otra terminal):
//!   cargo run --release -p chat-bench -- --pid $(pgrep -x chat) --baseline fanout --rooms 1 --clients 100 --senders 100 --rate 20 --window 32
//!   cargo run --release -p chat-bench -- --pid $(pgrep -x chat) --baseline idle --connections 10000

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use chat_bench::report::Comparison;
use chat_bench::scenarios::{Common, Scenario};
use chat_bench::target::{Kind, Target};
use clap::{Parser, Subcommand};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

#[derive(Debug, Parser)]
#[command(
    name = "chat-bench",
    about = "Generador de carga para el chat (y para cualquier servidor que cumpla su contrato), con un servidor base para comparar"
)]
struct Args {
    /// URL of the chat (loopback only).
    #[arg(
        long,
        env = "CHAT_BENCH_URL",
        default_value = "http://127.0.0.1:8000",
        global = true
    )]
    url: String,
    /// PID of the chat process, to read its memory and CPU in /proc.
    #[arg(long, global = true)]
    pid: Option<u32>,
    /// Also run the scenario against the baseline (started by this tool), after the chat.
    #[arg(long, global = true)]
    baseline: bool,
    /// Run only against the baseline.
    #[arg(long, global = true, conflicts_with = "baseline")]
    only_baseline: bool,
    /// Admin username (sse, jobs).
    #[arg(
        long,
        env = "CHAT_ADMIN_USERNAME",
        default_value = "admin",
        global = true
    )]
    admin_user: String,
    /// Admin password (sse, jobs).
    #[arg(
        long,
        env = "CHAT_ADMIN_PASSWORD",
        hide_env_values = true,
        global = true
    )]
    admin_password: Option<String>,
    /// Seconds after which a run is abandoned.
    #[arg(long, default_value_t = 900, global = true)]
    timeout: u64,
    /// Write a Markdown report to this file.
    #[arg(long, global = true)]
    report: Option<PathBuf>,
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    #[command(flatten)]
    Scenario(Scenario),
    /// Serves only the baseline on --addr (what --baseline starts in a child process).
    #[command(hide = true)]
    ServeBaseline {
        #[arg(long, default_value = "127.0.0.1:0")]
        addr: std::net::SocketAddr,
    },
}

/// The line the baseline child prints with its address.
const LISTENING: &str = "base escuchando en ";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenario = match &args.command {
        Command::ServeBaseline { addr } => return serve_baseline(*addr).await,
        Command::Scenario(scenario) => scenario.clone(),
    };
    let limit = Duration::from_secs(args.timeout);
    let mut comparison = Comparison {
        scenario: scenario.name().to_owned(),
        runs: Vec::new(),
    };
    if !args.only_baseline {
        let target = Target::resolve(Kind::Chat, &args.url, args.pid)
            .await?
            .with_admin(args.admin_user.clone(), args.admin_password.clone());
        eprintln!(
            "chat-bench: {} contra el chat en {}",
            scenario.name(),
            target.base
        );
        comparison
            .runs
            .push(scenario.run(&target, &args.common, limit).await?);
    }
    if args.baseline || args.only_baseline {
        if scenario.baseline_applies() {
            let (mut child, addr) = start_baseline_process().await?;
            let target =
                Target::resolve(Kind::Baseline, &format!("http://{addr}"), child.id()).await?;
            eprintln!("chat-bench: {} contra la base en {addr}", scenario.name());
            let run = scenario.run(&target, &args.common, limit).await;
            let _ = child.kill().await;
            comparison.runs.push(run?);
        } else {
            eprintln!(
                "chat-bench: la base no tiene {}: solo se mide el chat",
                scenario.name()
            );
        }
    }
    println!("{}", comparison.human());
    if let Some(path) = &args.report {
        let command: Vec<String> = std::env::args().collect();
        let markdown = comparison.markdown(&command.join(" "), &today());
        std::fs::write(path, markdown)
            .with_context(|| format!("no se pudo escribir {}", path.display()))?;
        eprintln!("informe escrito en {}", path.display());
    }
    println!("{}", comparison.json_line());
    std::io::stdout().flush()?;
    Ok(())
}

/// Starts this same program as `serve-baseline` in a child process (so its memory and CPU are
/// its own, not mixed with the generator's), and reads the address it listens on.
async fn start_baseline_process() -> anyhow::Result<(tokio::process::Child, std::net::SocketAddr)> {
    let exe = std::env::current_exe().context("ruta de chat-bench")?;
    let mut child = tokio::process::Command::new(exe)
        .arg("serve-baseline")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("no se pudo arrancar la base")?;
    let stdout = child.stdout.take().context("salida de la base")?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .context("la base no arrancó en 10 s")??
        .unwrap_or_default();
    let Some(addr) = line.strip_prefix(LISTENING) else {
        bail!("la base respondió algo inesperado: {line}");
    };
    Ok((child, addr.parse().context("dirección de la base")?))
}

/// The child side: serve until stdin closes (the parent ended or killed us).
async fn serve_baseline(addr: std::net::SocketAddr) -> anyhow::Result<()> {
    if !addr.ip().is_loopback() {
        bail!("la base solo escucha en loopback");
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("{LISTENING}{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let parent_gone = async {
        let mut stdin = tokio::io::stdin();
        let mut buffer = [0u8; 64];
        while matches!(stdin.read(&mut buffer).await, Ok(n) if n > 0) {}
    };
    chat_bench::baseline::serve(listener, parent_gone).await?;
    Ok(())
}

/// Today's date and time in UTC, `YYYY-MM-DD HH:MM UTC` (from the system clock, no crate).
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}
