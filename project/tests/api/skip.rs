//! Skipped tests that say so. A test that cannot run here (no `redis-server`, no Chromium…)
//! calls [`skip`] and returns: that prints one Spanish line straight to the process's stderr,
//! which libtest does not capture (an `eprintln!` of a passing test would be hidden), and the
//! list of every test skipped is printed again once the test binary has finished, after
//! libtest's summary. With the requirement's `REQUIRE_*=1` (CI) a skip is a failure instead.
//!
//! The end-of-run list comes from a tiny `sh` started at the first skip: it reads the skipped
//! tests from a pipe whose other end only this process holds, and prints them when the pipe
//! closes, which happens when this process exits, however it exits. So it always comes after
//! libtest's summary; cargo, woken by the same exit, may print its next line (`Running …`,
//! `Doc-tests …`) just before it. An in-process exit hook would not race, but it needs
//! `unsafe` (`libc::atexit`), and the workspace forbids `unsafe_code`.
//!
//! One file shared by every test crate of the workspace: `project/tests/api` (through
//! `redis_server.rs`), `lessons/tests` (the same way) and `exercises/tests` (by `#[path]`).

// A helper module: each test crate uses only part of it.
#![allow(dead_code)]

use std::io::Write;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};

/// Something a group of tests needs from the machine, and how to get it.
#[derive(Debug, Clone, Copy)]
pub struct Requirement {
    /// The variable that, set to `1`, turns a skip into a failure (`REQUIRE_REDIS`).
    pub var: &'static str,
    /// What is missing and how to install it, in Spanish, for the skip line.
    pub missing: &'static str,
}

/// A `redis-server` (started by the tests) or a `REDIS_URL`.
pub const REDIS: Requirement = Requirement {
    var: "REQUIRE_REDIS",
    missing: "no hay Redis (instala redis-server: sudo apt-get install redis-server, o define REDIS_URL)",
};

/// A `redis-server` binary: for a test that starts (and disturbs) a private server, where a
/// `REDIS_URL` cannot stand in.
pub const REDIS_SERVER: Requirement = Requirement {
    var: "REQUIRE_REDIS",
    missing: "redis-server no está instalado (sudo apt-get install redis-server)",
};

/// Chromium and chromedriver on the `PATH`.
pub const BROWSER: Requirement = Requirement {
    var: "REQUIRE_BROWSER",
    missing: "no están chromium y chromedriver en el PATH (sudo apt-get install chromium chromium-driver)",
};

/// Debian's `nginx` on the `PATH`.
pub const NGINX: Requirement = Requirement {
    var: "REQUIRE_NGINX",
    missing: "nginx no está instalado (sudo apt-get install nginx)",
};

/// Python's `aiosmtpd` (`python3 -m aiosmtpd`), a real SMTP server.
pub const SMTP: Requirement = Requirement {
    var: "REQUIRE_SMTP",
    missing: "aiosmtpd no está instalado para python3 (python3 -m pip install aiosmtpd, o en Debian sudo apt-get install python3-aiosmtpd)",
};

/// The `chat` binary built next to the test binaries (`target/debug/chat`).
pub const CHAT_BINARY: Requirement = Requirement {
    var: "REQUIRE_CHAT_BINARY",
    missing: "no existe target/debug/chat (ejecuta antes cargo build -p chat)",
};

/// Skips the calling test: says so on the real stderr and adds it to the end-of-run list. The
/// caller returns right after. Under `{requirement.var}=1` it panics instead, failing the test.
pub fn skip(requirement: Requirement) {
    let test = current_test();
    if std::env::var(requirement.var).as_deref() == Ok("1") {
        panic!(
            "{test}: {} y {}=1 exige esta prueba",
            requirement.missing, requirement.var
        );
    }
    let line = format!("OMITIDA {test}: {}\n", requirement.missing);
    // `write_all` on `stderr()` goes to file descriptor 2 directly: libtest captures only the
    // `print!` family. Nothing useful to do if stderr is gone.
    let _ = std::io::stderr().write_all(line.as_bytes());
    remember(&format!("  {test}: {}\n", requirement.missing));
}

/// The name libtest gives the test's thread (`redis::joins_a_room`), which is the test's name.
fn current_test() -> String {
    std::thread::current()
        .name()
        .unwrap_or("(prueba sin nombre)")
        .to_owned()
}

/// What the end-of-run printer runs: it keeps every line it reads and prints them all once its
/// input closes. Shell builtins only (no `wc`, no `cat`), so that at the end nothing has to
/// start: the list is written a moment after the test binary exits.
const PRINTER: &str = r#"n=0
list=
while IFS= read -r line; do
  n=$((n + 1))
  list="$list
$line"
done
[ "$n" -gt 0 ] || exit 0
what="pruebas OMITIDAS (no comprobaron nada"
[ "$n" -eq 1 ] && what="prueba OMITIDA (no comprobó nada"
printf '\n%s: %s %s; REQUIRE_*=1 las convierte en fallos):%s\n\n' "$1" "$n" "$what" "$list" >&2"#;

/// Hands a skip line to the end-of-run printer, started on the first skip.
fn remember(line: &str) {
    static PRINTER_INPUT: OnceLock<Mutex<Option<ChildStdin>>> = OnceLock::new();
    let input = PRINTER_INPUT.get_or_init(|| Mutex::new(start_printer()));
    let mut input = input.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(pipe) = input.as_mut() {
        let _ = pipe.write_all(line.as_bytes());
    }
}

/// Starts the printer. Its stdin is a pipe that only this process can write to (Rust opens
/// pipes close-on-exec, so no other child inherits it), and it is never closed on purpose:
/// it closes when the process exits. `None` without `sh`: the skip lines were still printed.
fn start_printer() -> Option<ChildStdin> {
    let binary = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.file_name()?.to_string_lossy().into_owned()))
        .unwrap_or_default();
    // The test binary is `name-<hash>`: the hash says nothing to a reader.
    let binary = match binary.rsplit_once('-') {
        Some((name, _)) => name.to_owned(),
        None => binary,
    };
    let mut printer = Command::new("sh")
        .args(["-c", PRINTER, "sh", &binary])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    // The `Child` is dropped without waiting: the printer outlives this process by a moment,
    // and then `init` reaps it.
    printer.stdin.take()
}
