//! The scenarios. Each one prepares what it needs (accounts, rooms, connections), measures one
//! thing, and returns a [`Run`]; every loop is bounded in count and every wait in time.

pub mod fanout;
pub mod idle;
pub mod jobs;
pub mod join_storm;
pub mod sse;

use std::time::Duration;

use crate::report::Run;
use crate::target::Target;

/// Options every scenario shares.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Connections per user (the contract allows at most 100).
    #[arg(long, default_value_t = 100, global = true)]
    pub per_user: usize,
    /// Users to register (by default, as few as `--per-user` allows).
    #[arg(long, global = true)]
    pub users: Option<usize>,
    /// Prefix of usernames and rooms (by default, a new one per run).
    #[arg(long, global = true)]
    pub prefix: Option<String>,
}

impl Default for Common {
    fn default() -> Self {
        Self {
            per_user: 100,
            users: None,
            prefix: None,
        }
    }
}

/// One scenario with its sizes.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Scenario {
    /// R salas × N clientes; S emisores por sala, a ritmo fijo o en bucle cerrado.
    Fanout(fanout::Fanout),
    /// C conexiones autenticadas y unidas a salas, en reposo: memoria del servidor por conexión.
    Idle(idle::Idle),
    /// N usuarios se unen a la vez a una sala: tiempo hasta el último `joined` y tramas totales.
    JoinStorm(join_storm::JoinStorm),
    /// D suscriptores del panel (SSE): CPU y memoria del servidor por suscriptor.
    Sse(sse::SseOpts),
    /// Menciones a usuarios desconectados: ritmo de encolado y vaciado de los e-mails.
    Jobs(jobs::JobsOpts),
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Fanout(_) => "fanout",
            Scenario::Idle(_) => "idle",
            Scenario::JoinStorm(_) => "join-storm",
            Scenario::Sse(_) => "sse",
            Scenario::Jobs(_) => "jobs",
        }
    }

    /// Whether the baseline can run it (it has no accounts, so no jobs).
    pub fn baseline_applies(&self) -> bool {
        !matches!(self, Scenario::Jobs(_))
    }

    /// Runs it against `target`, giving up after `limit`.
    pub async fn run(
        &self,
        target: &Target,
        common: &Common,
        limit: Duration,
    ) -> anyhow::Result<Run> {
        let prefix = common
            .prefix
            .clone()
            .unwrap_or_else(crate::client::run_prefix);
        let work = async {
            match self {
                Scenario::Fanout(opts) => fanout::run(target, common, &prefix, opts).await,
                Scenario::Idle(opts) => idle::run(target, common, &prefix, opts).await,
                Scenario::JoinStorm(opts) => join_storm::run(target, &prefix, opts).await,
                Scenario::Sse(opts) => sse::run(target, opts).await,
                Scenario::Jobs(opts) => jobs::run(target, &prefix, opts).await,
            }
        };
        match tokio::time::timeout(limit, work).await {
            Ok(run) => run,
            Err(_) => anyhow::bail!(
                "el escenario {} no terminó en {} s (--timeout)",
                self.name(),
                limit.as_secs()
            ),
        }
    }
}

/// Waits until `done()` holds, checking every 10 ms, for at most `limit`; says whether it held.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// CPU of a process over a stretch, as a percentage of one core.
pub struct CpuMeter {
    pid: Option<u32>,
    cpu: Option<f64>,
    at: std::time::Instant,
}

impl CpuMeter {
    pub fn start(pid: Option<u32>) -> Self {
        Self {
            pid,
            cpu: pid.and_then(crate::procfs::cpu_secs),
            at: std::time::Instant::now(),
        }
    }

    pub fn percent(&self) -> Option<f64> {
        let now = crate::procfs::cpu_secs(self.pid?)?;
        let elapsed = self.at.elapsed().as_secs_f64();
        let before = self.cpu?;
        (elapsed > 0.0).then(|| (now - before) / elapsed * 100.0)
    }
}
