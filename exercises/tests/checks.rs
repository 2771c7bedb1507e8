//! Every check of the registry as a named test: `cargo test -p exercises ej01` runs the checks
//! of exercise 1, `cargo test -p exercises -- --list` lists them all.
//!
//! `EXERCISES_EXPECT=unsolved` inverts the verdict: CI runs the checks against the untouched
//! stubs this way, so a check that passes without a solution (one that checks nothing) fails.

use exercises::checks::{self, Env};
use libtest_mimic::{Arguments, Failed, Trial};

fn main() {
    let args = Arguments::from_args();
    let expect_unsolved = std::env::var("EXERCISES_EXPECT").as_deref() == Ok("unsolved");
    let env = Env::default();
    let trials = checks::all()
        .into_iter()
        .map(|check| {
            let env = env.clone();
            Trial::test(check.name(), move || {
                let outcome = checks::run(&check, &env);
                match (outcome.result, expect_unsolved) {
                    (Ok(()), false) | (Err(_), true) => Ok(()),
                    (Err(failure), false) => Err(Failed::from(failure.to_string())),
                    (Ok(()), true) => Err(Failed::from(
                        "pasa con el stub sin resolver: esta comprobación no comprueba lo suficiente",
                    )),
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}
