//! The WebSocket upgrade: Origin check, then authentication.
//!
//! The upgrade does not touch the storage backends (tokens are checked with the secret, origins
//! with the configuration), so these tests run on the in-process backend only.

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::{AUTHORIZATION, HOST, ORIGIN};

use crate::helpers::*;

/// Origins the default policy must refuse: lookalikes of localhost and foreign sites.
const FOREIGN_ORIGINS: [&str; 5] = [
    "null",
    "https://localhost.evil.com",
    "http://localhost.evil.com",
    "http://evil.com",
    "http://localhost:8000.evil.com",
];

/// What a test asks of one upgrade.
#[derive(Default)]
struct Upgrade<'a> {
    query_token: Option<&'a str>,
    bearer: Option<&'a str>,
    origin: Option<&'a str>,
    host: Option<&'a str>,
}

/// Tries the upgrade; a refusal comes back as its status and JSON body.
async fn try_upgrade(app: &TestApp, upgrade: Upgrade<'_>) -> Result<WsClient, (StatusCode, Value)> {
    let url = match upgrade.query_token {
        Some(token) => app.ws_url(token),
        None => format!("ws://{}/ws", app.addr),
    };
    let mut request = url.into_client_request().unwrap();
    let headers = request.headers_mut();
    if let Some(token) = upgrade.bearer {
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    if let Some(origin) = upgrade.origin {
        headers.insert(ORIGIN, HeaderValue::from_str(origin).unwrap());
    }
    if let Some(host) = upgrade.host {
        headers.insert(HOST, HeaderValue::from_str(host).unwrap());
    }
    match WsClient::connect(request).await {
        Ok(client) => Ok(client),
        Err(tungstenite::Error::Http(response)) => {
            let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
            let body = response.body().as_deref().unwrap_or_default();
            let body = serde_json::from_slice(body).unwrap_or(Value::Null);
            Err((status, body))
        }
        Err(other) => panic!("the upgrade failed without an HTTP answer: {other}"),
    }
}

/// Asserts a refused upgrade: this status, and the contract's JSON error body with this code.
fn assert_refused(result: Result<WsClient, (StatusCode, Value)>, status: StatusCode, code: &str) {
    let Err((got_status, body)) = result else {
        panic!("expected the upgrade to be refused with {status}, but it was accepted");
    };
    assert_eq!(got_status, status, "body: {body}");
    assert_eq!(body["error"]["code"], code, "body: {body}");
    assert!(
        body["error"]["message"].is_string(),
        "the error has no message: {body}"
    );
}

/// Asserts an accepted upgrade that carries the protocol: a `ping` frame gets its `pong`.
async fn assert_accepted(result: Result<WsClient, (StatusCode, Value)>, what: &str) -> WsClient {
    let mut client = match result {
        Ok(client) => client,
        Err((status, body)) => panic!("{what}: expected an upgrade, got {status} {body}"),
    };
    client.assert_usable().await;
    client
}

/// A token signed with the test servers' secret that expired a minute ago.
fn expired_token(username: &str) -> String {
    let now = jsonwebtoken::get_current_timestamp();
    let claims = json!({ "sub": username, "role": "member", "iat": now - 3600, "exp": now - 60 });
    let key = jsonwebtoken::EncodingKey::from_secret(b"secreto-de-las-pruebas");
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap()
}

async fn memory_app() -> TestApp {
    spawn_app(Backend::Memory).await.unwrap()
}

#[tokio::test]
async fn an_upgrade_without_a_token_is_refused_with_401_and_a_json_error() {
    // Arrange
    let app = memory_app().await;

    // Act
    let result = try_upgrade(&app, Upgrade::default()).await;

    // Assert
    assert_refused(result, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn an_upgrade_with_a_bad_token_is_refused_with_401() {
    // Arrange
    let app = memory_app().await;
    let exp = jsonwebtoken::get_current_timestamp() + 600;
    let other_secret = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": "ana", "role": "admin", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(b"otro-secreto"),
    )
    .unwrap();

    for token in ["no-es-un-token", "a.b.c", other_secret.as_str()] {
        // Act
        let by_query = try_upgrade(
            &app,
            Upgrade {
                query_token: Some(token),
                ..Default::default()
            },
        );
        let by_header = try_upgrade(
            &app,
            Upgrade {
                bearer: Some(token),
                ..Default::default()
            },
        );

        // Assert
        assert_refused(by_query.await, StatusCode::UNAUTHORIZED, "unauthorized");
        assert_refused(by_header.await, StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn an_upgrade_with_an_expired_token_is_refused_with_401() {
    // Arrange
    let app = memory_app().await;
    app.signup("ana").await;
    let token = expired_token("ana");

    // Act
    let result = try_upgrade(
        &app,
        Upgrade {
            query_token: Some(&token),
            ..Default::default()
        },
    );

    // Assert
    assert_refused(result.await, StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_bearer_header_authenticates_the_upgrade_like_the_token_query() {
    // Arrange
    let app = memory_app().await;
    let token = app.signup("ana").await;

    // Act
    let by_header = try_upgrade(
        &app,
        Upgrade {
            bearer: Some(&token),
            ..Default::default()
        },
    );
    let mut by_header = assert_accepted(by_header.await, "Authorization: Bearer").await;
    let by_query = try_upgrade(
        &app,
        Upgrade {
            query_token: Some(&token),
            ..Default::default()
        },
    );
    let mut by_query = assert_accepted(by_query.await, "?token=").await;

    // Assert: both connections are ana's.
    assert_eq!(by_header.join("general").await["online"], json!(["ana"]));
    assert_eq!(by_query.join("general").await["online"], json!(["ana"]));
}

#[tokio::test]
async fn loopback_origins_on_any_port_and_the_servers_own_origin_are_allowed_by_default() {
    // Arrange
    let app = memory_app().await;
    let token = app.signup("ana").await;
    let own_origin = format!("http://127.0.0.1:{}", app.addr.port());

    for origin in [
        "http://localhost:1234",
        "http://127.0.0.1:5",
        own_origin.as_str(),
    ] {
        // Act
        let result = try_upgrade(
            &app,
            Upgrade {
                query_token: Some(&token),
                origin: Some(origin),
                ..Default::default()
            },
        );

        // Assert
        assert_accepted(result.await, origin).await;
    }
}

#[tokio::test]
async fn the_origin_of_the_requests_own_host_is_allowed_by_default() {
    // Arrange: the server is reached as chat.example.com (behind a proxy, say).
    let app = memory_app().await;
    let token = app.signup("ana").await;
    let upgrade = |origin| Upgrade {
        query_token: Some(&token),
        origin: Some(origin),
        host: Some("chat.example.com"),
        ..Default::default()
    };

    // Act
    let own = try_upgrade(&app, upgrade("http://chat.example.com")).await;
    let other = try_upgrade(&app, upgrade("http://other.example.com")).await;

    // Assert
    assert_accepted(own, "the page's own origin").await;
    assert_refused(other, StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn foreign_and_lookalike_origins_are_refused_with_403_and_a_json_error() {
    // Arrange
    let app = memory_app().await;
    let token = app.signup("ana").await;

    for origin in FOREIGN_ORIGINS {
        // Act
        let result = try_upgrade(
            &app,
            Upgrade {
                query_token: Some(&token),
                origin: Some(origin),
                ..Default::default()
            },
        );

        // Assert
        let Err((status, body)) = result.await else {
            panic!("the origin {origin} was accepted");
        };
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
        assert_eq!(body["error"]["code"], "forbidden", "{origin}: {body}");
    }
}

#[tokio::test]
async fn a_bad_origin_is_refused_before_the_token_is_checked() {
    // Arrange
    let app = memory_app().await;

    for origin in FOREIGN_ORIGINS {
        // Act: a bad origin and no token at all.
        let result = try_upgrade(
            &app,
            Upgrade {
                origin: Some(origin),
                ..Default::default()
            },
        );

        // Assert: 403, not 401.
        assert_refused(result.await, StatusCode::FORBIDDEN, "forbidden");
    }
}

#[tokio::test]
async fn an_upgrade_without_an_origin_header_is_allowed() {
    // Arrange: tungstenite sends no Origin unless asked to, like any client that is not a browser.
    let app = memory_app().await;
    let token = app.signup("ana").await;
    let request = app.ws_url(&token).into_client_request().unwrap();
    assert!(request.headers().get(ORIGIN).is_none());

    // Act
    let result = try_upgrade(
        &app,
        Upgrade {
            query_token: Some(&token),
            ..Default::default()
        },
    );

    // Assert
    assert_accepted(result.await, "no Origin").await;
}

#[tokio::test]
async fn a_configured_origin_list_is_matched_exactly_and_replaces_the_default() {
    // Arrange
    let mut config = test_config(Backend::Memory).await.unwrap();
    config.allowed_origins = Some("https://chat.example.com, http://localhost:8000".into());
    let app = spawn_app_with(config).await;
    let token = app.signup("ana").await;
    let own_origin = format!("http://127.0.0.1:{}", app.addr.port());
    let with_origin = |origin| Upgrade {
        query_token: Some(&token),
        origin: Some(origin),
        ..Default::default()
    };

    for origin in ["https://chat.example.com", "http://localhost:8000"] {
        // Act
        let result = try_upgrade(&app, with_origin(origin)).await;

        // Assert
        assert_accepted(result, origin).await;
    }
    for origin in [
        "http://chat.example.com",
        "https://chat.example.com.evil.com",
        "https://chat.example.com:8443",
        "http://localhost:8001",
        "http://localhost:1234",
        own_origin.as_str(),
        "null",
    ] {
        // Act
        let result = try_upgrade(&app, with_origin(origin)).await;

        // Assert
        let Err((status, body)) = result else {
            panic!("the origin {origin} is not in the list but was accepted");
        };
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin}: {body}");
    }
}
