//! Two nodes on one Redis act as one server.
//!
//! Each test starts two servers from the same configuration (same Redis, key prefix and JWT
//! secret) on different ports, as two nodes behind a load balancer would run. Without Redis the
//! tests are skipped, like the Redis half of `on_both_backends!`.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// Two nodes of one cluster, or `None` when there is no Redis.
async fn two_nodes() -> Option<(TestApp, TestApp)> {
    let config = test_config(Backend::Redis).await?;
    let a = spawn_app_with(config.clone()).await;
    let b = spawn_app_with(config).await;
    assert_ne!(a.addr, b.addr);
    Some((a, b))
}

#[tokio::test]
async fn users_on_different_nodes_see_each_others_messages() {
    // Arrange
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let mut ana = a.connected("ana").await;
    let bea_token = b.signup("bea").await;
    let mut bea = b.ws(&bea_token).await;
    ana.join("general").await;
    bea.join("general").await;

    // Act
    let from_a = ana.say("general", "hola desde A").await;
    let on_b = bea.recv_type("message").await;
    let from_b = bea.say("general", "hola desde B").await;
    let on_a = ana.recv_type("message").await;

    // Assert
    assert_eq!(on_b, from_a);
    assert_eq!(on_a, from_b);
    assert_eq!(id_of(&from_b), id_of(&from_a) + 1);
    assert_eq!(b.history(&bea_token, "general").await, vec![from_a, from_b]);
}

#[tokio::test]
async fn messages_sent_at_once_on_both_nodes_arrive_everywhere_in_the_same_order() {
    // Arrange: on each node, a sender and a watcher.
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let mut ana = a.connected("ana").await;
    let mut bea = b.connected("bea").await;
    let mut watcher_a = a.connected("carl").await;
    let mut watcher_b = b.connected("dani").await;
    for client in [&mut ana, &mut bea, &mut watcher_a, &mut watcher_b] {
        client.join("general").await;
    }
    let sends = |who: &str| -> Vec<serde_json::Value> {
        (0..30)
            .map(|i| json!({ "type": "send", "room": "general", "text": format!("{who} {i}") }))
            .collect()
    };

    // Act: both senders fire 30 messages each without waiting.
    for (ana_frame, bea_frame) in sends("ana").into_iter().zip(sends("bea")) {
        ana.send_json(ana_frame).await;
        bea.send_json(bea_frame).await;
    }
    let mut seen = Vec::new();
    for client in [&mut ana, &mut bea, &mut watcher_a, &mut watcher_b] {
        seen.push(client.recv_messages(60).await);
    }

    // Assert: one order for everyone, ids strictly increasing, and each sender's own order kept.
    for other in &seen[1..] {
        assert_eq!(other, &seen[0], "two clients saw different orders");
    }
    let ids = ids_of(&seen[0]);
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "ids not increasing: {ids:?}"
    );
    for who in ["ana", "bea"] {
        let texts: Vec<&str> = seen[0]
            .iter()
            .filter(|message| message["user"] == who)
            .map(|message| message["text"].as_str().unwrap())
            .collect();
        let expected: Vec<String> = (0..30).map(|i| format!("{who} {i}")).collect();
        assert_eq!(texts, expected, "{who}'s messages out of order");
    }
}

#[tokio::test]
async fn presence_on_one_node_is_visible_on_the_other() {
    // Arrange
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let mut ana = a.connected("ana").await;
    let mut bea = b.connected("bea").await;
    let mut carl = b.connected("carl").await;
    ana.join("general").await;

    // Act
    let joined_on_b = bea.join("general").await;
    let arrival_on_a = ana.recv().await;
    carl.join("general").await;
    drop(ana);

    // Assert: B's `joined` counts ana on A; A hears bea arrive; B hears ana leave.
    assert_eq!(joined_on_b["online"], json!(["ana", "bea"]));
    assert_eq!(
        arrival_on_a,
        json!({ "type": "presence", "room": "general", "user": "bea", "status": "online" })
    );
    assert_eq!(bea.recv().await["user"], "carl");
    assert_eq!(
        bea.recv().await,
        json!({ "type": "presence", "room": "general", "user": "ana", "status": "offline" })
    );
}

#[tokio::test]
async fn a_token_issued_by_one_node_is_accepted_by_the_other() {
    // Arrange
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let token = a.signup("ana").await;

    // Act
    let me = b.get("/auth/me", Some(&token)).await;
    let mut ws = b.ws(&token).await;

    // Assert
    assert_eq!(me.status, StatusCode::OK, "{:?}", me.body);
    assert_eq!(me.body["username"], "ana");
    assert_eq!(ws.join("general").await["online"], json!(["ana"]));
}

#[tokio::test]
async fn a_room_created_on_one_node_is_listed_and_usable_on_the_other() {
    // Arrange: B has listed the rooms already (and may have cached the list).
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let token = a.signup("ana").await;
    let before = b.get("/rooms", Some(&token)).await;
    assert_eq!(before.status, StatusCode::OK);

    // Act
    let created = a.create_room(&token, "proyecto", false).await;
    let listed = b.get("/rooms", Some(&token)).await;
    let mut ws = b.ws(&token).await;
    let joined = ws.join("proyecto").await;

    // Assert
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let ids: Vec<&str> = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|room| room["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"proyecto"), "B lists {ids:?}");
    assert_eq!(joined["room"], "proyecto");
}

#[tokio::test]
async fn a_senders_echo_comes_before_left_and_no_message_of_the_other_node_in_flight_is_lost() {
    // Arrange: ana on A, bea on B, both in general.
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let ana_token = a.signup("ana").await;
    let mut ana = a.ws(&ana_token).await;
    let mut bea = b.connected("bea").await;
    ana.join("general").await;
    bea.join("general").await;
    assert_eq!(ana.recv().await["type"], "presence");
    let mut seen: Vec<u64> = Vec::new();

    for round in 0..5 {
        // Act: bea's messages are in flight through Redis while ana sends and leaves at once.
        for i in 0..5 {
            bea.send_json(
                json!({ "type": "send", "room": "general", "text": format!("bea {round} {i}") }),
            )
            .await;
        }
        let text = format!("ana {round}");
        ana.send_together(&[
            json!({ "type": "send", "room": "general", "text": text }),
            json!({ "type": "leave", "room": "general" }),
        ])
        .await;
        let mut before_left = Vec::new();
        loop {
            let frame = ana.recv().await;
            if frame["type"] == "left" {
                break;
            }
            assert_eq!(frame["type"], "message", "round {round}: {frame}");
            before_left.push(frame);
        }

        // Assert: the echo came before `left`, and every message stored before it reached ana.
        let echo = before_left
            .iter()
            .find(|frame| frame["text"] == text.as_str())
            .unwrap_or_else(|| panic!("round {round}: no echo before `left`: {before_left:?}"))
            .clone();
        seen.extend(ids_of(&before_left));
        let rejoined = ana.join_since("general", id_of(&echo)).await;
        seen.extend(ids_of(rejoined["history"].as_array().unwrap()));
        let mut pending = 5;
        while pending > 0 {
            if bea.recv_type("message").await["user"] == "bea" {
                pending -= 1;
            }
        }
    }
    let rejoined = ana.join_since("general", *seen.iter().max().unwrap()).await;
    seen.extend(ids_of(rejoined["history"].as_array().unwrap()));
    let stored = ids_of(&a.history(&ana_token, "general").await);
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen, stored,
        "ana missed messages stored while she was in the room"
    );
}

#[tokio::test]
async fn every_node_names_a_rooms_history_with_the_same_epoch_even_after_a_restart() {
    // Arrange
    let Some(config) = test_config(Backend::Redis).await else {
        return;
    };
    let a = spawn_app_with(config.clone()).await;
    let b = spawn_app_with(config.clone()).await;
    let token = a.signup("ana").await;
    let stored = a.post_numbered(&token, "general", "m", 3).await;
    let on_a = a.ws(&token).await.join("general").await;

    // Act: B sees the same history; then B restarts (same Redis, same data).
    let on_b = b.ws(&token).await.join("general").await;
    b.stop().await;
    let b = spawn_app_with(config).await;
    let mut ana = b.ws(&token).await;
    ana.send_json(json!({ "type": "join", "room": "general", "since": 1, "epoch": on_a["epoch"] }))
        .await;
    let resumed = ana.recv_type("joined").await;

    // Assert: one epoch, so a client that moves to another node resumes with since.
    assert!(on_a["epoch"].is_string(), "{on_a}");
    assert_eq!(on_b["epoch"], on_a["epoch"]);
    assert_eq!(resumed["epoch"], on_a["epoch"]);
    assert!(
        resumed.get("reset").is_none() || resumed["reset"] == false,
        "{resumed}"
    );
    assert_eq!(resumed["history"].as_array().unwrap(), &stored[1..]);
}

#[tokio::test]
async fn an_event_with_multi_byte_characters_where_a_marker_is_expected_does_not_stop_the_fanout() {
    // Arrange: a node with two clients in general, and a raw connection to its Redis.
    let Some(config) = test_config(Backend::Redis).await else {
        return;
    };
    let channel = format!("{}:events", config.redis_prefix);
    let redis = redis::Client::open(config.redis_url.clone().unwrap()).unwrap();
    let mut raw = redis.get_multiplexed_async_connection().await.unwrap();
    let app = spawn_app_with(config).await;
    let mut ana = app.connected("ana").await;
    let mut bea = app.connected("bea").await;
    ana.join("general").await;
    bea.join("general").await;

    // Act: events that split by byte index would panic on (the listener was never restarted).
    for payload in [
        "general\n\nñandú\n{}",
        "general\n\n€\n{}",
        "general\n½\n\n{}",
    ] {
        let _: u64 = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(payload)
            .query_async(&mut raw)
            .await
            .unwrap();
    }
    let sent = ana.say("general", "¿sigue vivo el reparto? ñandú €").await;

    // Assert: the node still delivers what comes after them.
    assert_eq!(bea.recv_type("message").await, sent);
}

#[tokio::test]
async fn a_node_that_shuts_down_announces_its_users_offline_on_the_other() {
    // Arrange: ana on A, bea on B, both in general.
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let mut ana = a.connected("ana").await;
    let mut bea = b.connected("bea").await;
    ana.join("general").await;
    bea.join("general").await;
    assert_eq!(ana.recv().await["user"], "bea");

    // Act: node A stops, as on SIGTERM (its connections leave their rooms on the way out).
    a.stop().await;

    // Assert: bea, on B, hears ana go offline.
    assert_eq!(
        bea.recv_type("presence").await,
        json!({ "type": "presence", "room": "general", "user": "ana", "status": "offline" })
    );
}

#[tokio::test]
async fn the_redis_listener_runs_under_the_apps_supervisor_and_delivers_again_after_a_panic() {
    // Arrange: bea on B in general; B's listener is one of its app's supervised tasks.
    let Some(config) = test_config(Backend::Redis).await else {
        return;
    };
    let a = spawn_app_with(config.clone()).await;
    let (b, state) = spawn_app_with_state(config).await;
    let task = chat::backend::redis::LISTENER_TASK;
    assert!(
        state.supervisor.task_names().contains(&task),
        "{:?}",
        state.supervisor.task_names()
    );
    let bea_token = b.signup("bea").await;
    let mut bea = b.ws(&bea_token).await;
    bea.join("general").await;

    // Act: the listener panics, as a bug in it would.
    state.supervisor.inject_panic(task, 1);

    // Assert: the new listener makes B's clients rejoin (they may have missed events), the
    // failure is counted where `/ready` reads it, and B delivers A's messages again.
    let close = bea.closed().await;
    assert_eq!(
        close.map(|frame| frame.code),
        Some(tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Again)
    );
    assert_eq!(state.supervisor.restarts(task), 1);
    let mut bea = b.ws(&bea_token).await;
    bea.join("general").await;
    let mut ana = a.connected("ana").await;
    ana.join("general").await;
    let sent = ana.say("general", "otra vez").await;
    assert_eq!(bea.recv_type("message").await, sent);
}

#[tokio::test]
async fn rooms_changed_reaches_the_users_connections_on_the_other_node_and_its_list_is_fresh() {
    use crate::rooms_changed::{invite, listed, remove_member};
    // Arrange: carl on A; bea on B, who has listed the rooms there (B may have cached them).
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let carl = a.signup("carl").await;
    let bea = b.signup("bea").await;
    let mut bea_ws = b.ws(&bea).await;
    let mut carl_ws = a.ws(&carl).await;
    // A `pong` means the connection is running, so its node's hub knows it.
    bea_ws.assert_usable().await;
    carl_ws.assert_usable().await;
    assert!(!listed(&b, &bea).await.contains(&"nueva".to_owned()));

    // Act 1: carl creates a public room on A.
    let created = a.create_room(&carl, "nueva", false).await;

    // Assert 1: both hear it, and B lists the room.
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let rooms_changed = json!({ "type": "rooms_changed" });
    assert_eq!(bea_ws.recv().await, rooms_changed);
    assert_eq!(carl_ws.recv().await, rooms_changed);
    assert!(listed(&b, &bea).await.contains(&"nueva".to_owned()));

    // Act 2: carl makes a private room on A, adds bea to it, then removes her.
    let created = a.create_room(&carl, "secreta", true).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    assert_eq!(carl_ws.recv().await, rooms_changed);
    assert!(!listed(&b, &bea).await.contains(&"secreta".to_owned()));
    let added = invite(&a, &carl, "secreta", "bea").await;

    // Assert 2: bea hears each change on B, and B's list follows.
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    assert_eq!(bea_ws.recv().await, rooms_changed);
    assert!(listed(&b, &bea).await.contains(&"secreta".to_owned()));
    let removed = remove_member(&a, &carl, "secreta", "bea").await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);
    assert_eq!(bea_ws.recv().await, rooms_changed);
    assert!(!listed(&b, &bea).await.contains(&"secreta".to_owned()));
}
