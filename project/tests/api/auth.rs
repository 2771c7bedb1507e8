//! Accounts: register, login (and its rate limit), me, and token checks.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, RETRY_AFTER};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::helpers::*;
use crate::http_basics::assert_error;

/// The JWT secret of every test server (see `helpers::test_config`).
const TEST_SECRET: &[u8] = b"secreto-de-las-pruebas";

/// A wrong password for users whose password is [`PASSWORD`].
const WRONG_PASSWORD: &str = "contraseña-equivocada";

fn register_body(username: &str, password: &str, email: &str) -> Value {
    json!({ "username": username, "password": password, "email": email })
}

/// Signs `claims` with the test servers' secret, as the server would but with any algorithm.
fn sign(algorithm: Algorithm, claims: &Value) -> String {
    jsonwebtoken::encode(
        &Header::new(algorithm),
        claims,
        &EncodingKey::from_secret(TEST_SECRET),
    )
    .unwrap()
}

/// Claims of a member token for `username` that expires `exp_offset` seconds from now.
fn claims(username: &str, exp_offset: i64) -> Value {
    let now = jsonwebtoken::get_current_timestamp() as i64;
    json!({ "sub": username, "role": "member", "iat": now - 10, "exp": now + exp_offset })
}

/// `/auth/me` with this raw `Authorization` header value.
async fn me_with_header(app: &TestApp, authorization: &str) -> Answer {
    app.request(
        app.http
            .get(app.url("/auth/me"))
            .header(AUTHORIZATION, authorization),
    )
    .await
}

/// Asserts a 429 of the login limiter with a `Retry-After` of 1 to 60 whole seconds.
fn assert_rate_limited(answer: &Answer) {
    assert_error(answer, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    let retry_after = answer
        .headers
        .get(RETRY_AFTER)
        .unwrap_or_else(|| panic!("a 429 carries Retry-After: {answer:?}"))
        .to_str()
        .unwrap();
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is whole seconds, got {retry_after:?}"));
    assert!(
        (1..=60).contains(&seconds),
        "Retry-After is 1–60 s, got {seconds}"
    );
}

/// Fails `times` logins of `username`, checking each one is a plain 401.
async fn fail_logins(app: &TestApp, username: &str, times: usize) {
    for attempt in 1..=times {
        let answer = app.login(username, WRONG_PASSWORD).await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "failure {attempt} of {username} is still a 401: {answer:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Register
// ---------------------------------------------------------------------------------------------

async fn register_answers_201_with_the_user_and_never_the_password(app: TestApp) {
    // Arrange
    let body = register_body("ana_99", PASSWORD, "ana@example.com");

    // Act
    let answer = app.post("/auth/register", None, &body).await;

    // Assert
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    let user = answer.body.as_object().unwrap();
    let mut keys: Vec<&String> = user.keys().collect();
    keys.sort();
    assert_eq!(keys, ["email", "id", "role", "username"], "{answer:?}");
    assert!(!user["id"].as_str().unwrap().is_empty(), "{answer:?}");
    assert_eq!(user["username"], "ana_99");
    assert_eq!(user["email"], "ana@example.com");
    assert_eq!(user["role"], "member");
    let text = answer.body.to_string();
    assert!(!text.contains(PASSWORD), "the password leaked: {text}");
    assert!(!text.contains("argon2"), "the hash leaked: {text}");
}

async fn each_registered_user_gets_a_different_id(app: TestApp) {
    // Act
    let ana = app.register("ana").await;
    let bea = app.register("bea").await;

    // Assert
    assert_eq!(ana.status, StatusCode::CREATED);
    assert_eq!(bea.status, StatusCode::CREATED);
    assert_ne!(ana.body["id"], bea.body["id"]);
}

async fn a_taken_username_is_a_conflict(app: TestApp) {
    // Arrange
    app.register("ana").await;

    // Act
    let answer = app
        .post(
            "/auth/register",
            None,
            &register_body("ana", "otra-contraseña", "otra@example.com"),
        )
        .await;

    // Assert
    assert_error(&answer, StatusCode::CONFLICT, "conflict");
    // The first account is untouched: its password still works, the new one does not.
    assert_eq!(app.login("ana", PASSWORD).await.status, StatusCode::OK);
    assert_eq!(
        app.login("ana", "otra-contraseña").await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn an_email_taken_in_another_case_is_a_conflict(app: TestApp) {
    // Arrange
    let first = app
        .post(
            "/auth/register",
            None,
            &register_body("ana", PASSWORD, "Ana.Perez@Example.com"),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);

    for email in [
        "Ana.Perez@Example.com",
        "ana.perez@example.com",
        "ANA.PEREZ@EXAMPLE.COM",
    ] {
        // Act
        let answer = app
            .post(
                "/auth/register",
                None,
                &register_body("bea", PASSWORD, email),
            )
            .await;

        // Assert
        assert_error(&answer, StatusCode::CONFLICT, "conflict");
    }
}

async fn a_conflicting_registration_stores_nothing(app: TestApp) {
    // Arrange
    app.register("ana").await;
    let taken_email = register_body("bea", PASSWORD, "ana@example.com");
    assert_eq!(
        app.post("/auth/register", None, &taken_email).await.status,
        StatusCode::CONFLICT
    );

    // Act: the username of the refused attempt is still free…
    let answer = app.register("bea").await;

    // Assert
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    assert_eq!(answer.body["email"], "bea@example.com");
    // …and the refused attempt did not give `bea` the other e-mail's account.
    assert_eq!(app.login("bea", PASSWORD).await.status, StatusCode::OK);
}

#[tokio::test]
async fn each_invalid_username_is_refused_with_invalid_input() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let invalid = [
        ("too short", "ab".to_owned()),
        ("empty", String::new()),
        ("too long", "a".repeat(33)),
        ("uppercase", "Ana".to_owned()),
        ("a hyphen", "ana-maria".to_owned()),
        ("a space", "ana maria".to_owned()),
        ("a dot", "ana.maria".to_owned()),
        ("an accent", "josé".to_owned()),
        ("an ñ", "ñandu".to_owned()),
        ("an @", "ana@x".to_owned()),
    ];

    for (why, username) in invalid {
        // Act
        let answer = app
            .post(
                "/auth/register",
                None,
                &register_body(&username, PASSWORD, "valido@example.com"),
            )
            .await;

        // Assert
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{username:?} ({why}) is refused"
        );
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
}

#[tokio::test]
async fn usernames_at_the_limits_are_accepted() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();

    for username in ["abc", "a_1", "___", "007", &"z".repeat(32)] {
        // Act
        let answer = app.register(username).await;

        // Assert
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "{username:?}: {answer:?}"
        );
        assert_eq!(answer.body["username"], username);
    }
}

#[tokio::test]
async fn a_password_shorter_than_8_characters_is_refused_counting_code_points() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();

    // "ñññññññ" is 7 characters but 14 bytes: a byte count would let it through.
    for (n, password) in ["", "1234567", "ñññññññ", "🎉🎉🎉🎉🎉🎉🎉"]
        .into_iter()
        .enumerate()
    {
        // Act
        let answer = app
            .post(
                "/auth/register",
                None,
                &register_body(
                    &format!("usuario{n}"),
                    password,
                    &format!("u{n}@example.com"),
                ),
            )
            .await;

        // Assert
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{password:?} is refused"
        );
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
}

#[tokio::test]
async fn a_password_of_8_non_ascii_characters_is_accepted_and_logs_in() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let password = "ññññññññ";

    // Act
    let registered = app
        .post(
            "/auth/register",
            None,
            &register_body("ana", password, "ana@example.com"),
        )
        .await;

    // Assert
    assert_eq!(registered.status, StatusCode::CREATED, "{registered:?}");
    assert_eq!(app.login("ana", password).await.status, StatusCode::OK);
    assert_eq!(
        app.login("ana", "ñññññññ").await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn each_invalid_email_is_refused_with_invalid_input() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let invalid = [
        "",
        "ana",
        "ana@",
        "@example.com",
        "ana@example",
        "ana @example.com",
        "ana@exa mple.com",
        "ana@@example.com",
        "ana@.com",
        "ana@example.",
    ];

    for (n, email) in invalid.into_iter().enumerate() {
        // Act
        let answer = app
            .post(
                "/auth/register",
                None,
                &register_body(&format!("usuario{n}"), PASSWORD, email),
            )
            .await;

        // Assert
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{email:?} is refused"
        );
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
}

#[tokio::test]
async fn an_address_that_is_not_a_bare_local_at_domain_is_refused() {
    // Arrange: each of these could reach another mailbox than the one it seems to name (a
    // mailer reads the display name, the quotes or the list), so none may register.
    let app = spawn_app(Backend::Memory).await.unwrap();
    let invalid = [
        "<victim@corp.example.com>",
        "\"victim\"@corp.example.com",
        "Victim <victim@corp.example.com>",
        "victim@corp.example.com>",
        "victim@corp.example.com,otro@example.com",
        "victim,otro@example.com",
        "(jefe)victim@corp.example.com",
        "victim@[10.0.0.1]",
        "vic\\tim@corp.example.com",
        "victim;x@corp.example.com",
        "vic\u{7}tim@corp.example.com",
        "vic\u{85}tim@corp.example.com",
        "victim\u{200b}@corp.example.com",
        "victim@corp\u{202e}.example.com",
        "victim\u{a0}@corp.example.com",
        ".victim@corp.example.com",
        "victim.@corp.example.com",
        "vic..tim@corp.example.com",
        "victim@corp..example.com",
        "victim@-corp.example.com",
        "victim@corp-.example.com",
        "victim@corp_x.example.com",
    ];

    for (n, email) in invalid.into_iter().enumerate() {
        // Act
        let answer = app
            .post(
                "/auth/register",
                None,
                &register_body(&format!("usuario{n}"), PASSWORD, email),
            )
            .await;

        // Assert
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{email:?} is refused: {answer:?}"
        );
        assert_error(&answer, StatusCode::UNPROCESSABLE_ENTITY, "invalid_input");
    }
}

#[tokio::test]
async fn ordinary_addresses_are_accepted() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let valid = [
        "ana.perez+chat@sub.example.com",
        "o'brien@example.ie",
        "a_b-c@ex-ample.co.uk",
        "josé@ejemplo.es",
        "x@ñandú.example",
    ];

    for (n, email) in valid.into_iter().enumerate() {
        // Act
        let answer = app
            .post(
                "/auth/register",
                None,
                &register_body(&format!("usuario{n}"), PASSWORD, email),
            )
            .await;

        // Assert
        assert_eq!(answer.status, StatusCode::CREATED, "{email:?}: {answer:?}");
        assert_eq!(answer.body["email"], email);
    }
}

async fn a_bracketed_or_quoted_form_of_a_taken_address_cannot_register(app: TestApp) {
    // Arrange
    let first = app
        .post(
            "/auth/register",
            None,
            &register_body("victima", PASSWORD, "victim@corp.example.com"),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);

    for (n, email) in [
        "<victim@corp.example.com>",
        "\"victim\"@corp.example.com",
        "<VICTIM@corp.example.com>",
        "Victim@Corp.Example.com",
    ]
    .into_iter()
    .enumerate()
    {
        // Act
        let answer = app
            .post(
                "/auth/register",
                None,
                &register_body(&format!("atacante{n}"), PASSWORD, email),
            )
            .await;

        // Assert: refused, either as malformed or as taken; never a second account.
        assert!(
            matches!(
                answer.status,
                StatusCode::UNPROCESSABLE_ENTITY | StatusCode::CONFLICT
            ),
            "{email:?}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn a_refused_registration_leaves_the_username_free() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let short_password = register_body("ana", "corta", "ana@example.com");
    assert_eq!(
        app.post("/auth/register", None, &short_password)
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );

    // Act
    let answer = app.register("ana").await;

    // Assert
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
}

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

async fn login_answers_a_bearer_token_that_lasts_an_hour(app: TestApp) {
    // Arrange
    app.register("ana").await;

    // Act
    let answer = app.login("ana", PASSWORD).await;

    // Assert
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let token = answer.body["access_token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    assert_eq!(answer.body["token_type"], "bearer");
    assert_eq!(answer.body["expires_in"], 3600);
}

async fn the_token_of_login_proves_the_user_at_me(app: TestApp) {
    // Arrange
    let registered = app.register("ana").await.body;
    app.register("bea").await;
    let token = app.token("ana", PASSWORD).await;

    // Act
    let answer = app.get("/auth/me", Some(&token)).await;

    // Assert
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body, registered, "/auth/me is the registered user");
}

async fn wrong_password_and_unknown_user_get_the_same_401(app: TestApp) {
    // Arrange
    app.register("ana").await;

    // Act
    let wrong_password = app.login("ana", WRONG_PASSWORD).await;
    let unknown_user = app.login("nadie", PASSWORD).await;
    let invalid_name = app.login("No Válido!", PASSWORD).await;

    // Assert
    assert_error(&wrong_password, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(unknown_user.status, wrong_password.status);
    assert_eq!(unknown_user.body, wrong_password.body);
    assert_eq!(invalid_name.status, wrong_password.status);
    assert_eq!(invalid_name.body, wrong_password.body);
}

async fn login_after_five_failures_is_rate_limited_even_with_the_right_password(app: TestApp) {
    // Arrange
    app.register("ana").await;
    fail_logins(&app, "ana", 5).await;

    // Act
    let right = app.login("ana", PASSWORD).await;
    let wrong = app.login("ana", WRONG_PASSWORD).await;

    // Assert
    assert_rate_limited(&right);
    assert_rate_limited(&wrong);
    assert!(right.body.get("access_token").is_none());
}

async fn an_unknown_username_is_rate_limited_after_five_failures_too(app: TestApp) {
    // Arrange
    fail_logins(&app, "fantasma", 5).await;

    // Act
    let answer = app.login("fantasma", PASSWORD).await;

    // Assert
    assert_rate_limited(&answer);
}

async fn an_unknown_username_that_registers_after_five_failures_is_still_blocked(app: TestApp) {
    // Arrange: the counter is per username, known or not, so registering changes nothing.
    fail_logins(&app, "ana", 5).await;
    app.register("ana").await;

    // Act
    let answer = app.login("ana", PASSWORD).await;

    // Assert
    assert_rate_limited(&answer);
}

async fn the_failure_limit_is_per_username(app: TestApp) {
    // Arrange
    app.register("ana").await;
    app.register("bea").await;
    fail_logins(&app, "ana", 5).await;

    // Act
    let bea = app.login("bea", PASSWORD).await;

    // Assert
    assert_eq!(bea.status, StatusCode::OK, "{bea:?}");
    assert_rate_limited(&app.login("ana", PASSWORD).await);
}

async fn four_failures_do_not_block_the_right_password(app: TestApp) {
    // Arrange
    app.register("ana").await;
    fail_logins(&app, "ana", 4).await;

    // Act
    let answer = app.login("ana", PASSWORD).await;

    // Assert
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

async fn a_successful_login_resets_the_failure_count(app: TestApp) {
    // Arrange: 4 failures, a success, 4 failures: 8 failures, but never 5 in a row.
    app.register("ana").await;
    fail_logins(&app, "ana", 4).await;
    assert_eq!(app.login("ana", PASSWORD).await.status, StatusCode::OK);
    fail_logins(&app, "ana", 4).await;

    // Act
    let answer = app.login("ana", PASSWORD).await;

    // Assert
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
}

async fn parallel_wrong_guesses_cannot_get_past_the_failure_limit(app: TestApp) {
    // Arrange: the count must be taken before the slow Argon2 check, or every guess sent at
    // once sees "0 failures so far" and gets its own verification.
    app.register("ana").await;
    let guesses = (0..20).map(|_| app.login("ana", WRONG_PASSWORD));

    // Act
    let answers = futures_util::future::join_all(guesses).await;

    // Assert
    let verified = answers
        .iter()
        .filter(|answer| answer.status == StatusCode::UNAUTHORIZED)
        .count();
    for answer in answers
        .iter()
        .filter(|a| a.status != StatusCode::UNAUTHORIZED)
    {
        assert_rate_limited(answer);
    }
    assert!(
        (1..=5).contains(&verified),
        "at most 5 guesses are checked, {verified} were"
    );
    assert_rate_limited(&app.login("ana", PASSWORD).await);
}

async fn a_rate_limited_attempt_does_not_reset_the_block(app: TestApp) {
    // Arrange
    app.register("ana").await;
    fail_logins(&app, "ana", 5).await;
    assert_rate_limited(&app.login("ana", PASSWORD).await);

    // Act: the right password, refused, must not count as the success that resets.
    let answer = app.login("ana", PASSWORD).await;

    // Assert
    assert_rate_limited(&answer);
}

/// Asserts a 503 `unavailable` with a `Retry-After` of whole seconds (at least 1).
fn assert_shed(answer: &Answer) {
    assert_error(answer, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let retry_after = answer
        .headers
        .get(RETRY_AFTER)
        .unwrap_or_else(|| panic!("a shed request carries Retry-After: {answer:?}"))
        .to_str()
        .unwrap();
    let seconds: u64 = retry_after
        .parse()
        .unwrap_or_else(|_| panic!("Retry-After is whole seconds, got {retry_after:?}"));
    assert!(seconds >= 1, "Retry-After is at least 1 s, got {seconds}");
}

#[tokio::test]
async fn logins_that_cannot_get_a_hashing_slot_in_time_are_shed_with_503() {
    // Arrange: a server that lets a login wait only 1 ms for a hashing slot, and a storm of
    // logins of unknown users (each one costs a full Argon2 check, and none is rate limited:
    // every username is different). Far more arrive than the pool can hash within 1 ms.
    let mut config = test_config(Backend::Memory).await.unwrap();
    config.hash_wait_ms = 1;
    let app = spawn_app_with(config).await;
    let names: Vec<String> = (0..40).map(|n| format!("nadie_{n}")).collect();
    let storm = names.iter().map(|name| app.login(name, WRONG_PASSWORD));

    // Act
    let answers = futures_util::future::join_all(storm).await;

    // Assert: each one is either checked (401) or shed at once (503 with Retry-After).
    let mut shed = 0;
    for answer in &answers {
        if answer.status == StatusCode::UNAUTHORIZED {
            continue;
        }
        assert_shed(answer);
        shed += 1;
    }
    assert!(shed > 0, "a full pool sheds load, but all 40 waited");
}

/// Logins of one user shed for lack of a hashing slot are not failures: they were never checked.
async fn shed_logins_do_not_count_as_failures(backend: Backend) {
    // Arrange: a server whose hashing wait is 0 ms (a login is shed unless a slot is free at
    // that very moment), and a storm of wrong guesses for ana.
    let Some(mut config) = test_config(backend).await else {
        return;
    };
    config.hash_wait_ms = 0;
    let app = spawn_app_with(config).await;
    assert_eq!(app.register("ana").await.status, StatusCode::CREATED);
    let storm = (0..40).map(|_| app.login("ana", WRONG_PASSWORD));
    let answers = futures_util::future::join_all(storm).await;
    let failures = answers
        .iter()
        .filter(|answer| answer.status == StatusCode::UNAUTHORIZED)
        .count();
    assert!(failures <= 5, "{failures} failures were checked");

    // Act: once the storm is over, ana's right password.
    let answer = app.login("ana", PASSWORD).await;

    // Assert: refused only if 5 real failures happened; never blocked by shed attempts.
    if failures < 5 {
        assert_ne!(answer.status, StatusCode::TOO_MANY_REQUESTS, "{answer:?}");
    } else {
        assert_rate_limited(&answer);
    }
}

#[tokio::test]
async fn shed_logins_do_not_count_as_failures_in_memory() {
    shed_logins_do_not_count_as_failures(Backend::Memory).await;
}

#[tokio::test]
async fn shed_logins_do_not_count_as_failures_on_redis() {
    shed_logins_do_not_count_as_failures(Backend::Redis).await;
}

// ---------------------------------------------------------------------------------------------
// /auth/me and tokens
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn me_without_a_valid_bearer_token_is_unauthorized() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;

    // Act
    let answers = [
        app.get("/auth/me", None).await,
        me_with_header(&app, "").await,
        me_with_header(&app, "Bearer").await,
        me_with_header(&app, "Bearer ").await,
        me_with_header(&app, "Bearer no-es-un-token").await,
        me_with_header(&app, "Bearer a.b.c").await,
        me_with_header(&app, &format!("Basic {token}")).await,
        me_with_header(&app, &token).await,
    ];

    // Assert
    for answer in &answers {
        assert_error(answer, StatusCode::UNAUTHORIZED, "unauthorized");
    }
    // The same token, sent properly, works.
    assert_eq!(
        me_with_header(&app, &format!("Bearer {token}"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_token_with_a_tampered_signature_is_unauthorized() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;
    let (unsigned, signature) = token.rsplit_once('.').unwrap();
    // A character in the middle of the signature: the last one may only carry padding bits.
    let mut signature: Vec<char> = signature.chars().collect();
    let middle = signature.len() / 2;
    signature[middle] = if signature[middle] == 'A' { 'B' } else { 'A' };
    let signature: String = signature.into_iter().collect();
    let tampered = format!("{unsigned}.{signature}");

    // Act
    let answer = app.get("/auth/me", Some(&tampered)).await;

    // Assert
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_token_with_a_tampered_payload_is_unauthorized() {
    // Arrange: bea takes ana's signature over her own claims.
    let app = spawn_app(Backend::Memory).await.unwrap();
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    let ana_parts: Vec<&str> = ana.split('.').collect();
    let bea_parts: Vec<&str> = bea.split('.').collect();
    let forged = format!("{}.{}.{}", ana_parts[0], bea_parts[1], ana_parts[2]);

    // Act
    let answer = app.get("/auth/me", Some(&forged)).await;

    // Assert
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn an_expired_token_is_unauthorized() {
    // Arrange: a token the server's own way, valid but for its expiry.
    let app = spawn_app(Backend::Memory).await.unwrap();
    app.signup("ana").await;
    let fresh = sign(Algorithm::HS256, &claims("ana", 600));
    let expired = sign(Algorithm::HS256, &claims("ana", -5));
    assert_eq!(
        app.get("/auth/me", Some(&fresh)).await.status,
        StatusCode::OK,
        "a token signed like this one but not expired is accepted"
    );

    // Act
    let answer = app.get("/auth/me", Some(&expired)).await;

    // Assert
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_token_without_expiry_is_unauthorized() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    app.signup("ana").await;
    let forever = sign(Algorithm::HS256, &json!({ "sub": "ana", "role": "member" }));

    // Act
    let answer = app.get("/auth/me", Some(&forever)).await;

    // Assert
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn an_alg_none_token_is_unauthorized() {
    // Arrange: the claims of a real token under a header `{"alg":"none","typ":"JWT"}`.
    let app = spawn_app(Backend::Memory).await.unwrap();
    let token = app.signup("ana").await;
    let parts: Vec<&str> = token.split('.').collect();
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let unsigned = format!("{none_header}.{}.", parts[1]);
    let with_old_signature = format!("{none_header}.{}.{}", parts[1], parts[2]);

    for forged in [unsigned, with_old_signature] {
        // Act
        let answer = app.get("/auth/me", Some(&forged)).await;

        // Assert
        assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn a_token_signed_with_hs512_is_unauthorized_even_with_the_right_secret() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    app.signup("ana").await;
    let hs512 = sign(Algorithm::HS512, &claims("ana", 600));

    // Act
    let answer = app.get("/auth/me", Some(&hs512)).await;

    // Assert
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_token_signed_with_another_secret_is_unauthorized() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    app.signup("ana").await;
    let other = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("ana", 600),
        &EncodingKey::from_secret(b"otro-secreto"),
    )
    .unwrap();

    // Act
    let answer = app.get("/auth/me", Some(&other)).await;

    // Assert
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

async fn a_valid_token_of_a_user_that_does_not_exist_is_unauthorized_at_me(app: TestApp) {
    // Arrange
    let ghost = sign(Algorithm::HS256, &claims("fantasma", 600));

    // Act
    let answer = app.get("/auth/me", Some(&ghost)).await;

    // Assert
    assert_error(&answer, StatusCode::UNAUTHORIZED, "unauthorized");
}

// ---------------------------------------------------------------------------------------------
// The admin account
// ---------------------------------------------------------------------------------------------

async fn the_bootstrapped_admin_logs_in_and_is_an_admin(app: TestApp) {
    // Arrange
    let token = app.admin_token().await;

    // Act
    let answer = app.get("/auth/me", Some(&token)).await;

    // Assert
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.body["username"], "admin");
    assert_eq!(answer.body["role"], "admin");
    assert_eq!(
        app.login("admin", WRONG_PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn registering_the_admin_username_is_a_conflict(app: TestApp) {
    // Act
    let answer = app.register("admin").await;

    // Assert
    assert_error(&answer, StatusCode::CONFLICT, "conflict");
    assert_eq!(
        app.login("admin", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_configured_admin_password_is_not_reported_as_generated() {
    // Arrange
    let config = test_config(Backend::Memory).await.unwrap();

    // Act
    let app = chat::App::build(config).await.unwrap();

    // Assert
    assert_eq!(app.generated_admin_password(), None);
}

#[tokio::test]
async fn an_unset_admin_password_is_generated_at_random_and_logs_in() {
    // Arrange
    let mut config = test_config(Backend::Memory).await.unwrap();
    config.admin_password = None;

    // Act
    let app = chat::App::build(config.clone()).await.unwrap();
    let other = chat::App::build(config).await.unwrap();

    // Assert
    let password = app
        .generated_admin_password()
        .expect("with no admin password configured, one is generated")
        .to_owned();
    assert!(
        password.chars().count() >= 8,
        "a valid password: {password:?}"
    );
    assert_ne!(
        other.generated_admin_password(),
        Some(password.as_str()),
        "random, not a constant"
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let login = http
        .post(format!("{base}/auth/login"))
        .json(&json!({ "username": "admin", "password": password }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let token = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me: Value = http
        .get(format!("{base}/auth/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["role"], "admin");
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_node_that_finds_the_admin_in_redis_keeps_its_password_and_generates_none() {
    // Arrange: a first node generated the admin password into this key prefix.
    let Some(mut config) = test_config(Backend::Redis).await else {
        return;
    };
    config.admin_password = None;
    let first = chat::App::build(config.clone()).await.unwrap();
    let password = first.generated_admin_password().unwrap().to_owned();

    // Act: a second node (or a restart) on the same Redis and prefix.
    let second = chat::App::build(config.clone()).await.unwrap();

    // Assert
    assert_eq!(second.generated_admin_password(), None);
    drop(second);
    let app = spawn_app_with(config).await;
    assert_eq!(app.login("admin", &password).await.status, StatusCode::OK);
}

crate::on_both_backends!(
    register_answers_201_with_the_user_and_never_the_password,
    each_registered_user_gets_a_different_id,
    a_taken_username_is_a_conflict,
    an_email_taken_in_another_case_is_a_conflict,
    a_bracketed_or_quoted_form_of_a_taken_address_cannot_register,
    a_conflicting_registration_stores_nothing,
    login_answers_a_bearer_token_that_lasts_an_hour,
    the_token_of_login_proves_the_user_at_me,
    wrong_password_and_unknown_user_get_the_same_401,
    login_after_five_failures_is_rate_limited_even_with_the_right_password,
    an_unknown_username_is_rate_limited_after_five_failures_too,
    an_unknown_username_that_registers_after_five_failures_is_still_blocked,
    the_failure_limit_is_per_username,
    four_failures_do_not_block_the_right_password,
    a_successful_login_resets_the_failure_count,
    a_rate_limited_attempt_does_not_reset_the_block,
    parallel_wrong_guesses_cannot_get_past_the_failure_limit,
    a_valid_token_of_a_user_that_does_not_exist_is_unauthorized_at_me,
    the_bootstrapped_admin_logs_in_and_is_an_admin,
    registering_the_admin_username_is_a_conflict,
);
