//! RFC 6455 at the frame level (contract 1.1, "Limits and abuse"): a protocol violation closes
//! with 1002, a text frame that is not UTF-8 with 1007, and a client's Close is answered with a
//! Close that echoes its code, so that a normal close is clean on both sides.
//!
//! A real client library refuses to send broken frames, so these tests write the bytes
//! themselves on a raw TCP socket, after an HTTP upgrade written by hand.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

const TEXT: u8 = 0x1;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;

/// How one frame is written: everything RFC 6455 lets a sender get wrong.
#[derive(Debug, Clone, Copy)]
struct Header {
    fin: bool,
    /// The three reserved bits (RSV1..RSV3), as the low 3 bits.
    rsv: u8,
    opcode: u8,
    masked: bool,
}

impl Header {
    /// A final, masked frame with no reserved bits: what a client must send.
    fn client(opcode: u8) -> Self {
        Self {
            fin: true,
            rsv: 0,
            opcode,
            masked: true,
        }
    }
}

/// The bytes of one frame (masked with a fixed key when `masked`).
fn frame(header: Header, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![(u8::from(header.fin) << 7) | (header.rsv << 4) | header.opcode];
    let mask_bit = if header.masked { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => bytes.push(mask_bit | len as u8),
        len @ 126..=65535 => {
            bytes.push(mask_bit | 126);
            bytes.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            bytes.push(mask_bit | 127);
            bytes.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if header.masked {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        bytes.extend_from_slice(&key);
        bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        bytes.extend_from_slice(payload);
    }
    bytes
}

/// The payload of a Close frame: the code, then the reason.
fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// How the server ended a connection.
#[derive(Debug, PartialEq, Eq)]
enum Ending {
    /// A Close frame with this code.
    Close(u16),
    /// A Close frame with no payload.
    CloseWithoutCode,
    /// The TCP connection ended with no Close frame.
    NoCloseFrame,
}

/// A WebSocket client that writes raw bytes.
struct RawClient {
    stream: TcpStream,
    /// Bytes read but not yet parsed into frames.
    buffer: Vec<u8>,
}

impl RawClient {
    /// Upgrades a fresh TCP connection by hand and checks the server switched protocols.
    async fn connect(app: &TestApp, token: &str) -> Self {
        let mut stream = TcpStream::connect(app.addr).await.unwrap();
        let request = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            app.addr
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut client = Self {
            stream,
            buffer: Vec::new(),
        };
        let head_end = loop {
            if let Some(at) = client.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            assert!(
                client.fill().await,
                "the server closed during the handshake"
            );
        };
        let head = String::from_utf8_lossy(&client.buffer[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
        client.buffer.drain(..head_end);
        client
    }

    async fn write(&mut self, bytes: &[u8]) {
        // The server may close before reading everything: a failed write is not the test's
        // concern, what the server answers is.
        let _ = self.stream.write_all(bytes).await;
    }

    /// Reads more bytes; `false` at the end of the stream (or a reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(FRAME_TIMEOUT, self.stream.read(&mut chunk))
            .await
            .expect("timed out waiting for the server");
        match read {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buffer.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next frame from the server (opcode, payload), or `None` when the stream ends.
    async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buffer) {
                self.buffer.drain(..used);
                return Some(frame);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads until the connection ends and says how: pings and text frames are skipped.
    async fn ending(&mut self) -> Ending {
        loop {
            match self.next_frame().await {
                None => return Ending::NoCloseFrame,
                Some((CLOSE, payload)) if payload.len() >= 2 => {
                    return Ending::Close(u16::from_be_bytes([payload[0], payload[1]]));
                }
                Some((CLOSE, _)) => return Ending::CloseWithoutCode,
                Some(_) => continue,
            }
        }
    }

    /// After the server's Close, the server ends the TCP connection (nothing else comes).
    async fn assert_tcp_closed(&mut self) {
        assert_eq!(self.next_frame().await, None, "a frame after the Close");
    }

    /// The next text frame, as JSON (pings skipped).
    async fn recv_json(&mut self) -> serde_json::Value {
        loop {
            match self.next_frame().await {
                Some((TEXT, payload)) => return serde_json::from_slice(&payload).unwrap(),
                Some((PING, _)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }
}

/// One unmasked frame from the server: `((opcode, payload), bytes used)`, or `None` if the
/// buffer does not hold a whole frame yet.
fn parse_server_frame(buffer: &[u8]) -> Option<((u8, Vec<u8>), usize)> {
    let (&first, &second) = (buffer.first()?, buffer.get(1)?);
    assert_eq!(second & 0x80, 0, "the server masked a frame");
    let (len, start) = match second & 0x7f {
        126 => (
            u16::from_be_bytes([*buffer.get(2)?, *buffer.get(3)?]) as usize,
            4,
        ),
        127 => {
            let bytes: [u8; 8] = buffer.get(2..10)?.try_into().ok()?;
            (u64::from_be_bytes(bytes) as usize, 10)
        }
        len => (len as usize, 2),
    };
    let payload = buffer.get(start..start + len)?.to_vec();
    Some(((first & 0x0f, payload), start + len))
}

/// A connection of a fresh user that has joined `general` (so that closing it has rooms to
/// clean up), with the `joined` already read.
async fn joined_client(app: &TestApp, token: &str) -> RawClient {
    let mut client = RawClient::connect(app, token).await;
    let join = serde_json::json!({ "type": "join", "room": "general" }).to_string();
    client
        .write(&frame(Header::client(TEXT), join.as_bytes()))
        .await;
    assert_eq!(client.recv_json().await["type"], "joined");
    client
}

/// Sends `bytes` on a fresh connection and returns how the server ended it.
async fn ending_after(app: &TestApp, token: &str, bytes: &[u8]) -> Ending {
    let mut client = joined_client(app, token).await;
    client.write(bytes).await;
    let ending = client.ending().await;
    if ending != Ending::NoCloseFrame {
        client.assert_tcp_closed().await;
    }
    ending
}

fn ping_json() -> Vec<u8> {
    br#"{"type":"ping"}"#.to_vec()
}

async fn protocol_violations_close_with_1002(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    let ping = ping_json();
    let with = |change: fn(&mut Header)| {
        let mut header = Header::client(TEXT);
        change(&mut header);
        frame(header, &ping)
    };
    let mut started = frame(
        Header {
            fin: false,
            ..Header::client(TEXT)
        },
        b"{\"type\":",
    );
    started.extend(frame(Header::client(TEXT), &ping));
    let violations: Vec<(&str, Vec<u8>)> = vec![
        ("unmasked frame", with(|h| h.masked = false)),
        ("RSV1", with(|h| h.rsv = 0b100)),
        ("RSV2", with(|h| h.rsv = 0b010)),
        ("RSV3", with(|h| h.rsv = 0b001)),
        ("reserved data opcode 0x3", with(|h| h.opcode = 0x3)),
        ("reserved control opcode 0xB", with(|h| h.opcode = 0xB)),
        (
            "fragmented ping",
            frame(
                Header {
                    fin: false,
                    ..Header::client(PING)
                },
                b"hola",
            ),
        ),
        (
            "ping of 126 bytes",
            frame(Header::client(PING), &[b'x'; 126]),
        ),
        (
            "close of 126 bytes",
            frame(
                Header::client(CLOSE),
                &close_payload(1000, &"x".repeat(124)),
            ),
        ),
        (
            "continuation without a start",
            frame(Header::client(CONTINUATION), &ping),
        ),
        ("new text frame inside a fragmented one", started),
        (
            "close with a 1-byte payload",
            frame(Header::client(CLOSE), &[3]),
        ),
    ];

    for (name, bytes) in violations {
        // Act
        let ending = ending_after(&app, &token, &bytes).await;

        // Assert
        assert_eq!(ending, Ending::Close(1002), "{name}");
    }
}

async fn a_close_code_that_may_not_be_sent_on_the_wire_closes_with_1002(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;

    for code in [
        0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535,
    ] {
        // Act
        let close = frame(Header::client(CLOSE), &close_payload(code, "adiós"));
        let ending = ending_after(&app, &token, &close).await;

        // Assert
        assert_eq!(ending, Ending::Close(1002), "close code {code}");
    }
}

async fn a_text_frame_that_is_not_utf8_closes_with_1007(app: TestApp) {
    // Arrange: whole, and split so that only the reassembled message is invalid.
    let token = app.signup("ana").await;
    let mut split = frame(
        Header {
            fin: false,
            ..Header::client(TEXT)
        },
        "{\"type\":\"send\",\"room\":\"general\",\"text\":\"ñ".as_bytes(),
    );
    split.extend(frame(Header::client(CONTINUATION), b"\xc3\x28\"}"));
    let cases: [(&str, Vec<u8>); 3] = [
        (
            "invalid bytes",
            frame(Header::client(TEXT), b"{\"type\":\"\xff\xfe\"}"),
        ),
        (
            "a truncated character",
            frame(Header::client(TEXT), b"{\"text\":\"\xe2\x82\"}"),
        ),
        ("invalid across fragments", split),
    ];

    for (name, bytes) in cases {
        // Act
        let ending = ending_after(&app, &token, &bytes).await;

        // Assert
        assert_eq!(ending, Ending::Close(1007), "{name}");
    }
    assert!(app.history(&token, "general").await.is_empty());
}

async fn a_clients_close_is_answered_with_a_close_echoing_its_code(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;

    for code in [
        1000, 1001, 1003, 1008, 1011, 1012, 1013, 3000, 3999, 4000, 4999,
    ] {
        // Act
        let close = frame(Header::client(CLOSE), &close_payload(code, "me voy"));
        let ending = ending_after(&app, &token, &close).await;

        // Assert
        assert_eq!(ending, Ending::Close(code), "close code {code}");
    }

    // A Close with no code is answered with a Close with no code.
    let empty = frame(Header::client(CLOSE), &[]);
    assert_eq!(
        ending_after(&app, &token, &empty).await,
        Ending::CloseWithoutCode
    );
}

async fn a_clean_close_takes_the_user_out_of_the_room(app: TestApp) {
    // Arrange: bea watches ana, who leaves with a normal close.
    let mut bea = app.connected("bea").await;
    bea.join("general").await;
    let token = app.signup("ana").await;
    let mut ana = joined_client(&app, &token).await;
    assert_eq!(bea.recv().await["status"], "online");

    // Act
    ana.write(&frame(Header::client(CLOSE), &close_payload(1000, "")))
        .await;

    // Assert
    assert_eq!(ana.ending().await, Ending::Close(1000));
    ana.assert_tcp_closed().await;
    let offline = serde_json::json!({
        "type": "presence", "room": "general", "user": "ana", "status": "offline"
    });
    bea.assert_next(&offline).await;
}

crate::on_both_backends!(
    protocol_violations_close_with_1002,
    a_close_code_that_may_not_be_sent_on_the_wire_closes_with_1002,
    a_text_frame_that_is_not_utf8_closes_with_1007,
    a_clients_close_is_answered_with_a_close_echoing_its_code,
    a_clean_close_takes_the_user_out_of_the_room,
);
