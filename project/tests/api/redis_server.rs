//! A throwaway `redis-server` for the tests, so that Redis tests need no set-up.
//!
//! [`redis_url`] starts one server for the whole test process on the first call (tests share it
//! and stay apart by using a [`unique_prefix`] each). [`private_redis`] starts a private one,
//! for a test that must disturb its server.
//!
//! Each server runs under a tiny `sh` wrapper that waits on its standard input, which this
//! process holds through a pipe. When the pipe closes (the `RedisServer` is dropped, or this
//! process exits in any way, even killed) the wrapper's `read` returns and it stops the server
//! and removes its folder. So no `redis-server` outlives `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used)]
// A helper module: each test module uses only part of it.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How a test that cannot run says so (shared with every test crate that includes this file).
#[path = "skip.rs"]
pub mod skip;

/// The wrapper: start the server, wait for stdin to close, then stop it and clean up.
const WRAPPER: &str = r#"redis-server "$@" </dev/null >/dev/null 2>&1 &
pid=$!
read _
kill "$pid" 2>/dev/null
wait "$pid"
rm -rf "$CHAT_TEST_REDIS_DIR""#;

/// How long a fresh server may take to answer.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// The URL of a Redis for tests: the shared test server (started on the first call), else the
/// `REDIS_URL` environment variable, else `None` after saying why ([`skip::skip`]), so the
/// caller returns. With `REQUIRE_REDIS=1` (CI), having no Redis fails the test instead.
pub async fn redis_url() -> Option<String> {
    static SHARED: OnceLock<Option<RedisServer>> = OnceLock::new();
    let shared = SHARED.get_or_init(RedisServer::start).as_ref();
    shared
        .map(|server| server.url.clone())
        .or_else(|| std::env::var("REDIS_URL").ok())
        .or_else(unavailable)
}

/// A private server, for a test that must stop or disturb it (a `REDIS_URL` cannot be used for
/// that). `None` after saying why when `redis-server` is not installed.
pub fn private_redis() -> Option<RedisServer> {
    RedisServer::start().or_else(|| {
        skip::skip(skip::REDIS_SERVER);
        None
    })
}

/// Says why a Redis test is skipped, or fails it under `REQUIRE_REDIS=1`.
fn unavailable() -> Option<String> {
    skip::skip(skip::REDIS);
    None
}

/// A key prefix no other test uses, so tests can share one server.
pub fn unique_prefix() -> String {
    format!("t{}", uuid::Uuid::new_v4().simple())
}

/// A `redis-server` child process; dropping it stops the server.
pub struct RedisServer {
    wrapper: Child,
    port: u16,
    /// The `redis-server` process itself (not the wrapper), for [`Self::pause`].
    pid: u32,
    pub url: String,
}

impl RedisServer {
    /// Starts a private server on a free port, without persistence. `None` when `redis-server`
    /// is not installed or does not come up (a port taken meanwhile: it tries three ports).
    pub fn start() -> Option<Self> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !installed {
            return None;
        }
        (0..3).find_map(|_| Self::start_on(free_port()?))
    }

    fn start_on(port: u16) -> Option<Self> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("chat-redis-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).ok()?;
        let dir = dir.canonicalize().ok()?;
        let wrapper = Command::new("sh")
            .args(["-c", WRAPPER, "sh"])
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .env("CHAT_TEST_REDIS_DIR", &dir)
            .stdin(Stdio::piped())
            .spawn()
            .ok()?;
        // From here on, dropping `server` stops whatever started.
        let mut server = Self {
            wrapper,
            port,
            pid: 0,
            url: format!("redis://127.0.0.1:{port}/"),
        };
        if !wait_until_ours(port, &dir) {
            return None;
        }
        server.pid = process_id(port)?;
        Some(server)
    }

    /// Freezes the server (`SIGSTOP`): it keeps its port and its connections but answers
    /// nothing, as a Redis stuck on a slow disk or a full machine would. [`Self::resume`] (or
    /// dropping the server) thaws it.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Thaws a server frozen by [`Self::pause`] (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid.to_string())
            .status()
            .expect("kill could not run");
        assert!(status.success(), "kill -{signal} {} failed", self.pid);
    }

    /// Stops the server and starts an empty one on the same port, as a Redis restart without
    /// persistence would. `false` if the new one did not come up.
    pub fn restart(&mut self) -> bool {
        self.stop();
        match Self::start_on(self.port) {
            Some(mut fresh) => {
                std::mem::swap(self, &mut fresh);
                true
            }
            None => false,
        }
    }

    fn stop(&mut self) {
        // Closing the wrapper's stdin is its signal to stop the server; it is taken once, so a
        // second call (after `restart`, then on drop) does nothing.
        let Some(stdin) = self.wrapper.stdin.take() else {
            return;
        };
        // A frozen server would never act on the wrapper's SIGTERM.
        if self.pid > 0 {
            let _ = Command::new("kill")
                .arg("-CONT")
                .arg(self.pid.to_string())
                .status();
        }
        drop(stdin);
        let _ = self.wrapper.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port nobody listens on right now (the OS picks it for us).
fn free_port() -> Option<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").ok()?;
    Some(listener.local_addr().ok()?.port())
}

/// Waits until the server on `port` answers and is the one we started: its working folder is
/// `dir`. (Another process might have grabbed the port between `free_port` and the start.)
fn wait_until_ours(port: u16, dir: &Path) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    while Instant::now() < deadline {
        if let Some(server_dir) = config_dir(port) {
            return server_dir == dir;
        }
        // Its output goes to /dev/null; answering on its port is the sign: polled.
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Asks the server on `port` for its process id (`INFO server`), speaking raw RESP.
fn process_id(port: u16) -> Option<u32> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(b"INFO server\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&reply);
        if let Some(line) = text.lines().find(|line| line.starts_with("process_id:")) {
            // A line is complete once a later line exists.
            if text.contains(&format!("{line}\r\n")) {
                return line["process_id:".len()..].trim().parse().ok();
            }
        }
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        reply.extend_from_slice(&buf[..n]);
    }
}

/// Asks the server on `port` for its `dir` setting, speaking raw RESP.
fn config_dir(port: u16) -> Option<PathBuf> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
    stream.write_all(b"CONFIG GET dir\r\n").ok()?;
    let mut reply = Vec::new();
    let mut buf = [0u8; 1024];
    // The reply is `*2 $3 dir $N <path>`: five lines; read until we have them.
    while reply.iter().filter(|&&b| b == b'\n').count() < 5 {
        let n = stream.read(&mut buf).ok().filter(|&n| n > 0)?;
        reply.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8(reply).ok()?;
    reply.lines().nth(4).map(PathBuf::from)
}
