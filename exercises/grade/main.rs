//! (en preparación) The grader: runs the checks and prints what passed.

use exercises::checks::{self, Env};

fn main() {
    let env = Env::default();
    let mut failed = 0;
    for check in checks::all() {
        let outcome = checks::run(&check, &env);
        match outcome.result {
            Ok(()) => println!("ok    {}", check.name()),
            Err(failure) => {
                failed += 1;
                println!("FALLA {}\n{failure}", check.name());
            }
        }
    }
    std::process::exit(i32::from(failed > 0));
}
