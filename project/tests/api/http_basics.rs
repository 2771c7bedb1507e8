//! Health, readiness, unknown routes and methods, body limits and malformed input.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::redis_server::private_redis;

/// The contract's body limit: any request body over 64 KiB is refused.
const BODY_LIMIT: usize = 64 * 1024;

/// Words of axum's and serde's default (English) rejection texts. A contract `message` is
/// Spanish, so none of them may leak into one.
const ENGLISH_WORDS: [&str; 9] = [
    "failed",
    "expected",
    "missing",
    "invalid",
    "unknown",
    "request",
    "deserialize",
    "not allowed",
    "too large",
];

/// Asserts an error answer of the contract: this status, a JSON body that is exactly
/// `{"error":{"code","message"}}`, this code and a non-empty Spanish message.
///
/// Shared by the other modules of the suite (`crate::http_basics::assert_error`).
pub(crate) fn assert_error(answer: &Answer, status: StatusCode, code: &str) {
    assert_eq!(
        answer.status, status,
        "expected {status} `{code}`, got {answer:?}"
    );
    let content_type = answer
        .headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "an error answers JSON, got Content-Type {content_type:?}: {answer:?}"
    );
    let Some(body) = answer.body.as_object() else {
        panic!("an error body is a JSON object, got {answer:?}");
    };
    assert_eq!(
        body.keys().collect::<Vec<_>>(),
        ["error"],
        "the body holds `error` only: {answer:?}"
    );
    let Some(error) = body["error"].as_object() else {
        panic!("`error` is an object, got {answer:?}");
    };
    let mut keys: Vec<&String> = error.keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["code", "message"],
        "`error` holds `code` and `message` only: {answer:?}"
    );
    assert_eq!(answer.error_code(), code, "{answer:?}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(
        !message.trim().is_empty(),
        "the message is non-empty text: {answer:?}"
    );
    let lowercase = message.to_lowercase();
    for word in ENGLISH_WORDS {
        assert!(
            !lowercase.contains(word),
            "the message is Spanish, but {message:?} contains the English {word:?}"
        );
    }
}

/// POSTs each `(path, token, body)` and checks each answer is a 422 `invalid_input`.
async fn assert_each_post_is_invalid_input(app: &TestApp, cases: &[(&str, Option<&str>, Value)]) {
    for (path, token, body) in cases {
        let answer = app.post(path, *token, body).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "POST {path} {body}"
        );
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
}

/// GETs `general`'s history with this query string and checks it is a 422 `invalid_input`.
pub(crate) async fn assert_history_query_is_invalid_input(app: &TestApp, token: &str, query: &str) {
    let answer = app
        .get(&format!("/rooms/general/messages?{query}"), Some(token))
        .await;
    assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
}

/// Posts `body` as is, with this `Content-Type` (none when `None`).
async fn post_raw(
    app: &TestApp,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Answer {
    let mut request = app.http.post(app.url(path)).body(body);
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    app.request(request).await
}

/// A valid registration of `username` as JSON text padded with trailing spaces (still valid
/// JSON) to exactly `size` bytes.
fn registration_of_size(username: &str, size: usize) -> String {
    let mut body = json!({
        "username": username,
        "password": PASSWORD,
        "email": format!("{username}@example.com"),
    })
    .to_string();
    assert!(body.len() <= size);
    body.push_str(&" ".repeat(size - body.len()));
    body
}

#[tokio::test]
async fn health_answers_ok_while_the_server_serves() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();

    // Act
    let answer = app.get("/health", None).await;

    // Assert
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, json!({ "status": "ok" }));
}

async fn ready_answers_ok_when_every_backend_answers(app: TestApp) {
    // Act
    let answer = app.get("/ready", None).await;

    // Assert
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["status"], "ok", "{answer:?}");
    let checks = answer.body["checks"]
        .as_object()
        .expect("`checks` is an object naming each backend");
    assert!(!checks.is_empty(), "`checks` names at least one backend");
    for (name, status) in checks {
        assert_eq!(status, "ok", "check {name} in {answer:?}");
    }
}

#[tokio::test]
async fn ready_on_the_in_process_backend_reports_memory_ok() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();

    // Act
    let answer = app.get("/ready", None).await;

    // Assert
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["checks"]["memory"], "ok", "{answer:?}");
}

#[tokio::test]
async fn ready_on_redis_reports_redis_ok() {
    // Arrange
    let Some(app) = spawn_app(Backend::Redis).await else {
        return;
    };

    // Act
    let answer = app.get("/ready", None).await;

    // Assert
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["checks"]["redis"], "ok", "{answer:?}");
}

#[tokio::test]
async fn ready_answers_503_degraded_naming_redis_when_redis_is_down() {
    // Arrange: a private Redis that this test may stop.
    let Some(redis) = private_redis() else {
        return;
    };
    let mut config = test_config(Backend::Memory).await.unwrap();
    config.redis_url = Some(redis.url.clone());
    let app = spawn_app_with(config).await;
    assert_eq!(app.get("/ready", None).await.status, StatusCode::OK);

    // Act
    drop(redis);
    let answer = app.get("/ready", None).await;

    // Assert
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.body["status"], "degraded", "{answer:?}");
    assert_eq!(answer.body["checks"]["redis"], "down", "{answer:?}");
    // The process itself still serves.
    assert_eq!(app.get("/health", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn ready_answers_within_2_s_naming_redis_down_when_redis_is_frozen() {
    // Arrange: a private Redis that this test freezes (`SIGSTOP`): connected sockets stay
    // open and nothing answers, the worst case for a client without time limits.
    let Some(redis) = private_redis() else {
        return;
    };
    let mut config = test_config(Backend::Memory).await.unwrap();
    config.redis_url = Some(redis.url.clone());
    let app = spawn_app_with(config).await;
    let token = app.admin_token().await;
    assert_eq!(app.get("/ready", None).await.status, StatusCode::OK);

    // Act
    redis.pause();
    let started = std::time::Instant::now();
    let answer = tokio::time::timeout(std::time::Duration::from_secs(10), app.get("/ready", None))
        .await
        .expect("/ready must answer while Redis is frozen");
    let took = started.elapsed();
    let health = tokio::time::timeout(std::time::Duration::from_secs(2), app.get("/health", None))
        .await
        .expect("/health must answer while Redis is frozen");
    let started = std::time::Instant::now();
    let rooms = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        app.get("/rooms/general/messages", Some(&token)),
    )
    .await
    .expect("a request that needs Redis must give up in time");
    let rooms_took = started.elapsed();
    let started = std::time::Instant::now();
    let upgrade = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        WsClient::connect(
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                app.ws_url(&token),
            )
            .unwrap(),
        ),
    )
    .await
    .expect(
        "a WebSocket upgrade (which counts the user's connections in Redis) must give up in time",
    );
    let upgrade_took = started.elapsed();
    redis.resume();

    // Assert
    assert!(
        took < std::time::Duration::from_secs(2),
        "/ready took {took:?}"
    );
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert_eq!(answer.body["status"], "degraded", "{answer:?}");
    assert_eq!(answer.body["checks"]["redis"], "down", "{answer:?}");
    assert_eq!(health.status, StatusCode::OK);
    assert_error(&rooms, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    assert!(
        rooms_took < std::time::Duration::from_secs(8),
        "a request on a frozen Redis took {rooms_took:?}"
    );
    match upgrade {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503, "{response:?}");
        }
        Err(other) => panic!("the upgrade failed without an HTTP answer: {other}"),
        Ok(_) => panic!("an upgrade cannot be counted while Redis is frozen"),
    }
    assert!(
        upgrade_took < std::time::Duration::from_secs(8),
        "an upgrade on a frozen Redis took {upgrade_took:?}"
    );
    // Once Redis thaws, the server is ready again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let answer = app.get("/ready", None).await;
        if answer.status == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still not ready: {answer:?}"
        );
        // Readiness is only visible by asking: polled.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn unknown_routes_answer_a_json_404_not_found() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;

    for path in [
        "/no-existe",
        "/auth",
        "/rooms/general/nada",
        "/api/v1/rooms",
    ] {
        // Act
        let anonymous = app.get(path, None).await;
        let authenticated = app.get(path, Some(&token)).await;
        let posted = app.post(path, None, &json!({})).await;

        // Assert
        assert_error(&anonymous, StatusCode::NOT_FOUND, "not_found");
        assert_error(&authenticated, StatusCode::NOT_FOUND, "not_found");
        assert_error(&posted, StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn a_wrong_method_answers_405_with_a_json_error_body() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;
    let requests = [
        app.http.delete(app.url("/health")),
        app.http.post(app.url("/ready")),
        app.http.get(app.url("/auth/login")),
        app.http.get(app.url("/auth/register")),
        app.http.put(app.url("/rooms")).bearer_auth(&token),
        app.http.delete(app.url("/rooms")).bearer_auth(&token),
        app.http
            .get(app.url("/rooms/general/members"))
            .bearer_auth(&token),
        app.http
            .post(app.url("/rooms/general/messages"))
            .bearer_auth(&token),
    ];

    for request in requests {
        // Act
        let answer = app.request(request).await;

        // Assert: the contract names no code for 405; the shape is the contract's.
        let code = answer.error_code().to_owned();
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "a snake_case code, got {answer:?}"
        );
        assert_error(&answer, StatusCode::METHOD_NOT_ALLOWED, &code);
    }
}

#[tokio::test]
async fn malformed_json_is_invalid_input_never_a_500() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;
    let bodies = [
        "",
        "no es json",
        "{",
        r#"{"username":"bea","password":"#,
        r#"{"username":"bea",}"#,
        r#"{'username':'bea'}"#,
        "[1, 2",
        "\u{0}\u{1}\u{2}",
        r#"{"username":"bea"} basura"#,
    ];
    let routes = [
        ("/auth/register", None),
        ("/auth/login", None),
        ("/rooms", Some(token.as_str())),
        ("/rooms/general/members", Some(token.as_str())),
    ];

    for (path, token) in routes {
        for body in bodies {
            // Act
            let answer = post_raw(&app, path, token, Some("application/json"), body).await;

            // Assert
            assert_eq!(
                answer.status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "POST {path} {body:?}"
            );
            assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
        }
    }
}

#[tokio::test]
async fn a_body_without_a_json_content_type_is_invalid_input() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let valid =
        json!({ "username": "bea", "password": PASSWORD, "email": "bea@example.com" }).to_string();

    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        // Act
        let answer = post_raw(&app, "/auth/register", None, content_type, valid.clone()).await;

        // Assert
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
    // None of them registered the user.
    assert_eq!(app.register("bea").await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn missing_fields_are_invalid_input() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;
    let cases = [
        ("/auth/register", None, json!({})),
        (
            "/auth/register",
            None,
            json!({ "username": "bea", "password": PASSWORD }),
        ),
        (
            "/auth/register",
            None,
            json!({ "username": "bea", "email": "bea@example.com" }),
        ),
        (
            "/auth/register",
            None,
            json!({ "password": PASSWORD, "email": "bea@example.com" }),
        ),
        ("/auth/login", None, json!({ "username": "ana" })),
        ("/auth/login", None, json!({ "password": PASSWORD })),
        ("/rooms", Some(token.as_str()), json!({ "name": "Sin id" })),
        (
            "/rooms",
            Some(token.as_str()),
            json!({ "id": "sin-nombre" }),
        ),
        ("/rooms/general/members", Some(token.as_str()), json!({})),
    ];

    // Act and assert
    assert_each_post_is_invalid_input(&app, &cases).await;
}

#[tokio::test]
async fn fields_of_the_wrong_type_are_invalid_input() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;
    let cases = [
        (
            "/auth/register",
            None,
            json!({ "username": 123, "password": PASSWORD, "email": "bea@example.com" }),
        ),
        (
            "/auth/register",
            None,
            json!({ "username": "bea", "password": null, "email": "bea@example.com" }),
        ),
        (
            "/auth/register",
            None,
            json!({ "username": "bea", "password": PASSWORD, "email": ["bea@example.com"] }),
        ),
        ("/auth/register", None, json!(["bea", PASSWORD])),
        ("/auth/register", None, json!("bea")),
        ("/auth/register", None, Value::Null),
        (
            "/auth/login",
            None,
            json!({ "username": true, "password": PASSWORD }),
        ),
        (
            "/auth/login",
            None,
            json!({ "username": "ana", "password": 12345678 }),
        ),
        (
            "/rooms",
            Some(token.as_str()),
            json!({ "id": 5, "name": "Cinco", "private": false }),
        ),
        (
            "/rooms",
            Some(token.as_str()),
            json!({ "id": "cinco", "name": { "es": "Cinco" }, "private": false }),
        ),
        (
            "/rooms",
            Some(token.as_str()),
            json!({ "id": "cinco", "name": "Cinco", "private": "yes" }),
        ),
        (
            "/rooms/general/members",
            Some(token.as_str()),
            json!({ "username": ["ana"] }),
        ),
    ];

    // Act and assert
    assert_each_post_is_invalid_input(&app, &cases).await;
}

#[tokio::test]
async fn a_body_over_64_kib_is_payload_too_large() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;
    let too_big = registration_of_size("bea", BODY_LIMIT + 1);
    let routes = [
        ("/auth/register", None),
        ("/auth/login", None),
        ("/rooms", Some(token.as_str())),
        ("/rooms/general/members", Some(token.as_str())),
    ];

    for (path, token) in routes {
        // Act
        let answer = post_raw(&app, path, token, Some("application/json"), too_big.clone()).await;

        // Assert
        assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    }
    // The refused registration stored nothing.
    assert_eq!(app.register("bea").await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a_chunked_body_over_64_kib_is_payload_too_large_too() {
    // Arrange: no Content-Length, so only counting the bytes read can catch it.
    let app = spawn_app(Backend::Memory).await.unwrap();
    let body = registration_of_size("bea", 2 * BODY_LIMIT);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = body
        .into_bytes()
        .chunks(4096)
        .map(|chunk| Ok(chunk.to_vec()))
        .collect();
    let stream = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));

    // Act
    let answer = post_raw(
        &app,
        "/auth/register",
        None,
        Some("application/json"),
        stream,
    )
    .await;

    // Assert
    assert_error(&answer, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn a_body_of_exactly_64_kib_is_accepted() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let body = registration_of_size("bea", BODY_LIMIT);

    // Act
    let answer = post_raw(&app, "/auth/register", None, Some("application/json"), body).await;

    // Assert
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    assert_eq!(answer.body["username"], "bea");
}

#[tokio::test]
async fn a_query_parameter_of_the_wrong_type_is_invalid_input() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;

    for query in [
        "limit=abc",
        "limit=1.5",
        "limit=",
        "after=abc",
        "before=1e3",
        "after=uno&before=2",
        "limit=10&before=%20",
    ] {
        assert_history_query_is_invalid_input(&app, &token, query).await;
    }
}

#[tokio::test]
async fn every_error_answer_has_the_contract_shape_and_a_spanish_message() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    app.create_room(&ana, "secreta", true).await;

    // Act and Assert: one answer of each error status the REST API can give.
    assert_error(
        &app.get("/rooms", None).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    assert_error(
        &app.get("/rooms/secreta/messages", Some(&bea)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    assert_error(
        &app.get("/rooms/no-existe/messages", Some(&bea)).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(&app.register("ana").await, StatusCode::CONFLICT, "conflict");
    assert_error(
        &app.post(
            "/auth/register",
            None,
            &json!({ "username": "x", "password": "corta", "email": "no" }),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_input",
    );
    let too_big = registration_of_size("eva", BODY_LIMIT + 1);
    assert_error(
        &post_raw(
            &app,
            "/auth/register",
            None,
            Some("application/json"),
            too_big,
        )
        .await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    );
    for _ in 0..5 {
        app.login("bea", "contraseña-mala").await;
    }
    let limited = app.login("bea", PASSWORD).await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
}

crate::on_both_backends!(ready_answers_ok_when_every_backend_answers);
