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
