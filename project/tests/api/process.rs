//! The `chat` binary itself: start-up output, no token in the logs, and SIGTERM.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::WsClient;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A `chat` process and everything it has printed so far.
struct Process {
    child: Child,
    output: Arc<Mutex<String>>,
    base: String,
}

impl Process {
    /// Starts the binary on a free port with trace logs (the most talkative level).
    async fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat"))
            .env("CHAT_ADDR", "127.0.0.1:0")
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1")
            .env("JWT_SECRET", "secreto-del-proceso")
            .env_remove("REDIS_URL")
            .env_remove("CHAT_ADMIN_PASSWORD")
            .env_remove("CHAT_ALLOWED_ORIGINS")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if let Some(base) = listening_address(&output.lock().unwrap()) {
                    return base;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the binary did not say where it listens");
        Self {
            child,
            output,
            base,
        }
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// The admin password printed at start-up.
    fn admin_password(&self) -> String {
        let output = self.output();
        let start = output
            .find("contraseña «")
            .expect("no admin password printed")
            + "contraseña «".len();
        let end = start + output[start..].find('»').unwrap();
        output[start..end].to_owned()
    }
}

/// `http://127.0.0.1:PORT` from the "escuchando en" line.
fn listening_address(output: &str) -> Option<String> {
    let line = output
        .lines()
        .find(|line| line.contains("escuchando en http://"))?;
    let start = line.find("http://")?;
    let rest = &line[start..];
    let end = rest.find(' ').unwrap_or(rest.len());
    Some(rest[..end].to_owned())
}

#[tokio::test]
async fn the_binary_prints_the_admin_password_keeps_tokens_out_of_logs_and_closes_1001_on_sigterm()
{
    let mut process = Process::start().await;
    let http = reqwest::Client::new();

    let password = process.admin_password();
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
