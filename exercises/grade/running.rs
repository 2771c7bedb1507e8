//! Runs the selected checks, a few at a time, with a progress bar on a terminal.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use exercises::checks::{self, Check, Env, Outcome};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How the checks run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Checks running at the same time. The network checks of a project run one by one: a
    /// login-limit or rate-limit check would otherwise spoil the checks running beside it.
    pub parallel: usize,
    /// Draw a progress bar (on stderr) while running.
    pub progress: bool,
}

impl Plan {
    /// As many at once as the machine has cores (the `checks` test target does the same).
    pub fn exercises(progress: bool) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        Self {
            parallel: cores.clamp(2, 8),
            progress,
        }
    }

    pub fn project(progress: bool) -> Self {
        Self {
            parallel: 1,
            progress,
        }
    }
}

/// Runs every check and returns each with its outcome, in the order given.
pub fn run_all(checks: Vec<Check>, env: &Env, plan: Plan) -> Vec<(Check, Outcome)> {
    let bar = progress_bar(checks.len(), plan.progress);
    let next = AtomicUsize::new(0);
    let outcomes: Vec<Mutex<Option<Outcome>>> = checks.iter().map(|_| Mutex::new(None)).collect();
    let workers = plan.parallel.clamp(1, checks.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(check) = checks.get(index) else {
                        break;
                    };
                    bar.set_message(check.name());
                    let outcome = checks::run(check, env);
                    if let Some(slot) = outcomes.get(index) {
                        if let Ok(mut slot) = slot.lock() {
                            *slot = Some(outcome);
                        }
                    }
                    bar.inc(1);
                }
            });
        }
    });
    bar.finish_and_clear();
    checks
        .into_iter()
        .zip(outcomes)
        .map(|(check, slot)| {
            let outcome = slot.into_inner().ok().flatten().unwrap_or_else(|| Outcome {
                result: Err(checks::Failure::new(
                    "el corrector no pudo ejecutar esta comprobación",
                )),
                elapsed: Default::default(),
            });
            (check, outcome)
        })
        .collect()
}

fn progress_bar(len: usize, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len as u64), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{bar:30}] {pos}/{len} comprobaciones · {elapsed} · {wide_msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use exercises::checks::{Block, Failure};

    use super::*;

    fn check(title: &'static str, run: fn(Env) -> checks::CheckFuture) -> Check {
        Check {
            exercise: 1,
            block: Block::Nucleo,
            criterion: "Criterio",
            points: 1,
            title,
            timeout: Duration::from_secs(2),
            run,
        }
    }

    #[test]
    #[allow(clippy::todo)] // The student's unfinished code, as the runner meets it.
    fn outcomes_keep_the_order_of_the_checks_whatever_finishes_first() {
        let checks = vec![
            check("lenta", |_| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    Ok(())
                })
            }),
            check("falla", |_| Box::pin(async { Err(Failure::new("mal")) })),
            check("entra en pánico", |_| {
                Box::pin(async { todo!("la parte del estudiante") })
            }),
            check("rápida", |_| Box::pin(async { Ok(()) })),
        ];
        for plan in [Plan::exercises(false), Plan::project(false)] {
            let results = run_all(checks.clone(), &Env::default(), plan);
            let titles: Vec<&str> = results.iter().map(|(check, _)| check.title).collect();
            assert_eq!(titles, ["lenta", "falla", "entra en pánico", "rápida"]);
            let passed: Vec<bool> = results.iter().map(|(_, o)| o.passed()).collect();
            assert_eq!(passed, [true, false, false, true]);
            let panic = results[2].1.result.as_ref().unwrap_err();
            assert!(panic.what.contains("todo!()"), "{}", panic.what);
        }
    }

    #[test]
    fn no_checks_is_no_work() {
        assert!(run_all(Vec::new(), &Env::default(), Plan::exercises(false)).is_empty());
    }
}
