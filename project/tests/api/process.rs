//! The `chat` binary itself: start-up output, no token in the logs, and SIGTERM.

use std::time::Duration;

use serde_json::json;
use tokio::process::Command;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{ChatBinary, WsClient};

/// The admin password that the binary printed at start-up.
fn admin_password(output: &str) -> String {
    let start = output
        .find("contraseña «")
        .expect("no admin password printed")
        + "contraseña «".len();
    let end = start + output[start..].find('»').unwrap();
    output[start..end].to_owned()
}

#[tokio::test]
async fn the_binary_prints_the_admin_password_keeps_tokens_out_of_logs_and_closes_1001_on_sigterm()
{
    // Trace logs: the most talkative level is the best place for a token to leak.
    let mut command = ChatBinary::command();
    command
        .env("RUST_LOG", "trace")
        .env("JWT_SECRET", "secreto-del-proceso");
    let mut process = ChatBinary::start(command).await;
    let http = reqwest::Client::new();

    let password = admin_password(&process.output());
    let login = http
        .post(format!("{}/auth/login", process.base))
        .json(&json!({ "username": "admin", "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let token = login.json::<serde_json::Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    let ws_url = format!(
        "{}/ws?token={token}",
        process.base.replacen("http", "ws", 1)
    );
    let mut client = WsClient::connect(ws_url.into_client_request().unwrap())
        .await
        .unwrap();
    client.join("general").await;
    client.say("general", "hola antes de apagar").await;

    let pid = process.child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());

    let close = client
        .closed()
        .await
        .expect("the server sent no close frame");
    assert_eq!(u16::from(close.code), 1001);
    let status = tokio::time::timeout(Duration::from_secs(30), process.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(
        status.success(),
        "the process should exit cleanly on SIGTERM, got {status}"
    );

    let output = process.output();
    assert!(
        output.contains("/ws"),
        "the trace logs should mention the request to /ws:\n{output}"
    );
    assert!(
        !output.contains(&token),
        "a token reached the logs:\n{output}"
    );
    assert!(
        !output.contains("token="),
        "the query string reached the logs:\n{output}"
    );
}

/// What a run of the binary that should stop by itself left behind.
struct Exited {
    status: std::process::ExitStatus,
    stdout: String,
    stderr: String,
}

impl Exited {
    /// Runs `command` to its end (at most a minute: one that keeps serving is a failure).
    async fn run(mut command: Command) -> Self {
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("the binary kept running: it should have refused to start")
            .unwrap();
        Self {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// The one line an expected start-up failure prints: Spanish, its own, no chain, no
    /// backtrace, and no admin password (nothing was created).
    fn refusal(&self) -> &str {
        let all = format!("{}{}", self.stdout, self.stderr);
        assert!(
            !self.status.success(),
            "the binary should fail, it exited with {}:\n{all}",
            self.status
        );
        for noise in [
            "contraseña «",
            "Caused by",
            "Error:",
            "panicked",
            "backtrace",
        ] {
            assert!(!all.contains(noise), "{noise:?} in the output:\n{all}");
        }
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 1, "one line expected on stderr:\n{all}");
        let line = lines[0];
        assert!(line.starts_with("error: "), "{line}");
        line
    }
}

/// A port nobody listens on: bound by the kernel for a moment and released.
fn refused_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_port_in_use_is_refused_naming_chat_addr_before_any_admin_password_exists() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let mut command = ChatBinary::command();
    command.env("CHAT_ADDR", addr.to_string());

    let exited = Exited::run(command).await;

    let line = exited.refusal();
    assert_eq!(exited.status.code(), Some(1), "{line}");
    assert!(line.contains("CHAT_ADDR"), "{line}");
    assert!(line.contains(&addr.to_string()), "{line}");
    assert!(line.contains("ya está en uso"), "{line}");
    drop(taken);
}

#[tokio::test]
async fn a_redis_that_refuses_the_connection_is_named_with_redis_url_and_its_url() {
    let url = format!("redis://127.0.0.1:{}", refused_port());
    let with_password = url.replace("redis://", "redis://:secreto-de-redis@");
    let mut command = ChatBinary::command();
    command.env("REDIS_URL", &with_password);

    let exited = Exited::run(command).await;

    let line = exited.refusal();
    assert_eq!(exited.status.code(), Some(1), "{line}");
    assert!(line.contains("REDIS_URL"), "{line}");
    assert!(line.contains("Redis"), "{line}");
    assert!(line.contains("rechazó la conexión"), "{line}");
    let shown = url.replace("redis://", "redis://:***@");
    assert!(line.contains(&shown), "the URL should be named: {line}");
    assert!(
        !line.contains("secreto-de-redis"),
        "a password leaked: {line}"
    );
}

#[tokio::test]
async fn settings_that_mean_nothing_are_refused_at_start_up_naming_the_variable() {
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("CHAT_ALLOWED_ORIGINS", "not an origin")],
            "CHAT_ALLOWED_ORIGINS",
        ),
        (
            &[("CHAT_ALLOWED_ORIGINS", "http://localhost/chat")],
            "CHAT_ALLOWED_ORIGINS",
        ),
        (&[("CHAT_ALLOWED_ORIGINS", " , ")], "CHAT_ALLOWED_ORIGINS"),
        (&[("CHAT_JOB_MAX_ATTEMPTS", "0")], "CHAT_JOB_MAX_ATTEMPTS"),
        (&[("CHAT_ADDR", "localhost")], "CHAT_ADDR"),
        (&[("REDIS_URL", "")], "REDIS_URL"),
        (&[("REDIS_URL", "http://127.0.0.1:6379")], "REDIS_URL"),
        (&[("CHAT_REDIS_PREFIX", "")], "CHAT_REDIS_PREFIX"),
        (
            &[("CHAT_BOOTSTRAP_CHECK_MS", "0")],
            "CHAT_BOOTSTRAP_CHECK_MS",
        ),
        (&[("JWT_SECRET", "")], "JWT_SECRET"),
        (&[("CHAT_TOKEN_TTL_SECS", "0")], "CHAT_TOKEN_TTL_SECS"),
        (&[("CHAT_TOKEN_TTL_SECS", "-5")], "CHAT_TOKEN_TTL_SECS"),
        (
            &[("CHAT_TOKEN_TTL_SECS", "99999999999")],
            "CHAT_TOKEN_TTL_SECS",
        ),
        (
            &[("CHAT_ADMIN_USERNAME", "Admin Jefe")],
            "CHAT_ADMIN_USERNAME",
        ),
        (&[("CHAT_ADMIN_PASSWORD", "corto7")], "CHAT_ADMIN_PASSWORD"),
        (&[("CHAT_ADMIN_EMAIL", "admin")], "CHAT_ADMIN_EMAIL"),
        (
            &[("CHAT_PING_INTERVAL_SECS", "0")],
            "CHAT_PING_INTERVAL_SECS",
        ),
        (&[("CHAT_IDLE_TIMEOUT_SECS", "0")], "CHAT_IDLE_TIMEOUT_SECS"),
        (
            &[
                ("CHAT_PING_INTERVAL_SECS", "30"),
                ("CHAT_IDLE_TIMEOUT_SECS", "20"),
            ],
            "CHAT_IDLE_TIMEOUT_SECS",
        ),
        (
            &[("CHAT_MAX_CONNECTIONS_PER_USER", "0")],
            "CHAT_MAX_CONNECTIONS_PER_USER",
        ),
        (
            &[("CHAT_HEADER_TIMEOUT_SECS", "0")],
            "CHAT_HEADER_TIMEOUT_SECS",
        ),
        (
            &[("CHAT_CONNECTION_LEASE_SECS", "0")],
            "CHAT_CONNECTION_LEASE_SECS",
        ),
        (
            &[("CHAT_SSE_KEEPALIVE_SECS", "0")],
            "CHAT_SSE_KEEPALIVE_SECS",
        ),
        (&[("CHAT_HISTORY_LIMIT", "0")], "CHAT_HISTORY_LIMIT"),
        (&[("SMTP_URL", "smtps://mail.example.com:465")], "SMTP_URL"),
        (&[("SMTP_URL", "smtp://:25")], "SMTP_URL"),
        (&[("SMTP_URL", "")], "SMTP_URL"),
        (&[("CHAT_OUTBOX", "")], "CHAT_OUTBOX"),
        (&[("CHAT_MAIL_FROM", "nadie")], "CHAT_MAIL_FROM"),
        (&[("CHAT_JOB_BACKOFF_MS", "0")], "CHAT_JOB_BACKOFF_MS"),
        (&[("CHAT_JOB_TIMEOUT_SECS", "0")], "CHAT_JOB_TIMEOUT_SECS"),
        (&[("CHAT_JOB_CONCURRENCY", "0")], "CHAT_JOB_CONCURRENCY"),
        (
            &[("CHAT_JOB_SWEEP_INTERVAL_SECS", "0")],
            "CHAT_JOB_SWEEP_INTERVAL_SECS",
        ),
        (
            &[("CHAT_CACHE_ROOMS_TTL_MS", "0")],
            "CHAT_CACHE_ROOMS_TTL_MS",
        ),
        (
            &[("CHAT_CACHE_STATS_TTL_MS", "60000")],
            "CHAT_CACHE_STATS_TTL_MS",
        ),
    ];
    for (env, setting) in cases {
        let mut command = ChatBinary::command();
        command.env_remove("SMTP_URL").env_remove("CHAT_OUTBOX");
        command.envs(env.iter().copied());

        let exited = Exited::run(command).await;

        let line = exited.refusal();
        assert_eq!(exited.status.code(), Some(2), "{env:?}: {line}");
        assert!(
            line.starts_with(&format!("error: {setting} (--")),
            "{env:?} should be refused naming {setting}: {line}"
        );
        assert!(!line.contains("corto7"), "a password leaked: {line}");
    }
}

#[tokio::test]
async fn help_is_in_spanish() {
    let mut command = ChatBinary::command();
    command.arg("--help");

    let exited = Exited::run(command).await;

    assert!(exited.status.success(), "{}", exited.stderr);
    let help = exited.stdout;
    for spanish in [
        "Uso: chat [OPCIONES]",
        "Opciones:",
        "Dirección y puerto donde escucha el chat",
        "Muestra esta ayuda",
        "Muestra la versión",
        "Vida en caché de una respuesta de `GET /rooms`",
        "Intentos de un trabajo antes de quedar",
    ] {
        assert!(
            help.contains(spanish),
            "{spanish:?} missing from --help:\n{help}"
        );
    }
    for english in [
        "Usage:",
        "Options:",
        "Print help",
        "Print version",
        "Address to listen",
    ] {
        assert!(!help.contains(english), "{english:?} in --help:\n{help}");
    }
}
