//! `--watch`: like rustlings' watch mode. Saves in `exercises/src/` re-grade the exercise saved.
//!
//! The checks are compiled into this binary, so the student's new code needs a new build: each
//! save runs `cargo run -q -p exercises --bin grade -- --ejercicio N --siguiente` as a child
//! process. A file that does not compile makes cargo print the compiler's error and exit with
//! 101; the watcher says so and keeps watching.

use std::io::{self, IsTerminal, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::mpsc;
use std::time::Duration;

use notify::{Event, EventKind, RecursiveMode, Watcher};

/// Editors write a file in several steps (temporary file, rename, metadata): one re-grade per save.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// cargo's exit code when the build fails.
const BUILD_FAILED: i32 = 101;

/// The exercise number of a student file: `ej03_dashboard_live.rs` → 3.
pub fn exercise_of(path: &Path) -> Option<u8> {
    let name = path.file_name()?.to_str()?;
    let rest = name.strip_prefix("ej")?;
    let digits = rest.get(..2)?;
    if !rest[2..].starts_with('_') || !name.ends_with(".rs") {
        return None;
    }
    digits.parse().ok().filter(|n| (1..=5).contains(n))
}

/// The exercises an event touches (saves only: creations and modifications).
fn exercises_in(event: &notify::Result<Event>) -> Vec<u8> {
    match event {
        Ok(event) if matches!(event.kind, EventKind::Create(_) | EventKind::Modify(_)) => event
            .paths
            .iter()
            .filter_map(|path| exercise_of(path))
            .collect(),
        _ => Vec::new(),
    }
}

/// Calls `on_save` with the exercise of each save in `dir` (the last one, when several files
/// are saved together) until it breaks or the watcher stops.
pub fn watch_dir(dir: &Path, mut on_save: impl FnMut(u8) -> ControlFlow<()>) -> notify::Result<()> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event| {
        let _ = tx.send(event);
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    while let Ok(event) = rx.recv() {
        let mut saved = exercises_in(&event);
        while let Ok(event) = rx.recv_timeout(DEBOUNCE) {
            saved.extend(exercises_in(&event));
        }
        if let Some(&exercise) = saved.last() {
            if on_save(exercise).is_break() {
                break;
            }
        }
    }
    Ok(())
}

/// What happened to one re-grade.
#[derive(Debug, PartialEq, Eq)]
pub enum Regrade {
    /// The grader ran; its exit code.
    Graded(i32),
    /// cargo could not build the student's code: its error is above.
    DoesNotCompile,
    /// cargo itself could not be started.
    NotStarted(String),
}

pub fn classify(status: io::Result<ExitStatus>) -> Regrade {
    match status {
        Err(error) => Regrade::NotStarted(error.to_string()),
        Ok(status) => match status.code() {
            Some(BUILD_FAILED) => Regrade::DoesNotCompile,
            Some(code) => Regrade::Graded(code),
            None => Regrade::NotStarted("el proceso terminó por una señal".into()),
        },
    }
}

/// The workspace root (where `cargo run -p exercises` works) and the students' folder.
fn paths() -> (PathBuf, PathBuf) {
    let package = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = package.parent().unwrap_or(package).to_path_buf();
    (root, package.join("src"))
}

/// Runs the grader as a child process on the exercise (or on the first unfinished one).
fn regrade(root: &Path, exercise: Option<u8>) -> Regrade {
    if io::stdout().is_terminal() {
        // Clear the screen, as rustlings does: only the current state matters.
        print!("\x1b[2J\x1b[H");
        let _ = io::stdout().flush();
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args(["run", "-q", "-p", "exercises", "--bin", "grade", "--"])
        .arg("--siguiente");
    if let Some(exercise) = exercise {
        command.args(["--ejercicio", &exercise.to_string()]);
    }
    classify(command.status())
}

fn say(outcome: &Regrade) {
    match outcome {
        Regrade::Graded(_) => {}
        Regrade::DoesNotCompile => println!(
            "\n✘ Tu código no compila: lee el primer error de arriba (fichero y línea) y guarda \
             de nuevo. Sigo vigilando."
        ),
        Regrade::NotStarted(error) => println!("\n✘ No pude ejecutar cargo: {error}"),
    }
    println!(
        "\nVigilando exercises/src/: guarda un ejercicio para volver a corregirlo. Ctrl+C para salir."
    );
}

/// `grade --watch`: the exit code only when the watcher cannot start.
pub fn run(exercise: Option<u8>) -> i32 {
    let (root, src) = paths();
    say(&regrade(&root, exercise));
    let watched = watch_dir(&src, |saved| {
        say(&regrade(&root, Some(saved)));
        ControlFlow::Continue(())
    });
    match watched {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: no puedo vigilar {}: {error}", src.display());
            crate::cli::exit::USO
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn only_student_files_count() {
        let cases = [
            ("exercises/src/ej01_websocket_chat.rs", Some(1)),
            ("/tmp/x/ej05_game_engine.rs", Some(5)),
            ("ej03_dashboard_live.rs", Some(3)),
            ("ej06_proyecto.rs", None),
            ("ej00_nada.rs", None),
            ("ej01_websocket_chat.rs.swp", None),
            (".ej01_websocket_chat.rs.swp", None),
            ("ej01_websocket_chat.rs~", None),
            ("ej1_chat.rs", None),
            ("lib.rs", None),
            ("4913", None),
        ];
        for (path, expected) in cases {
            assert_eq!(exercise_of(Path::new(path)), expected, "{path}");
        }
    }

    #[test]
    fn a_build_failure_is_told_apart_from_a_grade() {
        let status = |code: i32| {
            Command::new("sh")
                .args(["-c", &format!("exit {code}")])
                .status()
        };
        assert_eq!(classify(status(101)), Regrade::DoesNotCompile);
        assert_eq!(classify(status(0)), Regrade::Graded(0));
        assert_eq!(classify(status(1)), Regrade::Graded(1));
        let missing = Command::new("/no/existe/cargo").status();
        assert!(matches!(classify(missing), Regrade::NotStarted(_)));
    }

    #[test]
    fn saving_a_student_file_reports_its_exercise() {
        let dir = std::env::temp_dir().join(format!("grade-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (tx, rx) = mpsc::channel();
        let watched = dir.clone();
        std::thread::spawn(move || {
            let _ = watch_dir(&watched, |exercise| {
                let _ = tx.send(exercise);
                ControlFlow::Continue(())
            });
        });
        // The watcher starts asynchronously: save until it reports (bounded), as an editor would.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = None;
        while seen.is_none() && Instant::now() < deadline {
            std::fs::write(dir.join("notas.txt"), "no es un ejercicio").unwrap();
            std::fs::write(dir.join("ej03_dashboard_live.rs"), "// guardado").unwrap();
            seen = rx.recv_timeout(Duration::from_millis(500)).ok();
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(seen, Some(3));
    }
}
