//! Removing a member from a private room (`DELETE /rooms/{id}/members/{username}`, an extension
//! of the contract): access ends at once, on every connection, including the live ones.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn remove(app: &TestApp, token: &str, room: &str, username: &str) -> Answer {
    let request = app
        .http
        .delete(app.url(&format!("/rooms/{room}/members/{username}")))
        .bearer_auth(token);
    app.request(request).await
}

/// `ana` creates the private room `secreta` and invites `bea`; both are connected and joined.
async fn private_room_with_two_members(app: &TestApp) -> (String, WsClient, String, WsClient) {
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    assert_eq!(
        app.create_room(&ana, "secreta", true).await.status,
        StatusCode::CREATED
    );
    let invited = app
        .post(
            "/rooms/secreta/members",
            Some(&ana),
            &json!({ "username": "bea" }),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED);
    let mut ana_ws = app.ws(&ana).await;
    let mut bea_ws = app.ws(&bea).await;
    ana_ws.join("secreta").await;
    bea_ws.join("secreta").await;
    (ana, ana_ws, bea, bea_ws)
}

async fn a_removed_member_stops_receiving_the_room_at_once(app: TestApp) {
    let (ana, mut ana_ws, bea, mut bea_ws) = private_room_with_two_members(&app).await;
    ana_ws.say("secreta", "antes").await;
    assert_eq!(bea_ws.recv_type("message").await["text"], "antes");

    assert_eq!(
        remove(&app, &ana, "secreta", "bea").await.status,
        StatusCode::NO_CONTENT
    );

    assert_eq!(bea_ws.recv_type("left").await["room"], "secreta");
    ana_ws.say("secreta", "después").await;
    bea_ws.assert_nothing_pending().await;
    bea_ws
        .send_json(json!({ "type": "send", "room": "secreta", "text": "¿sigo?" }))
        .await;
    assert_eq!(bea_ws.recv_error().await, "not_member");
    bea_ws
        .send_json(json!({ "type": "join", "room": "secreta" }))
        .await;
    assert_eq!(bea_ws.recv_error().await, "not_member");
    let history = app.get("/rooms/secreta/messages", Some(&bea)).await;
    assert_eq!(history.status, StatusCode::FORBIDDEN);
    let texts: Vec<_> = app
        .history(&ana, "secreta")
        .await
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, vec![json!("antes"), json!("después")]);
    bea_ws.assert_usable().await;
}

async fn removing_checks_room_visibility_caller_and_membership_in_order(app: TestApp) {
    let (ana, _ana_ws, bea, _bea_ws) = private_room_with_two_members(&app).await;
    let caro = app.signup("caro").await;

    assert_eq!(
        remove(&app, &ana, "no-existe", "bea").await.error_code(),
        "not_found"
    );
    assert_eq!(
        remove(&app, &ana, "general", "bea").await.error_code(),
        "conflict"
    );
    assert_eq!(
        remove(&app, &caro, "secreta", "bea").await.error_code(),
        "forbidden"
    );
    assert_eq!(
        remove(&app, &bea, "secreta", "ana").await.error_code(),
        "forbidden"
    );
    assert_eq!(
        remove(&app, &ana, "secreta", "caro").await.error_code(),
        "not_found"
    );
    let admin = app.admin_token().await;
    assert_eq!(
        remove(&app, &admin, "secreta", "bea").await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        remove(&app, &admin, "secreta", "bea").await.error_code(),
        "not_found"
    );
    let listed = app.get("/rooms", Some(&bea)).await;
    assert!(
        listed
            .body
            .as_array()
            .unwrap()
            .iter()
            .all(|room| room["id"] != "secreta")
    );
}

async fn removing_needs_a_token(app: TestApp) {
    let request = app.http.delete(app.url("/rooms/general/members/ana"));
    assert_eq!(app.request(request).await.error_code(), "unauthorized");
}

crate::on_both_backends!(
    a_removed_member_stops_receiving_the_room_at_once,
    removing_checks_room_visibility_caller_and_membership_in_order,
    removing_needs_a_token,
);
