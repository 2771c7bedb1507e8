//! The registry of checks: every automatic check of exercises 1–6, each a value with its
//! exercise, rubric block and criterion, points, Spanish title and an async body.
//!
//! Two front-ends read this registry: the `checks` test target (`cargo test -p exercises`, one
//! named test per check) and the `grade` binary (points, levels, JSON, watch mode). The body of a
//! check only talks to the code under test through its public API (`crate::ej01_…`), which is the
//! student's file or, with `--features reference`, the reference solution.

pub mod registry;
pub mod runner;
pub mod score;
pub mod support;

pub mod ej01;
pub mod ej02;
pub mod ej03;
pub mod ej04;
pub mod ej05;
/// Exercise 6, the final project, graded over the network (`grade --project URL`): not in [`all`].
pub mod ej06;

pub use registry::{Block, Check, CheckFuture, Env, Failure};
pub use runner::{Outcome, run};

/// Every check, in the order a student meets them: by exercise, then as each exercise lists them.
pub fn all() -> Vec<Check> {
    let mut checks = Vec::new();
    checks.extend(ej01::checks());
    checks.extend(ej02::checks());
    checks.extend(ej03::checks());
    checks.extend(ej04::checks());
    checks.extend(ej05::checks());
    checks
}
