//! Rooms over REST: list, create, private rooms, invitations and history pages.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::http_basics::{assert_error, assert_history_query_is_invalid_input};

/// How long a count in `GET /rooms` may lag (the contract's cache TTL is at most 5 s).
const CACHE_LAG: Duration = Duration::from_secs(6);

/// `GET /rooms` as `token`, asserting a 200 with a list.
async fn rooms(app: &TestApp, token: &str) -> Vec<Value> {
    let answer = app.get("/rooms", Some(token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    answer.body.as_array().unwrap().clone()
}

/// The room `id` as `GET /rooms` shows it to `token`, if it is shown.
async fn listed(app: &TestApp, token: &str, id: &str) -> Option<Value> {
    rooms(app, token)
        .await
        .into_iter()
        .find(|room| room["id"] == id)
}

/// Polls `GET /rooms` until the room `id` satisfies `ok` (counts may lag up to the cache TTL).
async fn eventually_listed(
    app: &TestApp,
    token: &str,
    id: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + CACHE_LAG;
    loop {
        let room = listed(app, token, id).await;
        match room {
            Some(room) if ok(&room) => return room,
            _ if tokio::time::Instant::now() > deadline => {
                panic!("room {id} never reached the expected state; last seen: {room:?}")
            }
            // The list is cached: polled until the cache has caught up.
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// `POST /rooms/{room}/members` as `token`.
async fn invite(app: &TestApp, token: &str, room: &str, username: &str) -> Answer {
    app.post(
        &format!("/rooms/{room}/members"),
        Some(token),
        &json!({ "username": username }),
    )
    .await
}

/// Sends `count` messages `"mensaje {n}"` to `room` as the user of `token` (who may use the
/// room) and returns the `message` frames as they arrived live, in order.
///
/// Each batch goes through a fresh connection, which starts with a full burst, so no send is
/// rate limited; the connection closes only once its own frames are all back (a `leave` right
/// after the sends could overtake frames still queued for this connection).
async fn fill(app: &TestApp, token: &str, room: &str, count: usize) -> Vec<Value> {
    let mut frames = Vec::with_capacity(count);
    while frames.len() < count {
        let batch = (count - frames.len()).min(SENDS_PER_BURST);
        let mut ws = app.ws(token).await;
        ws.join(room).await;
        for n in 0..batch {
            let text = format!("mensaje {}", frames.len() + n + 1);
            ws.send_json(json!({ "type": "send", "room": room, "text": text }))
                .await;
        }
        let mut received = 0;
        while received < batch {
            let frame = ws.recv().await;
            match frame["type"].as_str() {
                Some("message") => {
                    frames.push(frame);
                    received += 1;
                }
                Some("error") => panic!("a send was refused while filling {room}: {frame}"),
                _ => {}
            }
        }
        let _ = ws.stream.close(None).await;
    }
    frames
}

/// One page of `GET /rooms/{room}/messages?{query}`: its ids and `has_more`, checking that it is
/// a 200 of the contract's shape, ascending by id.
async fn page(app: &TestApp, token: &str, room: &str, query: &str) -> (Vec<u64>, bool) {
    let answer = app
        .get(&format!("/rooms/{room}/messages?{query}"), Some(token))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "?{query}: {answer:?}");
    let messages = answer.body["messages"]
        .as_array()
        .unwrap_or_else(|| panic!("?{query}: `messages` is a list: {answer:?}"));
    let has_more = answer.body["has_more"]
        .as_bool()
        .unwrap_or_else(|| panic!("?{query}: `has_more` is a boolean: {answer:?}"));
    let page = ids_of(messages);
    assert!(
        page.windows(2).all(|pair| pair[0] < pair[1]),
        "?{query}: ascending by id, got {page:?}"
    );
    (page, has_more)
}

// ---------------------------------------------------------------------------------------------
// Listing and creating
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn listing_rooms_needs_a_valid_token() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();

    // Act
    let anonymous = app.get("/rooms", None).await;
    let forged = app.get("/rooms", Some("no.es.token")).await;

    // Assert
    assert_error(&anonymous, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_error(&forged, StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn the_list_shows_general_with_integer_counts(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;

    // Act
    let list = rooms(&app, &token).await;

    // Assert
    let general = list
        .iter()
        .find(|room| room["id"] == "general")
        .unwrap_or_else(|| panic!("general always exists: {list:?}"));
    let mut keys: Vec<&String> = general.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["id", "members", "name", "online", "private"]);
    assert!(!general["name"].as_str().unwrap().is_empty());
    assert_eq!(general["private"], false);
    assert!(general["members"].is_u64(), "{general}");
    assert_eq!(general["online"], 0, "nobody is connected yet: {general}");
}

async fn joining_a_public_room_makes_a_member_for_good_and_online_while_connected(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    let before = listed(&app, &token, "general").await.unwrap();
    let members_before = before["members"].as_u64().unwrap();

    // Act: two connections of the same user join.
    let mut first = app.ws(&token).await;
    first.join("general").await;
    let mut second = app.ws(&token).await;
    second.join("general").await;

    // Assert: one member more, one user online, however many connections.
    let joined = eventually_listed(&app, &token, "general", |room| room["online"] == 1).await;
    assert_eq!(joined["members"], members_before + 1, "{joined}");

    // Leaving ends the presence, not the membership.
    drop(first);
    drop(second);
    let left = eventually_listed(&app, &token, "general", |room| room["online"] == 0).await;
    assert_eq!(left["members"], members_before + 1, "{left}");
}

async fn creating_a_room_answers_201_with_the_room_and_its_creator_as_member(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;

    // Act
    let answer = app
        .post(
            "/rooms",
            Some(&token),
            &json!({ "id": "sala-1", "name": "Sala Uno", "private": false }),
        )
        .await;

    // Assert
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    let expected =
        json!({ "id": "sala-1", "name": "Sala Uno", "private": false, "members": 1, "online": 0 });
    assert_eq!(answer.body, expected);
    let other = app.signup("bea").await;
    assert_eq!(listed(&app, &other, "sala-1").await, Some(expected));
}

async fn creating_a_private_room_answers_201_with_private_true(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;

    // Act
    let answer = app.create_room(&token, "secreta", true).await;

    // Assert
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    assert_eq!(answer.body["id"], "secreta");
    assert_eq!(answer.body["private"], true);
    assert_eq!(answer.body["members"], 1);
}

async fn creating_a_room_that_exists_is_a_conflict(app: TestApp) {
    // Arrange
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    app.create_room(&ana, "sala-1", false).await;

    // Act
    let same_user = app.create_room(&ana, "sala-1", false).await;
    let other_user = app.create_room(&bea, "sala-1", true).await;

    // Assert
    assert_error(&same_user, StatusCode::CONFLICT, "conflict");
    assert_error(&other_user, StatusCode::CONFLICT, "conflict");
    // The room is still the first one: public, created by ana.
    let room = listed(&app, &bea, "sala-1").await.unwrap();
    assert_eq!(room["private"], false);
    assert_eq!(room["members"], 1);
}

async fn creating_general_is_a_conflict(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;

    // Act
    let answer = app.create_room(&token, "general", true).await;

    // Assert
    assert_error(&answer, StatusCode::CONFLICT, "conflict");
    assert_eq!(
        listed(&app, &token, "general").await.unwrap()["private"],
        false
    );
}

#[tokio::test]
async fn creating_a_room_needs_a_token() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();

    // Act
    let answer = app
        .post(
            "/rooms",
            None,
            &json!({ "id": "sala", "name": "Sala", "private": false }),
        )
        .await;

    // Assert
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_room_id_that_is_not_a_slug_is_invalid_input() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;
    let invalid = [
        String::new(),
        "Sala".to_owned(),
        "sala_1".to_owned(),
        "sala 1".to_owned(),
        "sala/1".to_owned(),
        "sala.1".to_owned(),
        "ñandú".to_owned(),
        "a".repeat(33),
    ];

    for id in invalid {
        // Act
        let answer = app
            .post(
                "/rooms",
                Some(&token),
                &json!({ "id": id, "name": "Sala", "private": false }),
            )
            .await;

        // Assert
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{id:?} is refused"
        );
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
    // Nothing was created.
    let list = rooms(&app, &token).await;
    assert_eq!(list.len(), 1, "only general: {list:?}");
}

#[tokio::test]
async fn slugs_at_the_limits_are_accepted() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;

    for id in ["a", "7", "-", "sala-1-b", &"z".repeat(32)] {
        // Act
        let answer = app.create_room(&token, id, false).await;

        // Assert
        assert_eq!(answer.status, StatusCode::CREATED, "{id:?}: {answer:?}");
        assert_eq!(answer.body["id"], id);
    }
}

#[tokio::test]
async fn an_empty_room_name_is_invalid_input() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;

    for name in ["", "   ", "\t\n"] {
        // Act
        let answer = app
            .post(
                "/rooms",
                Some(&token),
                &json!({ "id": "sin-nombre", "name": name, "private": false }),
            )
            .await;

        // Assert
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
    assert_eq!(listed(&app, &token, "sin-nombre").await, None);
}

#[tokio::test]
async fn a_room_name_with_control_or_bidi_override_characters_is_invalid_input() {
    // Arrange: each could forge a log line or an e-mail header (CR/LF, NUL), repaint a
    // terminal (ANSI escapes), or show a name backwards (bidi overrides and isolates).
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;
    let names = [
        "Sala\u{0}nula",
        "Sala\r\nX-Falso: 1",
        "\u{1b}[31mroja\u{1b}[0m",
        "Sala\u{7f}",
        "Sala\u{85}C1",
        "Sala\u{9b}31m",
        "Pagos \u{202E}fdp.exe",
        "\u{202A}Sala",
        "\u{202B}Sala",
        "\u{202C}Sala",
        "\u{202D}Sala",
        "Sala \u{2066}x",
        "Sala \u{2067}x",
        "Sala \u{2068}x",
        "Sala \u{2069}",
        "\u{200B}\u{200B}\u{2060}",
    ];

    for (n, name) in names.into_iter().enumerate() {
        // Act
        let id = format!("sala-{n}");
        let answer = app
            .post(
                "/rooms",
                Some(&token),
                &json!({ "id": id, "name": name, "private": false }),
            )
            .await;

        // Assert
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name:?} is refused: {answer:?}"
        );
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        assert_eq!(listed(&app, &token, &id).await, None);
    }
}

#[tokio::test]
async fn room_names_in_any_script_with_emoji_and_bidi_marks_are_accepted() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;

    for (n, name) in [
        "Café ☕",
        "日本語のチャット",
        "שלום\u{200F} עולם",
        "🎉 Fiesta 🎉",
    ]
    .into_iter()
    .enumerate()
    {
        // Act
        let answer = app
            .post(
                "/rooms",
                Some(&token),
                &json!({ "id": format!("sala-{n}"), "name": name, "private": false }),
            )
            .await;

        // Assert
        assert_eq!(answer.status, StatusCode::CREATED, "{name:?}: {answer:?}");
        assert_eq!(answer.body["name"], name);
    }
}

async fn a_text_with_no_visible_character_is_empty_text_and_not_stored(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    let mut ana = app.ws(&token).await;
    ana.join("general").await;
    let invisible = [
        "\u{200B}",
        "\u{200B}\u{200C}\u{200D}\u{2060}\u{FEFF}",
        " \u{00A0}\u{3000}\u{2028}\t",
        "\u{202E}\u{2066}\u{E0041}\u{FE0F}\u{AD}\u{3164}",
    ];

    for text in invisible {
        // Act
        ana.send_json(json!({ "type": "send", "room": "general", "text": text }))
            .await;

        // Assert
        assert_eq!(ana.recv_error().await, "empty_text", "{text:?}");
    }
    // A lone combining mark is visible: it is stored, and nothing before it was.
    let mark = ana.say("general", "\u{301}").await;
    assert_eq!(mark["text"], "\u{301}");
    let history = app.history(&token, "general").await;
    assert_eq!(history.len(), 1, "{history:?}");
}

/// Asserts the 429 of the room-creation limit, with a `Retry-After` of 1 to 3600 whole seconds.
fn assert_room_limit(answer: &Answer) {
    assert_error(answer, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let seconds: u64 = answer
        .headers
        .get(reqwest::header::RETRY_AFTER)
        .unwrap_or_else(|| panic!("a 429 carries Retry-After: {answer:?}"))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=3600).contains(&seconds),
        "Retry-After is 1–3600 s, got {seconds}"
    );
}

async fn a_user_creates_at_most_30_rooms_an_hour_and_refused_attempts_do_not_count(app: TestApp) {
    // Arrange: 29 rooms, then attempts that are refused for other reasons (a taken id, an
    // invalid name): they must not use up the 30th.
    let ana = app.signup("ana").await;
    for n in 0..29 {
        let answer = app.create_room(&ana, &format!("ana-{n}"), n % 2 == 0).await;
        assert_eq!(answer.status, StatusCode::CREATED, "room {n}: {answer:?}");
    }
    assert_eq!(
        app.create_room(&ana, "ana-0", false).await.status,
        StatusCode::CONFLICT
    );
    let bad_name = json!({ "id": "ana-x", "name": "\u{0}", "private": false });
    assert_eq!(
        app.post("/rooms", Some(&ana), &bad_name).await.status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        app.create_room(&ana, "ana-29", false).await.status,
        StatusCode::CREATED
    );

    // Act
    let over = app.create_room(&ana, "ana-30", true).await;
    let again = app.create_room(&ana, "ana-31", false).await;

    // Assert
    assert_room_limit(&over);
    assert_room_limit(&again);
    assert_eq!(
        listed(&app, &ana, "ana-30").await,
        None,
        "a refused room does not exist"
    );
    // Counted per user; admins are exempt.
    let bea = app.signup("bea").await;
    assert_eq!(
        app.create_room(&bea, "bea-0", false).await.status,
        StatusCode::CREATED
    );
    let admin = app.admin_token().await;
    for n in 0..31 {
        let answer = app.create_room(&admin, &format!("admin-{n}"), false).await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "admin room {n}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn the_room_creation_limit_is_configurable() {
    // Arrange
    let mut config = test_config(Backend::Memory).await.unwrap();
    config.rooms_per_hour = 2;
    let app = spawn_app_with(config).await;
    let ana = app.signup("ana").await;
    for id in ["uno", "dos"] {
        assert_eq!(
            app.create_room(&ana, id, false).await.status,
            StatusCode::CREATED
        );
    }

    // Act
    let answer = app.create_room(&ana, "tres", false).await;

    // Assert
    assert_room_limit(&answer);
}

#[tokio::test]
async fn the_room_creation_limit_holds_across_two_nodes() {
    // Arrange: two nodes of one cluster; ana creates 15 rooms on each.
    let Some(config) = test_config(Backend::Redis).await else {
        return;
    };
    let node_a = spawn_app_with(config.clone()).await;
    let node_b = spawn_app_with(config).await;
    let ana = node_a.signup("ana").await;
    for n in 0..15 {
        assert_eq!(
            node_a
                .create_room(&ana, &format!("a-{n}"), false)
                .await
                .status,
            StatusCode::CREATED
        );
        assert_eq!(
            node_b
                .create_room(&ana, &format!("b-{n}"), false)
                .await
                .status,
            StatusCode::CREATED
        );
    }

    // Act
    let on_a = node_a.create_room(&ana, "a-15", false).await;
    let on_b = node_b.create_room(&ana, "b-15", false).await;

    // Assert
    assert_room_limit(&on_a);
    assert_room_limit(&on_b);
}

// ---------------------------------------------------------------------------------------------
// Private rooms and invitations
// ---------------------------------------------------------------------------------------------

async fn a_private_room_is_listed_to_its_members_only(app: TestApp) {
    // Arrange
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    app.create_room(&ana, "publica", false).await;

    // Act
    app.create_room(&ana, "secreta", true).await;

    // Assert
    assert!(
        listed(&app, &ana, "secreta").await.is_some(),
        "the creator sees it"
    );
    assert_eq!(
        listed(&app, &bea, "secreta").await,
        None,
        "a stranger does not"
    );
    assert!(
        listed(&app, &bea, "publica").await.is_some(),
        "public rooms are listed to everyone"
    );
    assert!(listed(&app, &bea, "general").await.is_some());
}

async fn an_invited_user_sees_the_private_room_with_two_members(app: TestApp) {
    // Arrange
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    let eva = app.signup("eva").await;
    app.create_room(&ana, "secreta", true).await;

    // Act
    let answer = invite(&app, &ana, "secreta", "bea").await;

    // Assert
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    let room = eventually_listed(&app, &bea, "secreta", |room| room["members"] == 2).await;
    assert_eq!(room["private"], true);
    assert_eq!(listed(&app, &eva, "secreta").await, None);
}

async fn inviting_to_an_unknown_room_is_not_found_first(app: TestApp) {
    // Arrange: every later check would fail too (no creator, unknown user).
    let bea = app.signup("bea").await;

    // Act
    let answer = invite(&app, &bea, "no-existe", "nadie").await;

    // Assert
    assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
}

async fn inviting_to_a_public_room_is_a_conflict_before_the_caller_and_user_checks(app: TestApp) {
    // Arrange: bea did not create the room, and `nadie` does not exist.
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    app.create_room(&ana, "publica", false).await;

    // Act
    let by_stranger = invite(&app, &bea, "publica", "nadie").await;
    let by_creator = invite(&app, &ana, "publica", "bea").await;
    let into_general = invite(&app, &bea, "general", "ana").await;

    // Assert
    assert_error(&by_stranger, StatusCode::CONFLICT, "conflict");
    assert_error(&by_creator, StatusCode::CONFLICT, "conflict");
    assert_error(&into_general, StatusCode::CONFLICT, "conflict");
}

async fn a_caller_who_is_neither_creator_nor_admin_is_forbidden_before_the_user_check(
    app: TestApp,
) {
    // Arrange
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    app.signup("eva").await;
    app.create_room(&ana, "secreta", true).await;

    // Act
    let unknown_user = invite(&app, &bea, "secreta", "nadie").await;
    let known_user = invite(&app, &bea, "secreta", "eva").await;

    // Assert
    assert_error(&unknown_user, StatusCode::FORBIDDEN, "forbidden");
    assert_error(&known_user, StatusCode::FORBIDDEN, "forbidden");
    let eva = app.token("eva", PASSWORD).await;
    assert_eq!(
        listed(&app, &eva, "secreta").await,
        None,
        "eva was not added"
    );
}

async fn an_invited_member_who_did_not_create_the_room_may_not_invite(app: TestApp) {
    // Arrange
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    app.signup("eva").await;
    app.create_room(&ana, "secreta", true).await;
    invite(&app, &ana, "secreta", "bea").await;

    // Act
    let answer = invite(&app, &bea, "secreta", "eva").await;

    // Assert
    assert_error(&answer, StatusCode::FORBIDDEN, "forbidden");
}

async fn inviting_an_unknown_user_is_not_found(app: TestApp) {
    // Arrange
    let ana = app.signup("ana").await;
    app.create_room(&ana, "secreta", true).await;

    // Act
    let unknown = invite(&app, &ana, "secreta", "nadie").await;
    let not_a_username = invite(&app, &ana, "secreta", "No Existe!").await;

    // Assert
    assert_error(&unknown, StatusCode::NOT_FOUND, "not_found");
    assert_error(&not_a_username, StatusCode::NOT_FOUND, "not_found");
}

async fn the_first_invitation_is_201_and_a_repeat_is_200(app: TestApp) {
    // Arrange
    let ana = app.signup("ana").await;
    app.signup("bea").await;
    app.create_room(&ana, "secreta", true).await;

    // Act
    let first = invite(&app, &ana, "secreta", "bea").await;
    let again = invite(&app, &ana, "secreta", "bea").await;

    // Assert
    let expected = json!({ "room": "secreta", "username": "bea" });
    assert_eq!(first.status, StatusCode::CREATED, "{first:?}");
    assert_eq!(first.body, expected);
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(again.body, expected);
    let room = listed(&app, &ana, "secreta").await.unwrap();
    assert_eq!(room["members"], 2, "a repeat adds nobody: {room}");
}

async fn inviting_the_creator_to_their_own_room_is_200(app: TestApp) {
    // Arrange
    let ana = app.signup("ana").await;
    app.create_room(&ana, "secreta", true).await;

    // Act
    let answer = invite(&app, &ana, "secreta", "ana").await;

    // Assert: the creator is a member already.
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body, json!({ "room": "secreta", "username": "ana" }));
}

async fn an_admin_may_invite_to_a_private_room_they_did_not_create(app: TestApp) {
    // Arrange
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    let admin = app.admin_token().await;
    app.create_room(&ana, "secreta", true).await;

    // Act
    let answer = invite(&app, &admin, "secreta", "bea").await;

    // Assert
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    assert_eq!(answer.body, json!({ "room": "secreta", "username": "bea" }));
    assert!(listed(&app, &bea, "secreta").await.is_some());
}

#[tokio::test]
async fn inviting_needs_a_token() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let ana = app.signup("ana").await;
    app.create_room(&ana, "secreta", true).await;

    // Act
    let answer = app
        .post(
            "/rooms/secreta/members",
            None,
            &json!({ "username": "ana" }),
        )
        .await;

    // Assert
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

// ---------------------------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------------------------

async fn history_pages_follow_every_cursor_rule(app: TestApp) {
    // Arrange: 10 messages in a room of their own; cursors come from their real ids.
    let token = app.signup("ana").await;
    app.create_room(&token, "historia", false).await;
    let id = ids_of(&fill(&app, &token, "historia", 10).await);
    assert!(
        id.windows(2).all(|pair| pair[0] < pair[1]),
        "ids increase: {id:?}"
    );
    let slice = |range: std::ops::Range<usize>| id[range].to_vec();
    let room = "historia";

    // Act and Assert, rule by rule.
    // No cursor: the newest `limit`.
    assert_eq!(
        page(&app, &token, room, "limit=3").await,
        (slice(7..10), true)
    );
    assert_eq!(page(&app, &token, room, "").await, (slice(0..10), false));
    assert_eq!(
        page(&app, &token, room, "limit=10").await,
        (slice(0..10), false)
    );
    assert_eq!(
        page(&app, &token, room, "limit=11").await,
        (slice(0..10), false)
    );
    // `before=N`: the newest `limit` below N.
    let query = format!("before={}&limit=3", id[7]);
    assert_eq!(page(&app, &token, room, &query).await, (slice(4..7), true));
    let query = format!("before={}&limit=5", id[3]);
    assert_eq!(page(&app, &token, room, &query).await, (slice(0..3), false));
    let query = format!("before={}&limit=3", id[3]);
    assert_eq!(
        page(&app, &token, room, &query).await,
        (slice(0..3), false),
        "exactly the rest: nothing more"
    );
    let query = format!("before={}", id[0]);
    assert_eq!(page(&app, &token, room, &query).await, (vec![], false));
    let query = format!("before={}&limit=2", id[9] + 1000);
    assert_eq!(page(&app, &token, room, &query).await, (slice(8..10), true));
    // `after=N`: the oldest `limit` above N.
    let query = format!("after={}&limit=2", id[6]);
    assert_eq!(page(&app, &token, room, &query).await, (slice(7..9), true));
    let query = format!("after={}&limit=3", id[6]);
    assert_eq!(
        page(&app, &token, room, &query).await,
        (slice(7..10), false)
    );
    let query = format!("after={}", id[9]);
    assert_eq!(page(&app, &token, room, &query).await, (vec![], false));
    assert_eq!(
        page(&app, &token, room, "after=0&limit=4").await,
        (slice(0..4), true)
    );
    // Both: the oldest `limit` strictly between them.
    let query = format!("after={}&before={}&limit=10", id[1], id[5]);
    assert_eq!(page(&app, &token, room, &query).await, (slice(2..5), false));
    let query = format!("after={}&before={}&limit=2", id[1], id[8]);
    assert_eq!(page(&app, &token, room, &query).await, (slice(2..4), true));
    let query = format!("after={}&before={}&limit=3", id[1], id[5]);
    assert_eq!(
        page(&app, &token, room, &query).await,
        (slice(2..5), false),
        "has_more looks between the cursors only"
    );
    let query = format!("after={}&before={}", id[4], id[5]);
    assert_eq!(page(&app, &token, room, &query).await, (vec![], false));
}

async fn walking_back_with_before_visits_every_message_once(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    app.create_room(&token, "historia", false).await;
    let sent = ids_of(&fill(&app, &token, "historia", 23).await);

    // Act: page backwards, 5 at a time, as a client scrolling up would.
    let (mut seen, mut has_more) = page(&app, &token, "historia", "limit=5").await;
    let mut pages = 1;
    while has_more {
        let query = format!("before={}&limit=5", seen[0]);
        let (older, more) = page(&app, &token, "historia", &query).await;
        seen.splice(0..0, older);
        has_more = more;
        pages += 1;
    }

    // Assert
    assert_eq!(seen, sent);
    assert_eq!(pages, 5);
}

async fn history_limit_defaults_to_50_and_is_capped_at_200(app: TestApp) {
    // Arrange: more than 200 messages.
    let token = app.signup("ana").await;
    app.create_room(&token, "larga", false).await;
    let sent = ids_of(&fill(&app, &token, "larga", 205).await);
    assert_eq!(sent.len(), 205);

    // Act
    let default = page(&app, &token, "larga", "").await;
    let capped = page(&app, &token, "larga", "limit=500").await;
    let huge = page(&app, &token, "larga", "limit=1000000").await;
    let exact = page(&app, &token, "larga", "limit=200").await;
    let from_start = page(&app, &token, "larga", "after=0&limit=201").await;

    // Assert
    assert_eq!(default, (sent[155..].to_vec(), true), "the newest 50");
    assert_eq!(capped, (sent[5..].to_vec(), true), "the newest 200");
    assert_eq!(huge, capped);
    assert_eq!(exact, capped);
    assert_eq!(from_start, (sent[..200].to_vec(), true), "the oldest 200");
}

#[tokio::test]
async fn a_limit_below_1_or_a_negative_cursor_is_invalid_input() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;

    for query in [
        "limit=0",
        "limit=-1",
        "after=-1",
        "before=-1",
        "after=-5&before=10",
        "after=1&before=-10",
        "limit=0&after=1",
    ] {
        assert_history_query_is_invalid_input(&app, &token, query).await;
    }
    // The smallest valid values are fine.
    let answer = app
        .get(
            "/rooms/general/messages?limit=1&after=0&before=0",
            Some(&token),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

#[tokio::test]
async fn history_needs_a_token() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();

    // Act
    let answer = app.get("/rooms/general/messages", None).await;

    // Assert
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn history_of_an_unknown_room_is_not_found(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;

    for room in ["no-existe", "NoEsSlug"] {
        // Act
        let answer = app
            .get(&format!("/rooms/{room}/messages"), Some(&token))
            .await;

        // Assert
        assert_error(&answer, StatusCode::NOT_FOUND, "not_found");
    }
}

async fn history_of_a_room_without_messages_is_an_empty_page(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    app.create_room(&token, "vacia", false).await;

    // Act
    let answer = app.get("/rooms/vacia/messages", Some(&token)).await;

    // Assert
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body, json!({ "messages": [], "has_more": false }));
}

async fn history_of_a_private_room_is_forbidden_to_non_members_and_open_to_members(app: TestApp) {
    // Arrange
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    let eva = app.signup("eva").await;
    app.create_room(&ana, "secreta", true).await;
    let sent = fill(&app, &ana, "secreta", 2).await;
    invite(&app, &ana, "secreta", "bea").await;

    // Act
    let stranger = app.get("/rooms/secreta/messages", Some(&eva)).await;
    let creator = page(&app, &ana, "secreta", "").await;
    let invited = page(&app, &bea, "secreta", "").await;

    // Assert
    assert_error(&stranger, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(creator, (ids_of(&sent), false));
    assert_eq!(invited, creator);
}

async fn history_items_are_identical_to_the_live_message_frames(app: TestApp) {
    // Arrange
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    let mut sender = app.ws(&ana).await;
    sender.join("general").await;
    let mut listener = app.ws(&bea).await;
    listener.join("general").await;

    // Act
    sender
        .send_json(json!({ "type": "send", "room": "general", "text": "hola \"mundo\" ñ 🎉", "client_id": "c-1" }))
        .await;
    let with_client_id = sender.recv_type("message").await;
    let without_client_id = sender.say("general", "  sin client_id  ").await;
    let live = [
        listener.recv_type("message").await,
        listener.recv_type("message").await,
    ];

    // Assert
    assert_eq!(with_client_id["client_id"], "c-1");
    assert!(
        without_client_id.get("client_id").is_none(),
        "no client_id key when none was sent: {without_client_id}"
    );
    let history = app.history(&bea, "general").await;
    assert_eq!(history, [with_client_id, without_client_id]);
    assert_eq!(history, live, "the other user's live frames are the same");
}

async fn history_holds_the_messages_of_its_own_room_only(app: TestApp) {
    // Arrange
    let token = app.signup("ana").await;
    app.create_room(&token, "una", false).await;
    app.create_room(&token, "otra", false).await;
    let una = fill(&app, &token, "una", 3).await;
    let otra = fill(&app, &token, "otra", 2).await;

    // Act
    let una_history = app.history(&token, "una").await;
    let otra_history = app.history(&token, "otra").await;

    // Assert
    assert_eq!(una_history, una);
    assert_eq!(otra_history, otra);
}

crate::on_both_backends!(
    the_list_shows_general_with_integer_counts,
    joining_a_public_room_makes_a_member_for_good_and_online_while_connected,
    creating_a_room_answers_201_with_the_room_and_its_creator_as_member,
    creating_a_private_room_answers_201_with_private_true,
    creating_a_room_that_exists_is_a_conflict,
    creating_general_is_a_conflict,
    a_private_room_is_listed_to_its_members_only,
    an_invited_user_sees_the_private_room_with_two_members,
    inviting_to_an_unknown_room_is_not_found_first,
    inviting_to_a_public_room_is_a_conflict_before_the_caller_and_user_checks,
    a_caller_who_is_neither_creator_nor_admin_is_forbidden_before_the_user_check,
    an_invited_member_who_did_not_create_the_room_may_not_invite,
    inviting_an_unknown_user_is_not_found,
    the_first_invitation_is_201_and_a_repeat_is_200,
    inviting_the_creator_to_their_own_room_is_200,
    an_admin_may_invite_to_a_private_room_they_did_not_create,
    history_pages_follow_every_cursor_rule,
    walking_back_with_before_visits_every_message_once,
    history_limit_defaults_to_50_and_is_capped_at_200,
    history_of_an_unknown_room_is_not_found,
    history_of_a_room_without_messages_is_an_empty_page,
    history_of_a_private_room_is_forbidden_to_non_members_and_open_to_members,
    history_items_are_identical_to_the_live_message_frames,
    history_holds_the_messages_of_its_own_room_only,
    a_text_with_no_visible_character_is_empty_text_and_not_stored,
    a_user_creates_at_most_30_rooms_an_hour_and_refused_attempts_do_not_count,
);

#[tokio::test]
async fn history_keeps_the_newest_messages_of_a_room_up_to_the_limit_on_both_backends() {
    for backend in [Backend::Memory, Backend::Redis] {
        // Arrange: a server that keeps 5 messages per room, and 8 sent.
        let Some(mut config) = test_config(backend).await else {
            continue;
        };
        config.history_limit = 5;
        let app = spawn_app_with(config).await;
        let token = app.signup("ana").await;
        let sent = ids_of(&fill(&app, &token, "general", 8).await);
        let kept = sent[3..].to_vec();

        // Act
        let latest = page(&app, &token, "general", "").await;
        let after_a_dropped_one = page(&app, &token, "general", "after=1").await;
        let before = page(&app, &token, "general", &format!("before={}", sent[6])).await;
        let rejoined = app.ws(&token).await.join_since("general", 1).await;
        let next = ids_of(&fill(&app, &token, "general", 1).await);

        // Assert: the oldest are gone, a cursor older than what is kept starts at the oldest
        // kept, and ids keep increasing.
        assert_eq!(latest, (kept.clone(), false), "{backend:?}");
        assert_eq!(after_a_dropped_one, (kept.clone(), false), "{backend:?}");
        assert_eq!(before, (sent[3..6].to_vec(), false), "{backend:?}");
        let history = rejoined["history"].as_array().unwrap();
        assert_eq!(ids_of(history), kept, "{backend:?}: {rejoined}");
        assert_eq!(next, vec![sent[7] + 1], "{backend:?}");
        let (after_next, _) = page(&app, &token, "general", "").await;
        assert_eq!(after_next, [&sent[4..], &next[..]].concat(), "{backend:?}");
        app.stop().await;
    }
}
