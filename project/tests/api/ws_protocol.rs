//! WebSocket frames: each client frame, each error code, and bad input that changes nothing.
//!
//! "Nothing reached another member" is checked with a sentinel: after the frame under test, the
//! offender sends a message, and the other member's very next frame must be that message. A
//! room's events reach each connection in order, so anything sent by mistake would come first.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::*;

/// ana and bea, each with one connection in `general`, every presence frame already read.
struct TwoMembers {
    token: String,
    ana: WsClient,
    bea: WsClient,
}

async fn two_members_in_general(app: &TestApp) -> TwoMembers {
    let token = app.signup("ana").await;
    let mut ana = app.ws(&token).await;
    let mut bea = app.connected("bea").await;
    ana.join("general").await;
    bea.join("general").await;
    let presence = ana.recv().await;
    assert_eq!(
        presence["type"], "presence",
        "ana should see bea arrive: {presence}"
    );
    TwoMembers { token, ana, bea }
}

impl TwoMembers {
    /// Sends a frame that must be refused with `code`, then checks the connection still works
    /// and that nothing was stored in `general`.
    async fn assert_refused(&mut self, app: &TestApp, frame: Message, code: &str) {
        let before = app.history(&self.token, "general").await;
        let shown = format!("{frame:?}");
        self.ana.send_raw(frame).await;
        let got = self.ana.recv_error().await;
        assert_eq!(got, code, "wrong error code for {shown}");
        self.ana.assert_usable().await;
        assert_eq!(
            app.history(&self.token, "general").await,
            before,
            "{shown} stored something"
        );
    }

    /// The sentinel: ana says something and it is the next thing bea sees.
    /// A public room was created: both connections are told that their list of rooms changed
    /// (`rooms_changed`, an extension of the contract).
    async fn heard_of_the_new_public_room(&mut self) {
        for client in [&mut self.ana, &mut self.bea] {
            assert_eq!(client.recv().await, json!({ "type": "rooms_changed" }));
        }
    }

    async fn assert_bea_got_nothing_else(&mut self) {
        let sentinel = self.ana.say("general", "centinela").await;
        self.bea.assert_next(&sentinel).await;
    }
}

fn text(frame: Value) -> Message {
    Message::text(frame.to_string())
}

/// A `send` to `general` with this text.
fn send_general(text: &str) -> Value {
    json!({ "type": "send", "room": "general", "text": text })
}

/// `ts` is RFC 3339 UTC with milliseconds: `2026-01-31T12:34:56.789Z`.
fn assert_contract_timestamp(ts: &str) {
    assert_eq!(ts.len(), 24, "{ts} is not YYYY-MM-DDTHH:MM:SS.mmmZ");
    assert!(
        ts.ends_with('Z') && ts.as_bytes()[19] == b'.',
        "{ts} has no millis or is not UTC"
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
        "{ts} is not RFC 3339"
    );
}

// ----------------------------------------------------------------------------------------------
// join
// ----------------------------------------------------------------------------------------------

async fn joining_answers_joined_with_the_room_the_online_users_and_the_last_50_messages(
    app: TestApp,
) {
    // Arrange
    let token = app.signup("bea").await;
    let stored = app.post_numbered(&token, "general", "mensaje", 55).await;
    let mut bea = app.ws(&token).await;
    bea.join("general").await;
    let mut ana = app.connected("ana").await;

    // Act
    ana.send_json(json!({ "type": "join", "room": "general" }))
        .await;
    let joined = ana.recv().await;

    // Assert
    assert_eq!(joined["type"], "joined");
    assert_eq!(joined["room"], "general");
    assert_eq!(
        joined["online"],
        json!(["ana", "bea"]),
        "online must include the joiner"
    );
    assert_eq!(
        joined["history"].as_array().unwrap(),
        &stored[5..],
        "history must be the last 50 frames"
    );
    assert!(
        joined.get("truncated").is_none() || joined["truncated"] == false,
        "{joined}"
    );
}

async fn joining_a_room_again_answers_joined_again_without_new_presence(app: TestApp) {
    // Arrange
    let TwoMembers {
        mut ana, mut bea, ..
    } = two_members_in_general(&app).await;

    // Act
    let again = ana.join("general").await;

    // Assert
    assert_eq!(again["online"], json!(["ana", "bea"]));
    let sentinel = ana.say("general", "sigo aquí").await;
    bea.assert_next(&sentinel).await;
}

async fn joining_an_unknown_room_is_not_found(app: TestApp) {
    // Arrange
    let mut ana = app.connected("ana").await;

    for room in ["no-existe", "No Es Un Slug", ""] {
        // Act
        ana.send_json(json!({ "type": "join", "room": room })).await;

        // Assert
        assert_eq!(ana.recv_error().await, "not_found", "join {room:?}");
        ana.assert_usable().await;
    }
}

async fn joining_a_private_room_requires_membership(app: TestApp) {
    // Arrange
    let ana_token = app.signup("ana").await;
    assert_eq!(
        app.create_room(&ana_token, "secreta", true).await.status,
        StatusCode::CREATED
    );
    let mut bea = app.connected("bea").await;

    // Act
    bea.send_json(json!({ "type": "join", "room": "secreta" }))
        .await;
    let outsider = bea.recv_error().await;
    let invite = app
        .post(
            "/rooms/secreta/members",
            Some(&ana_token),
            &json!({ "username": "bea" }),
        )
        .await;
    let member = bea.join("secreta").await;

    // Assert
    assert_eq!(outsider, "not_member");
    assert_eq!(invite.status, StatusCode::CREATED, "{:?}", invite.body);
    assert_eq!(member["online"], json!(["bea"]));
}

// ----------------------------------------------------------------------------------------------
// leave
// ----------------------------------------------------------------------------------------------

async fn leaving_answers_left_and_stops_the_messages_of_that_room(app: TestApp) {
    // Arrange: both are also in `otra`, whose messages serve as the sentinel.
    let TwoMembers {
        token,
        mut ana,
        mut bea,
    } = two_members_in_general(&app).await;
    assert_eq!(
        app.create_room(&token, "otra", false).await.status,
        StatusCode::CREATED
    );
    ana.join("otra").await;
    bea.join("otra").await;
    ana.recv_type("presence").await;

    // Act
    ana.send_json(json!({ "type": "leave", "room": "general" }))
        .await;
    let left = ana.recv().await;
    bea.say("general", "ya no me oyes").await;
    let sentinel = bea.say("otra", "aquí sí").await;

    // Assert
    assert_eq!(left, json!({ "type": "left", "room": "general" }));
    ana.assert_next(&sentinel).await;
}

async fn leaving_a_room_not_joined_is_not_member(app: TestApp) {
    // Arrange
    let mut ana = app.connected("ana").await;

    for room in ["general", "no-existe"] {
        // Act
        ana.send_json(json!({ "type": "leave", "room": room }))
            .await;

        // Assert
        assert_eq!(ana.recv_error().await, "not_member", "leave {room}");
        ana.assert_usable().await;
    }
}

// ----------------------------------------------------------------------------------------------
// send, typing, ping
// ----------------------------------------------------------------------------------------------

async fn a_sent_message_reaches_everyone_in_the_room_including_the_sender(app: TestApp) {
    // Arrange: carl is connected but not in the room.
    let TwoMembers {
        token,
        mut ana,
        mut bea,
    } = two_members_in_general(&app).await;
    let mut carl = app.connected("carl").await;

    // Act
    ana.send_json(json!({ "type": "send", "room": "general", "text": "hola", "client_id": "c-1" }))
        .await;
    let to_ana = ana.recv().await;
    let to_bea = bea.recv().await;
    let plain = ana.say("general", "sin client_id").await;

    // Assert
    assert_eq!(to_ana, to_bea);
    let id = id_of(&to_ana);
    assert!(id >= 1);
    let ts = to_ana["ts"].as_str().unwrap();
    assert_contract_timestamp(ts);
    let expected = json!({
        "type": "message", "room": "general", "id": id, "user": "ana", "text": "hola",
        "ts": ts, "client_id": "c-1",
    });
    assert_eq!(to_ana, expected);
    assert_eq!(id_of(&plain), id + 1);
    assert!(
        plain.get("client_id").is_none(),
        "no client_id was sent: {plain}"
    );
    assert_eq!(
        app.history(&token, "general").await,
        vec![to_ana, plain.clone()]
    );
    bea.assert_next(&plain).await;
    // carl's first frame when he joins is `joined`: nothing leaked to him before.
    carl.send_json(json!({ "type": "join", "room": "general" }))
        .await;
    assert_eq!(carl.recv().await["type"], "joined");
}

async fn text_is_stored_and_sent_exactly_as_received(app: TestApp) {
    // Arrange
    let TwoMembers {
        token,
        mut ana,
        mut bea,
    } = two_members_in_general(&app).await;
    let texts = [
        "  espacios delante y detrás  ",
        "línea 1\nlínea 2\r\n\tcon tabulador",
        "comillas \"dobles\", 'simples' y \\barras\\",
        "emoji 🎉 familia 👩‍👩‍👧 bandera 🇪🇸",
        "ñandú, acción, Ünïcödé, 日本語, العربية",
        "<script>alert(1)</script> & &amp; {\"json\": true}",
        "nulo \u{0} y control \u{1b}[0m",
    ];

    for text in texts {
        // Act
        ana.send_json(send_general(text)).await;
        let to_ana = ana.recv().await;
        let to_bea = bea.recv().await;

        // Assert
        assert_eq!(to_ana["text"], text);
        assert_eq!(to_bea["text"], text);
    }
    let history = app.history(&token, "general").await;
    let stored: Vec<&str> = history
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(stored, texts);
}

async fn typing_reaches_the_other_users_but_not_the_sender_and_is_not_stored(app: TestApp) {
    // Arrange: ana has a second tab in the room.
    let TwoMembers {
        token,
        mut ana,
        mut bea,
    } = two_members_in_general(&app).await;
    let mut ana_tab = app.ws(&token).await;
    ana_tab.join("general").await;

    // Act
    ana.send_json(json!({ "type": "typing", "room": "general" }))
        .await;
    let to_bea = bea.recv().await;
    let sentinel = ana.say("general", "ya escribí").await;

    // Assert
    assert_eq!(
        to_bea,
        json!({ "type": "typing", "room": "general", "user": "ana" })
    );
    bea.assert_next(&sentinel).await;
    ana_tab.assert_next(&sentinel).await;
    assert_eq!(app.history(&token, "general").await, vec![sentinel]);
}

async fn ping_answers_pong(app: TestApp) {
    // Arrange
    let mut ana = app.connected("ana").await;

    // Act
    ana.send_json(json!({ "type": "ping" })).await;

    // Assert
    assert_eq!(ana.recv().await, json!({ "type": "pong" }));
}

// ----------------------------------------------------------------------------------------------
// presence
// ----------------------------------------------------------------------------------------------

async fn presence_follows_a_users_first_and_last_connection_in_the_room(app: TestApp) {
    // Arrange
    let mut bea = app.connected("bea").await;
    bea.join("general").await;
    let ana_token = app.signup("ana").await;
    let mut tab1 = app.ws(&ana_token).await;
    let mut tab2 = app.ws(&ana_token).await;
    let online =
        json!({ "type": "presence", "room": "general", "user": "ana", "status": "online" });
    let offline =
        json!({ "type": "presence", "room": "general", "user": "ana", "status": "offline" });

    // Act + Assert: the first tab joining is news.
    tab1.join("general").await;
    bea.assert_next(&online).await;

    // The second tab is not, and neither is the first leaving while the second stays.
    let second = tab2.join("general").await;
    assert_eq!(second["online"], json!(["ana", "bea"]));
    tab1.send_json(json!({ "type": "leave", "room": "general" }))
        .await;
    tab1.recv_type("left").await;
    let sentinel = tab2.say("general", "sigo aquí").await;
    bea.assert_next(&sentinel).await;

    // The last one leaving is.
    tab2.send_json(json!({ "type": "leave", "room": "general" }))
        .await;
    tab2.recv_type("left").await;
    bea.assert_next(&offline).await;
}

async fn a_user_goes_offline_when_their_last_socket_disconnects(app: TestApp) {
    // Arrange
    let mut bea = app.connected("bea").await;
    bea.join("general").await;
    let mut ana = app.connected("ana").await;
    ana.join("general").await;
    assert_eq!(bea.recv().await["status"], "online");

    // Act: the socket just goes away, without a leave.
    drop(ana);

    // Assert
    let offline =
        json!({ "type": "presence", "room": "general", "user": "ana", "status": "offline" });
    bea.assert_next(&offline).await;
    let joined = bea.join("general").await;
    assert_eq!(joined["online"], json!(["bea"]));
}

// ----------------------------------------------------------------------------------------------
// errors: each bad frame gets its code, the connection stays usable, and nothing changes
// ----------------------------------------------------------------------------------------------

async fn frames_that_are_not_objects_with_a_string_type_are_invalid_frame(app: TestApp) {
    // Arrange
    let mut room = two_members_in_general(&app).await;
    let frames = [
        "hola",
        "",
        "{",
        "[1,2]",
        "[{\"type\":\"ping\"}]",
        "\"ping\"",
        "null",
        "42",
        "{}",
        "{\"room\":\"general\",\"text\":\"hola\"}",
        "{\"type\":7}",
        "{\"type\":null}",
        "{\"type\":[\"send\"]}",
        "{\"type\":{\"send\":true}}",
    ];

    for frame in frames {
        // Act + Assert
        room.assert_refused(&app, Message::text(frame), "invalid_frame")
            .await;
    }
    room.assert_bea_got_nothing_else().await;
}

async fn frames_with_missing_or_mistyped_fields_are_invalid_frame(app: TestApp) {
    // Arrange
    let mut room = two_members_in_general(&app).await;
    let frames = [
        json!({ "type": "join" }),
        json!({ "type": "join", "room": 5 }),
        json!({ "type": "join", "room": "general", "since": -1 }),
        json!({ "type": "join", "room": "general", "since": "3" }),
        json!({ "type": "join", "room": "general", "since": 1.5 }),
        json!({ "type": "join", "room": "general", "epoch": 5 }),
        json!({ "type": "join", "room": "general", "epoch": null }),
        json!({ "type": "join", "room": "general", "epoch": ["e"] }),
        json!({ "type": "join", "room": "general", "since": 1, "epoch": { "e": 1 } }),
        json!({ "type": "send", "room": "general" }),
        json!({ "type": "send", "text": "hola" }),
        json!({ "type": "send", "room": "general", "text": 3 }),
        json!({ "type": "send", "room": "general", "text": null }),
        json!({ "type": "send", "room": ["general"], "text": "hola" }),
        json!({ "type": "send", "room": "general", "text": "hola", "client_id": 7 }),
        json!({ "type": "leave" }),
        json!({ "type": "typing", "room": false }),
    ];

    for frame in frames {
        // Act + Assert
        room.assert_refused(&app, text(frame), "invalid_frame")
            .await;
    }
    room.assert_bea_got_nothing_else().await;
}

async fn a_client_id_must_have_1_to_128_characters(app: TestApp) {
    // Arrange
    let mut room = two_members_in_general(&app).await;
    let with_client_id =
        |id: String| json!({ "type": "send", "room": "general", "text": "hola", "client_id": id });

    // Act + Assert: too short or too long, counted in characters.
    for id in [String::new(), "x".repeat(129), "ñ".repeat(129)] {
        room.assert_refused(&app, text(with_client_id(id)), "invalid_frame")
            .await;
    }
    room.assert_bea_got_nothing_else().await;

    // 128 characters (256 bytes) is fine.
    room.ana.send_json(with_client_id("ñ".repeat(128))).await;
    let stored = room.ana.recv().await;
    assert_eq!(stored["client_id"], "ñ".repeat(128));
}

async fn a_binary_frame_is_invalid_frame(app: TestApp) {
    // Arrange: even a binary frame that holds a valid send.
    let mut room = two_members_in_general(&app).await;
    let frame = Message::binary(send_general("en binario").to_string().into_bytes());

    // Act + Assert
    room.assert_refused(&app, frame, "invalid_frame").await;
    room.assert_bea_got_nothing_else().await;
}

async fn an_unknown_type_is_unknown_type(app: TestApp) {
    // Arrange
    let mut room = two_members_in_general(&app).await;

    for frame in [
        json!({ "type": "dance" }),
        json!({ "type": "JOIN", "room": "general" }),
        json!({ "type": "" }),
        json!({ "type": "message", "room": "general", "text": "hola" }),
    ] {
        // Act + Assert
        room.assert_refused(&app, text(frame), "unknown_type").await;
    }
    room.assert_bea_got_nothing_else().await;
}

async fn send_typing_and_leave_for_a_room_not_joined_are_not_member(app: TestApp) {
    // Arrange: `otra` exists and bea is in it; ana is only in `general`.
    let mut room = two_members_in_general(&app).await;
    assert_eq!(
        app.create_room(&room.token, "otra", false).await.status,
        StatusCode::CREATED
    );
    room.heard_of_the_new_public_room().await;
    room.bea.join("otra").await;

    for frame in [
        json!({ "type": "send", "room": "otra", "text": "hola" }),
        json!({ "type": "typing", "room": "otra" }),
        json!({ "type": "leave", "room": "otra" }),
    ] {
        // Act + Assert
        room.assert_refused(&app, text(frame), "not_member").await;
    }
    assert!(app.history(&room.token, "otra").await.is_empty());
    room.assert_bea_got_nothing_else().await;
}

async fn send_and_typing_to_a_room_that_does_not_exist_are_not_found_but_leave_is_not_member(
    app: TestApp,
) {
    // Arrange
    let mut room = two_members_in_general(&app).await;

    for target in ["no-existe", "No Es Un Slug", ""] {
        for frame in [
            json!({ "type": "send", "room": target, "text": "hola" }),
            json!({ "type": "typing", "room": target }),
        ] {
            // Act + Assert
            room.assert_refused(&app, text(frame), "not_found").await;
        }
        // Leaving a room that does not exist is leaving a room not joined.
        let leave = json!({ "type": "leave", "room": target });
        room.assert_refused(&app, text(leave), "not_member").await;
    }
    room.assert_bea_got_nothing_else().await;
}

async fn a_frame_is_checked_for_shape_then_existence_then_membership_then_content(app: TestApp) {
    // Arrange: `otra` exists and ana has not joined it; `secreta` is private and not hers.
    let mut room = two_members_in_general(&app).await;
    let bea_token = app.signup("carl").await;
    for (id, private) in [("otra", false), ("secreta", true)] {
        let created = app.create_room(&bea_token, id, private).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    }
    room.heard_of_the_new_public_room().await;
    let cases = [
        // The shape comes before the room's existence…
        (
            json!({ "type": "send", "room": "no-existe", "text": 5 }),
            "invalid_frame",
        ),
        (
            json!({ "type": "typing", "room": "no-existe", "extra": [] }),
            "not_found",
        ),
        // …existence before membership and content…
        (
            json!({ "type": "send", "room": "no-existe", "text": "" }),
            "not_found",
        ),
        (
            json!({ "type": "send", "room": "no-existe", "text": "x".repeat(4001) }),
            "not_found",
        ),
        // …and membership before content.
        (
            json!({ "type": "send", "room": "otra", "text": "" }),
            "not_member",
        ),
        (
            json!({ "type": "send", "room": "secreta", "text": " " }),
            "not_member",
        ),
        (
            json!({ "type": "send", "room": "secreta", "text": "x".repeat(4001) }),
            "not_member",
        ),
        (
            json!({ "type": "send", "room": "general", "text": "" }),
            "empty_text",
        ),
    ];

    for (frame, code) in cases {
        // Act + Assert
        room.assert_refused(&app, text(frame), code).await;
    }
    room.assert_bea_got_nothing_else().await;
}

/// The `room` and `client_id` an error frame carries (`None` when absent).
type Repeated<'a> = (Option<&'a str>, Option<&'a str>);

fn repeated(error: &Value) -> Repeated<'_> {
    (error["room"].as_str(), error["client_id"].as_str())
}

async fn error_frames_repeat_the_room_and_client_id_of_the_frame_that_caused_them(app: TestApp) {
    // Arrange
    let mut room = two_members_in_general(&app).await;
    let cases: [(Message, &str, Repeated<'_>); 10] = [
        (
            text(json!({ "type": "send", "room": "general", "text": " ", "client_id": "c-1" })),
            "empty_text",
            (Some("general"), Some("c-1")),
        ),
        (
            text(
                json!({ "type": "send", "room": "no-existe", "text": "hola", "client_id": "c-2" }),
            ),
            "not_found",
            (Some("no-existe"), Some("c-2")),
        ),
        (
            text(json!({ "type": "send", "room": "general", "text": 3, "client_id": "c-3" })),
            "invalid_frame",
            (Some("general"), Some("c-3")),
        ),
        (
            text(json!({ "type": "send", "room": "general", "text": "hola", "client_id": "" })),
            "invalid_frame",
            (Some("general"), Some("")),
        ),
        (
            text(json!({ "type": "send", "room": 5, "text": "hola", "client_id": 7 })),
            "invalid_frame",
            (None, None),
        ),
        (
            text(json!({ "type": "dance", "room": "general", "client_id": "c-4" })),
            "unknown_type",
            (Some("general"), Some("c-4")),
        ),
        (
            text(json!({ "type": "leave", "room": "otra" })),
            "not_member",
            (Some("otra"), None),
        ),
        (
            text(json!({ "type": "join", "room": "No Es Un Slug" })),
            "not_found",
            (Some("No Es Un Slug"), None),
        ),
        (
            Message::text("{\"room\":\"general\""),
            "invalid_frame",
            (None, None),
        ),
        (
            Message::binary(send_general("en binario").to_string().into_bytes()),
            "invalid_frame",
            (None, None),
        ),
    ];

    for (frame, code, expected) in cases {
        // Act
        let shown = format!("{frame:?}");
        room.ana.send_raw(frame).await;
        let error = room.ana.recv().await;

        // Assert
        assert_eq!(error["type"], "error", "{shown}: {error}");
        assert_eq!(error["code"], code, "{shown}: {error}");
        assert!(error["message"].is_string(), "{shown}: {error}");
        assert_eq!(repeated(&error), expected, "{shown}: {error}");
    }
    room.ana.assert_usable().await;
    room.assert_bea_got_nothing_else().await;
}

async fn empty_and_whitespace_only_texts_are_empty_text(app: TestApp) {
    // Arrange
    let mut room = two_members_in_general(&app).await;

    for blank in ["", " ", "   \n\t\r\n ", "\u{3000}", "\u{a0}\u{2003}"] {
        // Act + Assert
        room.assert_refused(&app, text(send_general(blank)), "empty_text")
            .await;
    }
    room.assert_bea_got_nothing_else().await;
}

async fn texts_over_4000_code_points_are_too_long_even_if_shorter_in_bytes(app: TestApp) {
    // Arrange
    let mut room = two_members_in_general(&app).await;

    for char in ['a', 'ñ', '🎉'] {
        // Act + Assert
        let long = char.to_string().repeat(4001);
        room.assert_refused(&app, text(send_general(&long)), "too_long")
            .await;
    }
    room.assert_bea_got_nothing_else().await;
}

async fn texts_of_4000_multibyte_characters_are_accepted(app: TestApp) {
    // Arrange
    let mut room = two_members_in_general(&app).await;

    for char in ['ñ', '🎉'] {
        // Act: 8,000 and 16,000 bytes, but 4,000 code points.
        let text = char.to_string().repeat(4000);
        room.ana.send_json(send_general(&text)).await;

        // Assert
        assert_eq!(room.ana.recv().await["text"], text);
        assert_eq!(room.bea.recv().await["text"], text);
    }
    assert_eq!(app.history(&room.token, "general").await.len(), 2);
}

crate::on_both_backends!(
    joining_answers_joined_with_the_room_the_online_users_and_the_last_50_messages,
    joining_a_room_again_answers_joined_again_without_new_presence,
    joining_an_unknown_room_is_not_found,
    joining_a_private_room_requires_membership,
    leaving_answers_left_and_stops_the_messages_of_that_room,
    leaving_a_room_not_joined_is_not_member,
    a_sent_message_reaches_everyone_in_the_room_including_the_sender,
    text_is_stored_and_sent_exactly_as_received,
    typing_reaches_the_other_users_but_not_the_sender_and_is_not_stored,
    ping_answers_pong,
    presence_follows_a_users_first_and_last_connection_in_the_room,
    a_user_goes_offline_when_their_last_socket_disconnects,
    frames_that_are_not_objects_with_a_string_type_are_invalid_frame,
    frames_with_missing_or_mistyped_fields_are_invalid_frame,
    a_client_id_must_have_1_to_128_characters,
    a_binary_frame_is_invalid_frame,
    an_unknown_type_is_unknown_type,
    send_typing_and_leave_for_a_room_not_joined_are_not_member,
    send_and_typing_to_a_room_that_does_not_exist_are_not_found_but_leave_is_not_member,
    a_frame_is_checked_for_shape_then_existence_then_membership_then_content,
    error_frames_repeat_the_room_and_client_id_of_the_frame_that_caused_them,
    empty_and_whitespace_only_texts_are_empty_text,
    texts_over_4000_code_points_are_too_long_even_if_shorter_in_bytes,
    texts_of_4000_multibyte_characters_are_accepted,
);
