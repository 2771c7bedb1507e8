//! A Redis that comes back empty (restarted without persistence, or `FLUSHALL` while the
//! servers are connected) is noticed within 10 s and re-bootstrapped: the admin account and
//! `general` exist again, every room's `epoch` changes, and connected clients are closed with
//! 1013 so that they rejoin and get `reset`.
//!
//! Each test runs two nodes on a private `redis-server` (the tests empty it), with the default
//! check interval, so the 10 s bound is the one a real deployment gets.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use crate::helpers::*;
use crate::redis_server::{RedisServer, private_redis};

/// The contract's bound: an emptied Redis is noticed and re-bootstrapped within 10 s.
const NOTICED_WITHIN: Duration = Duration::from_secs(10);

/// Two nodes of one cluster on `redis`.
async fn two_nodes(redis: &RedisServer) -> (TestApp, TestApp) {
    let mut config = test_config(Backend::Memory).await.unwrap();
    config.redis_url = Some(redis.url.clone());
    config.redis_prefix = crate::redis_server::unique_prefix();
    (
        spawn_app_with(config.clone()).await,
        spawn_app_with(config).await,
    )
}

/// The admin, connected to `app` and joined to `general` after saying three messages there.
/// Returns the client and the `epoch` and last id it saw.
async fn admin_in_general(app: &TestApp, token: &str) -> (WsClient, Value, u64) {
    let mut client = app.ws(token).await;
    let joined = client.join("general").await;
    let mut last = 0;
    for text in ["uno", "dos", "tres"] {
        last = id_of(&client.say("general", text).await);
    }
    (client, joined["epoch"].clone(), last)
}

/// Waits (at most until `deadline`) for `app` to list `general` again to the admin.
async fn general_listed_by(app: &TestApp, token: &str, deadline: Instant) {
    loop {
        let answer = app.get("/rooms", Some(token)).await;
        let listed = answer.status == StatusCode::OK
            && answer
                .body
                .as_array()
                .is_some_and(|rooms| rooms.iter().any(|room| room["id"] == "general"));
        if listed {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "general was not listed again within {NOTICED_WITHIN:?}: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What both tests check after Redis lost everything: each client was closed with 1013,
/// `general` and the admin are back on both nodes within 10 s, and a rejoin with the old
/// `since` and `epoch` gets `reset` and the new (empty) history.
async fn assert_rebootstrapped(
    nodes: [&TestApp; 2],
    token: &str,
    clients: Vec<(WsClient, Value, u64)>,
    emptied: Instant,
) {
    let deadline = emptied + NOTICED_WITHIN;
    for (node, (mut client, epoch, last)) in nodes.into_iter().zip(clients) {
        let close = tokio::time::timeout_at(deadline, client.closed())
            .await
            .expect("the client was not closed within 10 s");
        assert_eq!(close.map(|frame| frame.code), Some(CloseCode::Again));

        general_listed_by(node, token, deadline).await;
        let fresh = node.admin_token().await;
        let mut rejoined = node.ws(&fresh).await;
        rejoined
            .send_json(json!({ "type": "join", "room": "general", "since": last, "epoch": epoch }))
            .await;
        let joined = rejoined.recv_type("joined").await;
        assert_eq!(joined["reset"], true, "{joined}");
        assert!(joined["epoch"].is_string(), "{joined}");
        assert_ne!(joined["epoch"], epoch, "{joined}");
        assert_eq!(joined["history"], json!([]), "{joined}");
    }
}

#[tokio::test]
async fn a_flushall_while_connected_is_noticed_and_rebootstrapped_within_10_s() {
    // Arrange: two nodes on a private Redis, the admin in general on each.
    let Some(redis) = private_redis() else {
        return;
    };
    let (a, b) = two_nodes(&redis).await;
    let token = a.admin_token().await;
    let on_a = admin_in_general(&a, &token).await;
    let on_b = admin_in_general(&b, &token).await;
    let mut raw = redis::Client::open(redis.url.clone())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();

    // Act: Redis loses everything while both nodes stay connected to it.
    let () = redis::cmd("FLUSHALL").query_async(&mut raw).await.unwrap();
    let emptied = Instant::now();

    // Assert
    assert_rebootstrapped([&a, &b], &token, vec![on_a, on_b], emptied).await;
}

#[tokio::test]
async fn a_redis_restarted_without_persistence_is_rebootstrapped_within_10_s() {
    // Arrange: two nodes on a private Redis, the admin in general on each.
    let Some(mut redis) = private_redis() else {
        return;
    };
    let (a, b) = two_nodes(&redis).await;
    let token = a.admin_token().await;
    let on_a = admin_in_general(&a, &token).await;
    let on_b = admin_in_general(&b, &token).await;

    // Act: an empty Redis on the same port, as a restart without persistence gives.
    assert!(redis.restart(), "redis-server did not come back");
    let emptied = Instant::now();

    // Assert
    assert_rebootstrapped([&a, &b], &token, vec![on_a, on_b], emptied).await;
}
