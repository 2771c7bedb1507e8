//! The `rooms_changed` frame (an extension of the contract, see `PROTOCOL.md`): every connection
//! of a user hears it when the list of rooms that user can see changes, joined to rooms or not,
//! and `GET /rooms` then answers the new list (its cache was invalidated first). Across nodes:
//! `cluster.rs`.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

/// The ids that `GET /rooms` lists for `token`'s user.
pub async fn listed(app: &TestApp, token: &str) -> Vec<String> {
    let answer = app.get("/rooms", Some(token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|room| room["id"].as_str().unwrap().to_owned())
        .collect()
}

/// Removes `username` from `room` as `token`'s user.
pub async fn remove_member(app: &TestApp, token: &str, room: &str, username: &str) -> Answer {
    let request = app
        .http
        .delete(app.url(&format!("/rooms/{room}/members/{username}")))
        .bearer_auth(token);
    app.request(request).await
}

/// Invites `username` to `room` as `token`'s user.
pub async fn invite(app: &TestApp, token: &str, room: &str, username: &str) -> Answer {
    app.post(
        &format!("/rooms/{room}/members"),
        Some(token),
        &json!({ "username": username }),
    )
    .await
}

crate::on_both_backends!(
    a_new_public_room_tells_every_connection_of_every_user,
    gaining_or_losing_a_private_room_tells_that_user_alone,
);

async fn a_new_public_room_tells_every_connection_of_every_user(app: TestApp) {
    // Arrange: ana in a room, bea with two tabs in none; both listed the rooms already (the
    // list may be cached).
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    let carl = app.signup("carl").await;
    let mut ana_ws = app.ws(&ana).await;
    ana_ws.join("general").await;
    let mut bea_tab1 = app.ws(&bea).await;
    let mut bea_tab2 = app.ws(&bea).await;
    // A `pong` means the connection is running, so the hub knows it.
    bea_tab1.assert_usable().await;
    bea_tab2.assert_usable().await;
    assert!(!listed(&app, &bea).await.contains(&"nueva".to_owned()));

    // Act
    let created = app.create_room(&carl, "nueva", false).await;

    // Assert
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    for client in [&mut ana_ws, &mut bea_tab1, &mut bea_tab2] {
        assert_eq!(client.recv().await, json!({ "type": "rooms_changed" }));
    }
    assert!(listed(&app, &bea).await.contains(&"nueva".to_owned()));
    assert!(listed(&app, &ana).await.contains(&"nueva".to_owned()));
}

async fn gaining_or_losing_a_private_room_tells_that_user_alone(app: TestApp) {
    // Arrange: ana owns a private room; bea (two tabs) and carl are connected.
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    let carl = app.signup("carl").await;
    let mut bea_tab1 = app.ws(&bea).await;
    bea_tab1.join("general").await;
    let mut bea_tab2 = app.ws(&bea).await;
    let mut carl_ws = app.ws(&carl).await;
    let mut ana_ws = app.ws(&ana).await;
    // A `pong` means the connection is running, so the hub knows it.
    for client in [&mut bea_tab2, &mut carl_ws, &mut ana_ws] {
        client.assert_usable().await;
    }
    let created = app.create_room(&ana, "secreta", true).await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    // Its creator gains it (on every tab); nobody else hears of it.
    assert_eq!(ana_ws.recv().await, json!({ "type": "rooms_changed" }));
    assert!(!listed(&app, &bea).await.contains(&"secreta".to_owned()));

    // Act 1: bea is added.
    let added = invite(&app, &ana, "secreta", "bea").await;

    // Assert 1: both of bea's tabs hear it, carl does not, and bea's list has the room.
    assert_eq!(added.status, StatusCode::CREATED, "{:?}", added.body);
    for tab in [&mut bea_tab1, &mut bea_tab2] {
        assert_eq!(tab.recv().await, json!({ "type": "rooms_changed" }));
    }
    assert!(listed(&app, &bea).await.contains(&"secreta".to_owned()));

    // Act 2: inviting her again changes nothing; removing her does.
    let again = invite(&app, &ana, "secreta", "bea").await;
    let removed = remove_member(&app, &ana, "secreta", "bea").await;

    // Assert 2: one `rooms_changed` per tab (none for the repeated invitation) and the room is
    // gone from her list; carl and ana heard nothing of it all.
    assert_eq!(again.status, StatusCode::OK, "{:?}", again.body);
    assert_eq!(removed.status, StatusCode::NO_CONTENT, "{:?}", removed.body);
    for tab in [&mut bea_tab1, &mut bea_tab2] {
        assert_eq!(tab.recv().await, json!({ "type": "rooms_changed" }));
        tab.assert_nothing_pending().await;
    }
    assert!(!listed(&app, &bea).await.contains(&"secreta".to_owned()));
    carl_ws.assert_nothing_pending().await;
    ana_ws.assert_nothing_pending().await;
}
