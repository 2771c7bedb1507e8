//! Delivery rules: idempotency, recovery with since, limits, slow consumers, pings, shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

use crate::helpers::*;

/// The contract's limit on a client message, after reassembling fragments.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A `send` to `general` whose JSON is exactly `size` bytes (ASCII text, so bytes = chars).
fn send_of_exact_size(size: usize) -> String {
    let empty = json!({ "type": "send", "room": "general", "text": "" }).to_string();
    let text = "a".repeat(size - empty.len());
    let frame = json!({ "type": "send", "room": "general", "text": text }).to_string();
    assert_eq!(frame.len(), size);
    frame
}

/// The close code the server sent, panicking if it closed without a close frame.
async fn close_code(client: &mut WsClient) -> CloseCode {
    let frame = client
        .closed()
        .await
        .expect("the server closed without a close frame");
    frame.code
}

// ----------------------------------------------------------------------------------------------
// idempotent sends
// ----------------------------------------------------------------------------------------------

fn send_with_client_id(room: &str, text: &str, client_id: &str) -> Value {
    json!({ "type": "send", "room": room, "text": text, "client_id": client_id })
}

async fn a_repeated_client_id_stores_one_message_and_answers_with_the_original(app: TestApp) {
    // Arrange: ana has two tabs, as after a reconnect; bea watches.
    let token = app.signup("ana").await;
    let mut ana = app.ws(&token).await;
    let mut ana_again = app.ws(&token).await;
    let mut bea = app.connected("bea").await;
    bea.join("general").await;
    ana.join("general").await;
    ana_again.join("general").await;
    bea.recv_type("presence").await;
    let send = |text| send_with_client_id("general", text, "envío-1");
    ana.send_json(send("hola")).await;
    let original = ana.recv().await;
    assert_eq!(ana_again.recv().await, original);
    assert_eq!(bea.recv().await, original);

    // Act: the same client_id again, even with another text, from both connections.
    ana.send_json(send("hola otra vez")).await;
    let repeated = ana.recv().await;
    ana_again.send_json(send("hola")).await;
    let repeated_elsewhere = ana_again.recv().await;

    // Assert
    assert_eq!(repeated, original);
    assert_eq!(repeated_elsewhere, original);
    assert_eq!(app.history(&token, "general").await, vec![original.clone()]);
    let sentinel = ana.say("general", "siguiente").await;
    assert_eq!(id_of(&sentinel), id_of(&original) + 1);
    bea.assert_next(&sentinel).await;
    ana_again.assert_next(&sentinel).await;
}

async fn the_same_client_id_from_another_user_or_in_another_room_is_a_new_message(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    assert_eq!(
        app.create_room(&token, "otra", false).await.status,
        StatusCode::CREATED
    );
    let mut ana = app.ws(&token).await;
    let mut bea = app.connected("bea").await;
    for client in [&mut ana, &mut bea] {
        client.join("general").await;
        client.join("otra").await;
    }
    let send = |room| send_with_client_id(room, "hola", "c-1");

    // Act
    ana.send_json(send("general")).await;
    let ana_general = ana.recv_type("message").await;
    assert_eq!(bea.recv_type("message").await, ana_general);
    bea.send_json(send("general")).await;
    let bea_general = bea.recv_type("message").await;
    assert_eq!(ana.recv_type("message").await, bea_general);
    ana.send_json(send("otra")).await;
    let ana_otra = ana.recv_type("message").await;

    // Assert
    assert_eq!(
        (ana_general["user"].as_str(), bea_general["user"].as_str()),
        (Some("ana"), Some("bea"))
    );
    assert_eq!(
        app.history(&token, "general").await,
        vec![ana_general, bea_general]
    );
    assert_eq!(app.history(&token, "otra").await, vec![ana_otra]);
}

// ----------------------------------------------------------------------------------------------
// recovery with since
// ----------------------------------------------------------------------------------------------

async fn a_client_that_rejoins_with_since_gets_exactly_the_messages_it_missed(app: TestApp) {
    // Arrange: ana reads up to message N, then her connection drops.
    let ana_token = app.signup("ana").await;
    let bea_token = app.signup("bea").await;
    let mut ana = app.ws(&ana_token).await;
    ana.join("general").await;
    let seen = app.post_numbered(&bea_token, "general", "antes", 5).await;
    assert_eq!(ana.recv_messages(5).await, seen);
    let last_seen = id_of(&seen[4]);
    drop(ana);
    let missed = app
        .post_numbered(&bea_token, "general", "mientras", 30)
        .await;

    // Act
    let mut ana = app.ws(&ana_token).await;
    let joined = ana.join_since("general", last_seen).await;
    let after = app.post_numbered(&bea_token, "general", "después", 3).await;

    // Assert: the gap exactly, then live messages, none twice.
    assert_eq!(joined["history"].as_array().unwrap(), &missed);
    assert!(
        joined.get("truncated").is_none() || joined["truncated"] == false,
        "{joined}"
    );
    assert_eq!(ana.recv_messages(3).await, after);
    let expected: Vec<u64> = (last_seen + 1..=last_seen + 33).collect();
    let mut received = ids_of(&missed);
    received.extend(ids_of(&after));
    assert_eq!(received, expected);
}

async fn a_rejoin_with_since_over_1000_missed_messages_is_truncated_to_the_first_1000(
    app: TestApp,
) {
    // Arrange: 1,050 messages in batches of 35, each batch on its own connection (a fresh burst),
    // five batches at a time. Every connection is in the room and gets every message sent
    // while it is there: with at most 5 × 35 in flight, no queue of 256 can overflow.
    let token = app.signup("ana").await;
    let mut stored = 0;
    for wave in 0..6 {
        let batches = (0..5).map(|batch| {
            let texts: Vec<String> = (0..35)
                .map(|i| format!("tanda {wave}.{batch} mensaje {i}"))
                .collect();
            let (app, token) = (&app, &token);
            async move { app.post_messages(token, "general", &texts).await.len() }
        });
        stored += futures_util::future::join_all(batches)
            .await
            .iter()
            .sum::<usize>();
    }
    assert_eq!(stored, 1050);
    let mut bea = app.connected("bea").await;

    // Act
    let over = bea.join_since("general", 49).await;
    let exactly = bea.join_since("general", 50).await;
    let rest = app
        .get("/rooms/general/messages?after=1049&limit=200", Some(&token))
        .await;

    // Assert: 1,001 missed → the first 1,000 and `truncated`; then the client pages with after=.
    let over_ids = ids_of(over["history"].as_array().unwrap());
    assert_eq!(over_ids, (50..=1049).collect::<Vec<u64>>());
    assert_eq!(over["truncated"], true);
    let exactly_ids = ids_of(exactly["history"].as_array().unwrap());
    assert_eq!(exactly_ids, (51..=1050).collect::<Vec<u64>>());
    assert!(
        exactly.get("truncated").is_none() || exactly["truncated"] == false,
        "1,000 missed is not truncated"
    );
    assert_eq!(
        ids_of(rest.body["messages"].as_array().unwrap()),
        vec![1050]
    );
}

async fn a_rejoin_with_since_gets_its_history_even_when_the_messages_are_large(app: TestApp) {
    // Arrange: 100 messages of 4,000 emoji (16 KB each): a `joined` of 1.6 MB.
    let token = app.signup("ana").await;
    let big = "🎉".repeat(3990);
    let texts: Vec<String> = (0..100).map(|i| format!("{i:>3} {big}")).collect();
    let stored = app.post_messages(&token, "general", &texts).await;
    let mut bea = app.connected("bea").await;

    // Act
    let joined = bea.join_since("general", 0).await;

    // Assert
    assert_eq!(joined["history"].as_array().unwrap(), &stored);
}

/// A connection that keeps sending to `general` (within the rate limit) and reads everything
/// it gets, until `stop` is set.
async fn keep_sending(
    app: &TestApp,
    token: &str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    let mut client = app.ws(token).await;
    client.join("general").await;
    tokio::spawn(async move {
        let (mut sink, mut stream) = client.stream.split();
        let mut tick = tokio::time::interval(Duration::from_millis(70));
        let mut sent = 0;
        while !stop.load(Ordering::Relaxed) {
            tokio::select! {
                _ = tick.tick() => {
                    sent += 1;
                    let text = format!("ráfaga {sent}");
                    let frame = json!({ "type": "send", "room": "general", "text": text });
                    sink.send(Message::text(frame.to_string())).await.unwrap();
                }
                frame = stream.next() => {
                    assert!(matches!(frame, Some(Ok(_))), "a sender lost its connection");
                }
            }
        }
    })
}

/// Reads until the `joined` of `general` and returns it, failing on any frame of `general`
/// (or any error) that comes first.
async fn joined_before_anything_else(client: &mut WsClient) -> Value {
    loop {
        let frame = client.recv().await;
        match frame["type"].as_str() {
            Some("joined") => return frame,
            Some("presence" | "typing") if frame["room"] != "general" => {}
            _ => panic!("{frame} reached the connection before its `joined`"),
        }
    }
}

async fn no_live_message_reaches_a_connection_before_its_joined_nor_goes_missing_after(
    app: TestApp,
) {
    // Arrange: three connections send to general all along.
    let ana_token = app.signup("ana").await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for _ in 0..3 {
        senders.push(keep_sending(&app, &ana_token, stop.clone()).await);
    }
    let bea_token = app.signup("bea").await;
    let mut bea = app.ws(&bea_token).await;
    let mut last_seen: Option<u64> = None;

    for round in 0..8 {
        // Act: join on a fresh connection or again after a leave; with since half of the time.
        if round % 2 == 0 {
            bea = app.ws(&bea_token).await;
        } else {
            bea.send_json(json!({ "type": "leave", "room": "general" }))
                .await;
            let left = bea.recv_type("left").await;
            assert_eq!(left["room"], "general");
        }
        let since = last_seen.filter(|_| round % 4 < 2);
        let mut join = json!({ "type": "join", "room": "general" });
        if let Some(since) = since {
            join["since"] = json!(since);
        }
        bea.send_json(join).await;
        let joined = joined_before_anything_else(&mut bea).await;

        // Assert: the history, then live messages, continue one another without gap or repeat.
        let history = ids_of(joined["history"].as_array().unwrap());
        if let Some(since) = since {
            let expected: Vec<u64> = (since + 1..since + 1 + history.len() as u64).collect();
            assert_eq!(
                history, expected,
                "round {round}: since={since} must resume right after it"
            );
        }
        let mut previous = history.last().copied().or(since).unwrap_or(0);
        for message in bea.recv_messages(10).await {
            assert_eq!(
                id_of(&message),
                previous + 1,
                "round {round}: after {previous} came {message}"
            );
            previous += 1;
        }
        last_seen = Some(previous);
    }
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        sender.await.unwrap();
    }
}

// ----------------------------------------------------------------------------------------------
// epoch, reset and has_more (1.1)
// ----------------------------------------------------------------------------------------------

/// Joins `general` with these extra fields and returns the `joined`.
async fn join_with(client: &mut WsClient, fields: Value) -> Value {
    let mut join = json!({ "type": "join", "room": "general" });
    join.as_object_mut()
        .unwrap()
        .extend(fields.as_object().unwrap().clone());
    client.send_json(join).await;
    client.recv_type("joined").await
}

async fn joined_names_the_epoch_and_says_whether_older_messages_exist(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    let mut ana = app.ws(&token).await;

    // Act + Assert: an empty room has nothing older.
    let empty = join_with(&mut ana, json!({})).await;
    let epoch = empty["epoch"]
        .as_str()
        .expect("joined must carry a string epoch");
    assert!(!epoch.is_empty());
    assert_eq!(empty["has_more"], false, "{empty}");
    assert!(
        empty.get("reset").is_none() || empty["reset"] == false,
        "{empty}"
    );

    // 55 messages: the last 50 come, and there are older ones.
    let stored = app.post_numbered(&token, "general", "m", 55).await;
    let full = join_with(&mut ana, json!({})).await;
    assert_eq!(
        full["epoch"], epoch,
        "the epoch changes only when history is lost"
    );
    assert_eq!(full["history"].as_array().unwrap(), &stored[5..]);
    assert_eq!(full["has_more"], true, "{}", full["has_more"]);

    // With since (and the same epoch, or none): exactly what follows; has_more is not sent.
    for fields in [
        json!({ "since": 50 }),
        json!({ "since": 50, "epoch": epoch }),
    ] {
        let since = join_with(&mut ana, fields.clone()).await;
        assert_eq!(
            since["history"].as_array().unwrap(),
            &stored[50..],
            "{fields}"
        );
        assert!(since.get("has_more").is_none(), "{fields}: {since}");
        assert!(
            since.get("reset").is_none() || since["reset"] == false,
            "{fields}"
        );
    }
    // The same epoch without since: the last 50, has_more, no reset.
    let same = join_with(&mut ana, json!({ "epoch": epoch })).await;
    assert_eq!(same["history"].as_array().unwrap(), &stored[5..]);
    assert_eq!(same["has_more"], true);
    assert!(
        same.get("reset").is_none() || same["reset"] == false,
        "{same}"
    );
}

async fn a_join_with_another_epoch_ignores_since_and_resets_to_the_last_50(app: TestApp) {
    // Arrange: a client that saw ids of another history (before a restart, say).
    let token = app.signup("ana").await;
    let stored = app.post_numbered(&token, "general", "m", 55).await;
    let mut ana = app.ws(&token).await;

    for fields in [
        json!({ "since": 54, "epoch": "una-época-anterior" }),
        json!({ "since": 999, "epoch": "" }),
        json!({ "epoch": "una-época-anterior" }),
    ] {
        // Act
        let joined = join_with(&mut ana, fields.clone()).await;

        // Assert
        assert_eq!(joined["reset"], true, "{fields}: {joined}");
        assert_eq!(
            joined["history"].as_array().unwrap(),
            &stored[5..],
            "{fields}"
        );
        assert_eq!(joined["has_more"], true, "{fields}");
        assert!(joined.get("truncated").is_none(), "{fields}: {joined}");
        assert_ne!(joined["epoch"], fields["epoch"]);
    }

    // Live messages after a reset are not filtered by the stale id.
    let joined = join_with(&mut ana, json!({ "since": 10_000, "epoch": "otra" })).await;
    assert_eq!(joined["reset"], true);
    let sent = app.post_numbered(&token, "general", "después", 1).await;
    assert_eq!(ana.recv_type("message").await, sent[0]);
}

#[tokio::test]
async fn a_restarted_in_process_server_has_a_new_epoch_and_resets_a_client_of_the_old_one() {
    // Arrange: ana saw message 3 of the first server's general.
    let first = spawn_app(Backend::Memory).await.unwrap();
    let token = first.signup("ana").await;
    first.post_numbered(&token, "general", "antes", 3).await;
    let old = first.ws(&token).await.join("general").await;
    first.stop().await;

    // Act: a new process starts with nothing (accounts were in memory too) and an empty general.
    let second = spawn_app(Backend::Memory).await.unwrap();
    let token = second.signup("ana").await;
    let stored = second.post_numbered(&token, "general", "después", 2).await;
    let mut ana = second.ws(&token).await;
    let joined = join_with(&mut ana, json!({ "since": 3, "epoch": old["epoch"] })).await;

    // Assert: without the epoch she would have been sent nothing (ids 1 and 2 are below 3).
    assert_ne!(joined["epoch"], old["epoch"]);
    assert_eq!(joined["reset"], true);
    assert_eq!(joined["history"].as_array().unwrap(), &stored);
    assert_eq!(joined["has_more"], false);
}

// ----------------------------------------------------------------------------------------------
// answers in order (1.1)
// ----------------------------------------------------------------------------------------------

async fn a_send_followed_at_once_by_a_leave_answers_the_echo_then_left(app: TestApp) {
    // Arrange
    let mut ana = app.connected("ana").await;

    for round in 0..10 {
        ana.join("general").await;
        let text = format!("me voy {round}");

        // Act: both frames leave together, before any answer comes back.
        ana.send_together(&[
            json!({ "type": "send", "room": "general", "text": text }),
            json!({ "type": "leave", "room": "general" }),
        ])
        .await;
        let first = ana.recv().await;

        // Assert: the answer to the send (its echo) comes before the answer to the leave.
        assert_eq!(first["type"], "message", "round {round}: got {first} first");
        assert_eq!(first["text"], text.as_str(), "round {round}");
        let second = ana.recv().await;
        assert_eq!(
            second,
            json!({ "type": "left", "room": "general" }),
            "round {round}"
        );
    }
}

// ----------------------------------------------------------------------------------------------
// rate limit
// ----------------------------------------------------------------------------------------------

/// What a connection answered to a batch of frames.
#[derive(Debug, Default)]
struct Answers {
    /// The texts of the `message` frames that came back (the sends that were stored).
    stored: Vec<String>,
    rate_limited: usize,
    invalid: usize,
}

/// Sends every frame at once, then reads one answer per frame (other answers fail the test).
async fn send_all_at_once(client: &mut WsClient, frames: &[Value]) -> Answers {
    for frame in frames {
        client.send_json(frame.clone()).await;
    }
    let mut answers = Answers::default();
    while answers.stored.len() + answers.rate_limited + answers.invalid < frames.len() {
        let frame = client.recv().await;
        match (frame["type"].as_str(), frame["code"].as_str()) {
            (Some("message"), _) => answers
                .stored
                .push(frame["text"].as_str().unwrap().to_owned()),
            (Some("error"), Some("rate_limited")) => answers.rate_limited += 1,
            (Some("error"), Some("invalid_frame")) => answers.invalid += 1,
            _ => panic!("unexpected answer {frame}"),
        }
    }
    answers
}

/// Most frames a connection may have had accepted `elapsed` after it opened: the burst, plus
/// 20 per second since (rounded up, plus one for the clock's granularity).
fn most_accepted(elapsed: Duration) -> usize {
    40 + (elapsed.as_secs_f64() * 20.0).ceil() as usize + 1
}

async fn a_burst_of_40_frames_is_accepted_and_the_next_ones_are_rate_limited_and_not_stored(
    app: TestApp,
) {
    // Arrange
    let token = app.signup("ana").await;
    let opened = Instant::now();
    let mut ana = app.ws(&token).await;
    ana.join("general").await;
    let frames: Vec<Value> = (0..139)
        .map(|i| json!({ "type": "send", "room": "general", "text": format!("n {i}") }))
        .collect();

    // Act
    let answers = send_all_at_once(&mut ana, &frames).await;
    let elapsed = opened.elapsed();

    // Assert: the join and the first 39 sends fit in the burst; then only the refill gets through.
    let accepted = answers.stored.len();
    let first: Vec<String> = (0..39).map(|i| format!("n {i}")).collect();
    assert_eq!(
        answers.stored[..39],
        first,
        "the burst must be accepted whole"
    );
    assert_eq!(
        answers.rate_limited,
        139 - accepted,
        "each refused frame gets its own error"
    );
    assert!(answers.rate_limited > 0, "no frame was rate limited");
    let accepted_with_the_join = 1 + accepted;
    assert!(
        accepted_with_the_join <= most_accepted(elapsed),
        "{accepted} sends accepted in {elapsed:?}"
    );
    let history = app.history(&token, "general").await;
    let texts: Vec<&str> = history
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts, answers.stored,
        "exactly the accepted frames are stored"
    );

    // After a second, the bucket has refilled (at least 20 frames).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let later = send_all_at_once(&mut ana, &frames[..20]).await;
    assert_eq!((later.stored.len(), later.rate_limited), (20, 0));
}

async fn each_rate_limited_frame_gets_an_error_with_its_own_room_and_client_id(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    let mut ana = app.ws(&token).await;
    ana.join("general").await;
    let client_ids: Vec<String> = (0..80).map(|i| format!("c-{i}")).collect();
    let frames: Vec<Value> = client_ids
        .iter()
        .map(|id| json!({ "type": "send", "room": "general", "text": id, "client_id": id }))
        .collect();

    // Act
    ana.send_together(&frames).await;
    let (mut answered, mut refused) = (Vec::new(), 0);
    while answered.len() < frames.len() {
        let frame = ana.recv().await;
        match (frame["type"].as_str(), frame["code"].as_str()) {
            (Some("message"), _) => {}
            (Some("error"), Some("rate_limited")) => {
                assert_eq!(frame["room"], "general", "{frame}");
                refused += 1;
            }
            _ => panic!("unexpected answer {frame}"),
        }
        answered.push(frame["client_id"].as_str().unwrap().to_owned());
    }

    // Assert: every frame was answered once, in order, by its echo or by its own error.
    assert!(refused > 0, "no frame was rate limited");
    assert_eq!(answered, client_ids);
}

async fn every_frame_counts_against_the_rate_limit_even_invalid_ones(app: TestApp) {
    // Arrange: the join and 39 invalid frames use up the burst.
    let token = app.signup("ana").await;
    let opened = Instant::now();
    let mut ana = app.ws(&token).await;
    ana.join("general").await;
    let mut frames: Vec<Value> = (0..39).map(|i| json!({ "type": i })).collect();
    frames.extend(
        (0..60).map(|i| json!({ "type": "send", "room": "general", "text": format!("n {i}") })),
    );

    // Act
    let answers = send_all_at_once(&mut ana, &frames).await;
    let elapsed = opened.elapsed();

    // Assert: only the refill since the connection opened lets sends through.
    let accepted = answers.stored.len();
    assert_eq!(
        answers.invalid, 39,
        "the invalid frames were within the burst"
    );
    assert!(answers.rate_limited > 0, "no frame was rate limited");
    assert!(
        40 + accepted <= most_accepted(elapsed),
        "{accepted} sends accepted in {elapsed:?}"
    );
    assert_eq!(app.history(&token, "general").await.len(), accepted);
}

// ----------------------------------------------------------------------------------------------
// size limits
// ----------------------------------------------------------------------------------------------

async fn a_message_over_64_kib_closes_the_connection_with_1009(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    let oversized = [
        Message::text(send_of_exact_size(MAX_MESSAGE_BYTES + 1)),
        Message::binary(vec![b'x'; MAX_MESSAGE_BYTES + 1]),
        Message::text(send_of_exact_size(200_000)),
    ];

    for message in oversized {
        let mut ana = app.ws(&token).await;
        ana.join("general").await;

        // Act: the server may stop reading (and reset) before the whole frame is written.
        let _ = ana.stream.send(message).await;

        // Assert
        assert_eq!(close_code(&mut ana).await, CloseCode::Size);
    }
    assert!(app.history(&token, "general").await.is_empty());
}

async fn a_message_over_64_kib_in_fragments_closes_the_connection_with_1009(app: TestApp) {
    // Arrange: three frames of 30,000 bytes each, every one under the limit, 90,000 together.
    let token = app.signup("ana").await;
    let mut ana = app.ws(&token).await;
    ana.join("general").await;
    let json = send_of_exact_size(90_000);
    let parts: Vec<&[u8]> = json.as_bytes().chunks(30_000).collect();

    // Act
    ana.send_raw(Message::Frame(Frame::message(
        parts[0].to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await;
    ana.send_raw(Message::Frame(Frame::message(
        parts[1].to_vec(),
        OpCode::Data(Data::Continue),
        false,
    )))
    .await;
    ana.send_raw(Message::Frame(Frame::message(
        parts[2].to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await;

    // Assert
    assert_eq!(close_code(&mut ana).await, CloseCode::Size);
    assert!(app.history(&token, "general").await.is_empty());
}

async fn fragments_within_64_kib_are_reassembled_into_one_frame(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    let mut ana = app.ws(&token).await;
    ana.join("general").await;
    let json = json!({ "type": "send", "room": "general", "text": "hola en trozos, ñandú 🎉" })
        .to_string();
    // Cut inside the multibyte characters: only the whole message must be UTF-8.
    let bytes = json.as_bytes();
    let (first, second, third) = (
        &bytes[..10],
        &bytes[10..bytes.len() - 8],
        &bytes[bytes.len() - 8..],
    );

    // Act
    ana.send_raw(Message::Frame(Frame::message(
        first.to_vec(),
        OpCode::Data(Data::Text),
        false,
    )))
    .await;
    ana.send_raw(Message::Frame(Frame::message(
        second.to_vec(),
        OpCode::Data(Data::Continue),
        false,
    )))
    .await;
    ana.send_raw(Message::Frame(Frame::message(
        third.to_vec(),
        OpCode::Data(Data::Continue),
        true,
    )))
    .await;

    // Assert
    assert_eq!(ana.recv().await["text"], "hola en trozos, ñandú 🎉");
}

async fn a_message_of_up_to_64_kib_is_answered_not_closed(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    let mut ana = app.ws(&token).await;
    ana.join("general").await;

    for size in [60 * 1024, MAX_MESSAGE_BYTES] {
        // Act
        ana.send_raw(Message::text(send_of_exact_size(size))).await;

        // Assert: too many characters, but the connection stays.
        assert_eq!(ana.recv_error().await, "too_long", "{size} bytes");
        ana.assert_usable().await;
    }
    assert!(app.history(&token, "general").await.is_empty());
}

// ----------------------------------------------------------------------------------------------
// slow consumers
// ----------------------------------------------------------------------------------------------

/// Connects with a tiny TCP receive window, so that a client that does not read makes the
/// server's writes block after a few kilobytes instead of megabytes of socket buffers.
async fn connect_with_a_small_receive_buffer(app: &TestApp, token: &str) -> WsClient {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let stream = socket.connect(app.addr).await.unwrap();
    let request = app.ws_url(token).into_client_request().unwrap();
    let (stream, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    WsClient { stream }
}

/// Notes what the fast consumer of the slow-consumer test sees: message ids, and whether the
/// slow one has gone offline.
fn watch(frame: Value, received: &mut Vec<u64>, slow_is_gone: &mut bool) {
    match frame["type"].as_str() {
        Some("message") => received.push(id_of(&frame)),
        Some("presence") if frame["user"] == "lenta" => {
            *slow_is_gone = frame["status"] == "offline"
        }
        _ => {}
    }
}

/// `lenta` stops reading. Its socket buffers fill (a small receive window keeps them small),
/// then the server's write to it blocks, then its queue of 256 frames overflows: the server
/// must close it with 1013 without waiting for it to read, so the room sees it go offline while
/// it still has read nothing. Meanwhile `rapida` gets every message.
async fn a_slow_consumer_is_closed_with_1013_and_never_slows_the_room(app: TestApp) {
    // Arrange: `lenta` joins and then reads nothing; `rapida` reads everything.
    let slow_token = app.signup("lenta").await;
    let mut slow = connect_with_a_small_receive_buffer(&app, &slow_token).await;
    slow.join("general").await;
    let mut fast = app.connected("rapida").await;
    fast.join("general").await;
    let flooder = app.signup("ana").await;
    // Frames of 16 KB: the socket buffers fill after fewer messages.
    let big = "🎉".repeat(3990);
    let texts: Vec<String> = (0..1200).map(|i| format!("{i} {big}")).collect();

    // Act: flood the room batch by batch, `rapida` reading each batch before the next one is
    // sent (so only `lenta` falls behind), until the room sees `lenta` go.
    let mut stored = Vec::new();
    let mut received = Vec::new();
    let mut slow_is_gone = false;
    for batch in texts.chunks(SENDS_PER_BURST) {
        stored.extend(app.post_messages(&flooder, "general", batch).await);
        while received.len() < stored.len() {
            watch(fast.recv().await, &mut received, &mut slow_is_gone);
        }
        if slow_is_gone {
            break;
        }
    }
    // The last batch may have been the one that overflowed it: its `offline` is on the way.
    while !slow_is_gone {
        watch(fast.recv().await, &mut received, &mut slow_is_gone);
    }

    // Assert: the fast one got every message, in order, and the slow one left the room
    // although it never read.
    assert_eq!(received, ids_of(&stored));
    // Once it reads, it finds what was buffered for it, then close 1013.
    let mut last_seen = 0;
    let code = loop {
        match slow.stream.next().await {
            Some(Ok(Message::Text(text))) => {
                let frame: Value = serde_json::from_str(&text).unwrap();
                if frame["type"] == "message" {
                    last_seen = id_of(&frame);
                }
            }
            Some(Ok(Message::Close(frame))) => break frame.map(|frame| frame.code),
            Some(Ok(_)) => {}
            other => panic!("the slow consumer got no close frame: {other:?}"),
        }
    };
    assert_eq!(code, Some(CloseCode::Again));
    // It recovers with since.
    let mut slow = app.ws(&slow_token).await;
    let joined = slow.join_since("general", last_seen).await;
    let recovered = ids_of(joined["history"].as_array().unwrap());
    assert_eq!(
        recovered,
        (last_seen + 1..=id_of(stored.last().unwrap())).collect::<Vec<u64>>()
    );
}

// ----------------------------------------------------------------------------------------------
// shutdown, pings, idle peers
// ----------------------------------------------------------------------------------------------

async fn shutdown_closes_every_connection_with_1001(app: TestApp) {
    // Arrange: one client in a room, one in two rooms, one in none.
    let token = app.signup("ana").await;
    assert_eq!(
        app.create_room(&token, "otra", false).await.status,
        StatusCode::CREATED
    );
    let mut in_general = app.ws(&token).await;
    in_general.join("general").await;
    let mut in_two = app.connected("bea").await;
    in_two.join("general").await;
    in_two.join("otra").await;
    let mut in_none = app.connected("carl").await;
    in_none.assert_usable().await;

    // Act
    let stopping = tokio::spawn(app.stop());

    // Assert
    for client in [&mut in_general, &mut in_two, &mut in_none] {
        assert_eq!(close_code(client).await, CloseCode::Away);
    }
    tokio::time::timeout(FRAME_TIMEOUT, stopping)
        .await
        .expect("the server did not stop")
        .unwrap();
}

/// A server that pings every second and drops peers silent for two.
async fn impatient_app() -> TestApp {
    let mut config = test_config(Backend::Memory).await.unwrap();
    config.ping_interval_secs = 1;
    config.idle_timeout_secs = 2;
    spawn_app_with(config).await
}

#[tokio::test]
async fn the_server_pings_each_connection_every_interval() {
    // Arrange
    let app = impatient_app().await;
    let mut ana = app.connected("ana").await;

    // Act
    let first = tokio::time::timeout(FRAME_TIMEOUT, ana.stream.next()).await;

    // Assert
    assert!(
        matches!(first, Ok(Some(Ok(Message::Ping(_))))),
        "expected a ping, got {first:?}"
    );
}

/// A WebSocket client written by hand on a TCP socket.
///
/// tokio-tungstenite answers every ping with a pong as soon as it reads, so a tungstenite client
/// that reads is never silent, and one that does not read cannot see the close frame. This one
/// reads every frame and answers nothing, like a peer whose network went quiet.
struct SilentPeer {
    tcp: TcpStream,
    buffer: Vec<u8>,
}

impl SilentPeer {
    async fn connect(app: &TestApp, token: &str) -> Self {
        let mut tcp = TcpStream::connect(app.addr).await.unwrap();
        let handshake = format!(
            "GET /ws?token={token} HTTP/1.1\r\nHost: {}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            app.addr
        );
        tcp.write_all(handshake.as_bytes()).await.unwrap();
        let mut peer = Self {
            tcp,
            buffer: Vec::new(),
        };
        let end = loop {
            if let Some(end) = peer.buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            assert!(peer.fill().await, "the server closed during the handshake");
        };
        let head = String::from_utf8_lossy(&peer.buffer[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "no upgrade: {head}");
        peer.buffer.drain(..end);
        peer
    }

    /// Reads more bytes into the buffer; `false` at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 4096];
        let read = tokio::time::timeout(FRAME_TIMEOUT, self.tcp.read(&mut chunk))
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

    /// Sends a text frame, masked as a client must.
    async fn send_text(&mut self, text: &str) {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let payload = text.as_bytes();
        assert!(payload.len() < 126, "only short frames");
        let mut frame = vec![0x81, 0x80 | payload.len() as u8];
        frame.extend_from_slice(&mask);
        frame.extend(
            payload
                .iter()
                .enumerate()
                .map(|(i, byte)| byte ^ mask[i % 4]),
        );
        self.tcp.write_all(&frame).await.unwrap();
    }

    /// The next frame from the server as (opcode, payload); `None` when the stream ends.
    async fn next_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((header, length)) = self.frame_header() {
                if self.buffer.len() >= header + length {
                    let opcode = self.buffer[0] & 0x0f;
                    let frame: Vec<u8> =
                        self.buffer.drain(..header + length).skip(header).collect();
                    return Some((opcode, frame));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// The header length and payload length of the frame at the start of the buffer, once the
    /// header is complete. Server frames are not masked.
    fn frame_header(&self) -> Option<(usize, usize)> {
        let short = usize::from(*self.buffer.get(1)? & 0x7f);
        match short {
            126 => Some((
                4,
                usize::from(u16::from_be_bytes([
                    *self.buffer.get(2)?,
                    *self.buffer.get(3)?,
                ])),
            )),
            127 => {
                let bytes: [u8; 8] = self.buffer.get(2..10)?.try_into().ok()?;
                Some((10, usize::try_from(u64::from_be_bytes(bytes)).ok()?))
            }
            length => Some((2, length)),
        }
    }
}

#[tokio::test]
async fn a_peer_that_stays_silent_is_dropped_after_the_idle_timeout() {
    // Arrange: the peer joins general, then answers nothing, not even pings; bea watches.
    let app = impatient_app().await;
    let mut bea = app.connected("bea").await;
    bea.join("general").await;
    let token = app.signup("ana").await;
    let mut peer = SilentPeer::connect(&app, &token).await;
    peer.send_text(r#"{"type":"join","room":"general"}"#).await;

    // Act: read what the server sends until it ends the connection; bea reads too (and so
    // answers pings, staying alive).
    let (frames, offline) = tokio::join!(
        async {
            let mut opcodes = Vec::new();
            while let Some((opcode, _payload)) = peer.next_frame().await {
                opcodes.push(opcode);
                if opcode == 0x8 {
                    break;
                }
            }
            opcodes
        },
        async {
            let online = bea.recv_type("presence").await;
            assert_eq!(online["status"], "online");
            bea.recv_type("presence").await
        }
    );

    // Assert: pinged, unanswered, then closed and gone from the room.
    assert!(frames.contains(&0x9), "the server never pinged: {frames:?}");
    assert_eq!(
        frames.last(),
        Some(&0x8),
        "the server did not close the connection: {frames:?}"
    );
    assert_eq!(
        offline,
        json!({ "type": "presence", "room": "general", "user": "ana", "status": "offline" })
    );
}

#[tokio::test]
async fn a_peer_that_answers_pings_is_not_dropped_even_if_it_sends_no_frames() {
    // Arrange
    let app = impatient_app().await;
    let mut ana = app.connected("ana").await;

    // Act: two idle timeouts of reading (tungstenite answers each ping with a pong).
    ana.assert_silent(Duration::from_secs(4)).await;

    // Assert
    ana.assert_usable().await;
}

crate::on_both_backends!(
    a_repeated_client_id_stores_one_message_and_answers_with_the_original,
    the_same_client_id_from_another_user_or_in_another_room_is_a_new_message,
    a_client_that_rejoins_with_since_gets_exactly_the_messages_it_missed,
    a_rejoin_with_since_over_1000_missed_messages_is_truncated_to_the_first_1000,
    a_rejoin_with_since_gets_its_history_even_when_the_messages_are_large,
    no_live_message_reaches_a_connection_before_its_joined_nor_goes_missing_after,
    a_send_followed_at_once_by_a_leave_answers_the_echo_then_left,
    joined_names_the_epoch_and_says_whether_older_messages_exist,
    a_join_with_another_epoch_ignores_since_and_resets_to_the_last_50,
    a_burst_of_40_frames_is_accepted_and_the_next_ones_are_rate_limited_and_not_stored,
    every_frame_counts_against_the_rate_limit_even_invalid_ones,
    each_rate_limited_frame_gets_an_error_with_its_own_room_and_client_id,
    a_message_over_64_kib_closes_the_connection_with_1009,
    a_message_over_64_kib_in_fragments_closes_the_connection_with_1009,
    fragments_within_64_kib_are_reassembled_into_one_frame,
    a_message_of_up_to_64_kib_is_answered_not_closed,
    a_slow_consumer_is_closed_with_1013_and_never_slows_the_room,
    shutdown_closes_every_connection_with_1001,
);
