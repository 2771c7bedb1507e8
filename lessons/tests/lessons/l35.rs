//! Práctica 35: every step of `examples/35_websockets` over real sockets (axum on port 0,
//! tokio-tungstenite and reqwest as clients).

#[allow(dead_code)]
#[path = "../../examples/35_websockets/main.rs"]
mod lesson;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::support::{self, Lesson};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Longest a test waits for any single event.
const WAIT: Duration = Duration::from_secs(5);

async fn lesson() -> Lesson {
    support::serve(lesson::app()).await
}

async fn connect(lesson: &Lesson, path: &str) -> Ws {
    let (ws, response) = tokio_tungstenite::connect_async(lesson.ws_url(path))
        .await
        .unwrap_or_else(|error| panic!("upgrade of {path} failed: {error}"));
    assert_eq!(response.status(), 101);
    ws
}

/// Tries an upgrade with an optional `Origin`; returns the HTTP status of a refusal.
async fn refused_status(lesson: &Lesson, path: &str, origin: Option<&str>) -> u16 {
    let mut request = lesson.ws_url(path).into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => response.status().as_u16(),
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("{path} was upgraded but should have been refused"),
    }
}

/// The next data or close frame (pings and pongs are skipped: the library answers them).
async fn next(ws: &mut Ws) -> Message {
    loop {
        let message = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("no frame within 5 s")
            .expect("the connection ended")
            .expect("read error");
        if !matches!(message, Message::Ping(_) | Message::Pong(_)) {
            return message;
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    match next(ws).await {
        Message::Text(text) => serde_json::from_str(&text).unwrap(),
        other => panic!("expected a JSON text frame, got {other:?}"),
    }
}

async fn next_close_code(ws: &mut Ws) -> u16 {
    match next(ws).await {
        Message::Close(Some(frame)) => u16::from(frame.code),
        other => panic!("expected a close frame, got {other:?}"),
    }
}

async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

async fn rooms(lesson: &Lesson) -> Value {
    reqwest::get(lesson.url("/rooms"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn l35_the_page_answers_with_every_step() {
    let lesson = lesson().await;
    let response = reqwest::get(lesson.url("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    for step in ["Paso 1", "Paso 2", "Paso 3", "Paso 4", "Paso 5"] {
        assert!(page.contains(step), "the page lacks {step}");
    }
    for route in ["/ws/hello", "/ws/echo", "/rooms", "/ws/chat", "/ws/robust"] {
        assert!(page.contains(route), "the page does not mention {route}");
    }
    assert!(page.contains("project/src/ws/hub.rs"));
    // The sample commands carry the address the page was opened with.
    assert!(page.contains(&format!("'http://{}/ws/hello?nick=ana'", lesson.addr)));
    assert!(!page.contains("{{"), "a placeholder was left unfilled");
}

#[tokio::test]
async fn l35_every_project_file_the_lesson_names_exists() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let sources = [
        include_str!("../../examples/35_websockets/main.rs"),
        include_str!("../../examples/35_websockets/page.html"),
        include_str!("../../examples/35_websockets/upgrade.rs"),
    ];
    let mut named = 0;
    for source in sources {
        for word in source.split(|c: char| c.is_whitespace() || "`<>(),;:".contains(c)) {
            if word.starts_with("project/src/") && word.ends_with(".rs") {
                let path = std::path::Path::new(root).join(word);
                assert!(
                    path.exists(),
                    "the lesson names {word}, which does not exist"
                );
                named += 1;
            }
        }
    }
    assert!(
        named >= 5,
        "expected the lesson to point at the project's files"
    );
}

#[tokio::test]
async fn l35_an_upgrade_without_nick_is_refused_with_401_before_upgrading() {
    let lesson = lesson().await;
    for path in ["/ws/hello", "/ws/hello?nick=", "/ws/chat?room=general"] {
        assert_eq!(refused_status(&lesson, path, None).await, 401, "{path}");
    }
    let invalid = "/ws/hello?nick=ana%20y%20bea";
    assert_eq!(refused_status(&lesson, invalid, None).await, 401);
}

#[tokio::test]
async fn l35_an_upgrade_from_a_foreign_origin_is_refused_with_403_before_upgrading() {
    let lesson = lesson().await;
    for origin in [
        "http://evil.example",
        "http://localhost.evil.example",
        "null",
    ] {
        for path in ["/ws/hello?nick=ana", "/ws/echo", "/ws/robust?nick=ana"] {
            let status = refused_status(&lesson, path, Some(origin)).await;
            assert_eq!(status, 403, "{origin} on {path}");
        }
    }
    // The Origin is checked before the nick: a foreign page gets 403 even without a nick.
    let status = refused_status(&lesson, "/ws/hello", Some("http://evil.example")).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn l35_a_trusted_origin_is_greeted_and_closed_with_1000() {
    let lesson = lesson().await;
    let own = format!("http://{}", lesson.addr);
    for origin in [own.as_str(), "http://localhost:3035"] {
        let mut request = lesson
            .ws_url("/ws/hello?nick=ana")
            .into_client_request()
            .unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
        match next(&mut ws).await {
            Message::Text(text) => assert!(text.contains("Hola, ana"), "{text}"),
            other => panic!("expected the greeting, got {other:?}"),
        }
        assert_eq!(next_close_code(&mut ws).await, 1000);
    }
}

#[tokio::test]
async fn l35_a_room_that_is_not_valid_is_refused_with_400() {
    let lesson = lesson().await;
    let status = refused_status(&lesson, "/ws/chat?nick=ana&room=no%20vale", None).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn l35_echo_returns_text_and_binary() {
    let lesson = lesson().await;
    let mut ws = connect(&lesson, "/ws/echo").await;
    for text in ["hola", "¿qué tal?"] {
        send_text(&mut ws, text).await;
        match next(&mut ws).await {
            Message::Text(answer) => assert_eq!(answer.as_str(), format!("eco: {text}")),
            other => panic!("expected the echo, got {other:?}"),
        }
    }
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    match next(&mut ws).await {
        Message::Binary(bytes) => assert_eq!(&bytes[..], &[1, 2, 3]),
        other => panic!("expected the binary echo, got {other:?}"),
    }
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn l35_join_and_leave_are_announced_to_the_room() {
    let lesson = lesson().await;
    let mut ana = connect(&lesson, "/ws/chat?nick=ana&room=general").await;
    assert_eq!(
        next_json(&mut ana).await,
        json!({"type": "joined", "room": "general", "nick": "ana"})
    );
    let mut bea = connect(&lesson, "/ws/chat?nick=bea&room=general").await;
    assert_eq!(
        next_json(&mut ana).await,
        json!({"type": "joined", "room": "general", "nick": "bea"})
    );
    assert_eq!(next_json(&mut bea).await["nick"], "bea");
    assert_eq!(rooms(&lesson).await, json!({"general": ["ana", "bea"]}));

    bea.close(None).await.unwrap();
    assert_eq!(
        next_json(&mut ana).await,
        json!({"type": "left", "room": "general", "nick": "bea"})
    );
    assert_eq!(rooms(&lesson).await, json!({"general": ["ana"]}));
}

#[tokio::test]
async fn l35_a_message_reaches_its_room_and_stays_in_it() {
    let lesson = lesson().await;
    let mut ana = connect(&lesson, "/ws/chat?nick=ana&room=general").await;
    next_json(&mut ana).await;
    let mut bea = connect(&lesson, "/ws/chat?nick=bea&room=general").await;
    next_json(&mut bea).await;
    next_json(&mut ana).await;
    let mut carlos = connect(&lesson, "/ws/chat?nick=carlos&room=rust").await;
    next_json(&mut carlos).await;

    send_text(&mut ana, "hola, general").await;
    let expected =
        json!({"type": "message", "room": "general", "nick": "ana", "text": "hola, general"});
    assert_eq!(next_json(&mut ana).await, expected);
    assert_eq!(next_json(&mut bea).await, expected);

    // If ana's message had leaked into "rust", carlos would see it before his own.
    send_text(&mut carlos, "hola, rust").await;
    assert_eq!(
        next_json(&mut carlos).await,
        json!({"type": "message", "room": "rust", "nick": "carlos", "text": "hola, rust"})
    );
    // And "rust" does not leak into "general": bea's next frame is ana's next message.
    send_text(&mut ana, "otra vez").await;
    assert_eq!(next_json(&mut bea).await["text"], "otra vez");
}

#[tokio::test]
async fn l35_an_announcement_over_http_reaches_only_its_room() {
    let lesson = lesson().await;
    let mut ana = connect(&lesson, "/ws/chat?nick=ana&room=general").await;
    next_json(&mut ana).await;
    let mut carlos = connect(&lesson, "/ws/chat?nick=carlos&room=rust").await;
    next_json(&mut carlos).await;

    let client = reqwest::Client::new();
    let response = client
        .post(lesson.url("/rooms/general/announce"))
        .json(&json!({"text": "mantenimiento a las 18:00"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"delivered": 1})
    );
    assert_eq!(
        next_json(&mut ana).await,
        json!({"type": "message", "room": "general", "nick": "servidor", "text": "mantenimiento a las 18:00"})
    );
    let empty = client
        .post(lesson.url("/rooms/vacia/announce"))
        .json(&json!({"text": "¿hay alguien?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        empty.json::<Value>().await.unwrap(),
        json!({"delivered": 0})
    );
    // carlos's next frame is his own message: the announcement never reached "rust".
    send_text(&mut carlos, "sigo aquí").await;
    assert_eq!(next_json(&mut carlos).await["text"], "sigo aquí");

    let invalid = client
        .post(lesson.url("/rooms/general/announce"))
        .json(&json!({"text": "   "}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), 422);
}

#[tokio::test]
async fn l35_a_client_that_drops_its_connection_is_removed_from_the_room() {
    let lesson = lesson().await;
    let mut ana = connect(&lesson, "/ws/chat?nick=ana&room=general").await;
    next_json(&mut ana).await;
    let bea = connect(&lesson, "/ws/chat?nick=bea&room=general").await;
    assert_eq!(next_json(&mut ana).await["nick"], "bea");
    // No close frame: the TCP connection just goes away.
    drop(bea);
    assert_eq!(
        next_json(&mut ana).await,
        json!({"type": "left", "room": "general", "nick": "bea"})
    );
    assert_eq!(rooms(&lesson).await, json!({"general": ["ana"]}));
}

#[tokio::test]
async fn l35_a_malformed_frame_gets_an_error_frame_and_the_connection_survives() {
    let lesson = lesson().await;
    let mut ana = connect(&lesson, "/ws/robust?nick=ana&room=general").await;
    assert_eq!(next_json(&mut ana).await["type"], "joined");

    for bad in [
        "esto no es JSON",
        r#"{"type":"baile"}"#,
        r#"{"type":"message"}"#,
    ] {
        send_text(&mut ana, bad).await;
        let error = next_json(&mut ana).await;
        assert_eq!(error["type"], "error", "{bad}");
        assert_eq!(error["code"], "invalid_frame", "{bad}");
    }
    send_text(&mut ana, r#"{"type":"message","text":"   "}"#).await;
    assert_eq!(next_json(&mut ana).await["code"], "invalid_message");
    ana.send(Message::binary(vec![0u8; 3])).await.unwrap();
    assert_eq!(next_json(&mut ana).await["code"], "invalid_frame");

    // Still alive: a valid message goes through, and ana is still in the room.
    send_text(&mut ana, r#"{"type":"message","text":"sigo aquí"}"#).await;
    assert_eq!(
        next_json(&mut ana).await,
        json!({"type": "message", "room": "general", "nick": "ana", "text": "sigo aquí"})
    );
    assert_eq!(rooms(&lesson).await, json!({"general": ["ana"]}));
}

#[tokio::test]
async fn l35_a_message_over_4_kib_closes_with_1009() {
    let lesson = lesson().await;
    let mut ana = connect(&lesson, "/ws/robust?nick=ana&room=general").await;
    next_json(&mut ana).await;
    let huge = json!({"type": "message", "text": "x".repeat(5000)}).to_string();
    send_text(&mut ana, &huge).await;
    assert_eq!(next_close_code(&mut ana).await, 1009);
    // The server leaves the room before it says goodbye, so by now ana is gone.
    assert_eq!(rooms(&lesson).await, json!({}));
}

#[tokio::test]
async fn l35_a_client_that_stops_answering_pings_is_closed_with_1001_and_leaves() {
    let settings = lesson::Settings {
        ping_every: Duration::from_millis(50),
        idle_timeout: Duration::from_millis(300),
    };
    let lesson = support::serve(lesson::app_with(settings)).await;
    let mut ana = connect(&lesson, "/ws/robust?nick=ana&room=general").await;
    next_json(&mut ana).await;
    // bea does the handshake by hand and then never reads again: she cannot answer the
    // server's pings, like a laptop whose lid was closed.
    let mut bea = raw_upgrade(&lesson, "/ws/robust?nick=bea&room=general").await;
    assert_eq!(next_json(&mut ana).await["nick"], "bea");

    // ana keeps reading (and so answering pings) and sees bea leave.
    assert_eq!(
        next_json(&mut ana).await,
        json!({"type": "left", "room": "general", "nick": "bea"})
    );
    assert_eq!(rooms(&lesson).await, json!({"general": ["ana"]}));

    // What reached bea's socket meanwhile: her own `joined`, pings she never answered, and a
    // close with 1001; then the server hung up.
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, bea.read_to_end(&mut bytes))
        .await
        .expect("the server did not hang up")
        .unwrap();
    let frames = server_frames(&bytes);
    let opcodes: Vec<u8> = frames.iter().map(|(opcode, _)| *opcode).collect();
    assert_eq!(
        opcodes.first(),
        Some(&0x1),
        "first a text frame: {opcodes:?}"
    );
    assert!(
        opcodes.contains(&0x9),
        "the server sent no ping: {opcodes:?}"
    );
    let (last, payload) = frames.last().unwrap();
    assert_eq!(*last, 0x8, "the last frame is not a close: {opcodes:?}");
    assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1001);
}

/// A WebSocket handshake written by hand, so that nothing answers pings behind our back.
async fn raw_upgrade(lesson: &Lesson, path: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(lesson.addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        lesson.addr
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    // Byte by byte up to the blank line, so no frame after the headers is consumed.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(WAIT, tcp.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// Splits what a server wrote into (opcode, payload) frames (server frames are not masked).
fn server_frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (len, header) = match bytes[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => panic!("unexpectedly large frame"),
            len => (usize::from(len), 2),
        };
        frames.push((opcode, bytes[header..header + len].to_vec()));
        bytes = &bytes[header + len..];
    }
    assert!(bytes.is_empty(), "a truncated frame");
    frames
}
