//! Presence under a storm of joins and leaves: the server coalesces a room's presence changes
//! into windows (see `ws/hub/window.rs`); whatever the windows, every client must end with the
//! right set of online users, and whoever was there before hears of each change exactly once.
//!
//! Each client's view is its `joined` list with every later `presence` applied; the tests wait
//! until each view is what it must be (a lost frame ends in a timeout), and never assert a time.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::helpers::*;

/// Joiners of each storm.
const STORM: usize = 24;

/// A client and what it believes is online in one room.
struct Watcher {
    name: String,
    ws: WsClient,
    online: BTreeSet<String>,
    /// Every presence frame it got: (user, status).
    heard: Vec<(String, String)>,
}

impl Watcher {
    /// Takes the `joined` answer (skipping nothing else: nothing may come before it).
    async fn joined(&mut self, room: &str) {
        let joined = self.ws.recv().await;
        assert_eq!(joined["type"], "joined", "{}: {joined}", self.name);
        assert_eq!(joined["room"], room);
        self.online = names(&joined["online"]);
        assert!(self.online.contains(&self.name), "{}: {joined}", self.name);
    }

    /// Reads presence frames until the view is `expected`.
    async fn until(&mut self, expected: &BTreeSet<String>) {
        while self.online != *expected {
            let frame = self.ws.recv().await;
            assert_eq!(frame["type"], "presence", "{}: {frame}", self.name);
            let user = frame["user"].as_str().unwrap().to_owned();
            let status = frame["status"].as_str().unwrap().to_owned();
            assert_ne!(user, self.name, "presence about oneself: {frame}");
            match status.as_str() {
                "online" => self.online.insert(user.clone()),
                "offline" => self.online.remove(&user),
                other => panic!("unknown status {other}"),
            };
            self.heard.push((user, status));
        }
    }
}

fn names(list: &Value) -> BTreeSet<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|name| name.as_str().unwrap().to_owned())
        .collect()
}

/// `count` users named `{prefix}{i}`, connected (on `apps` in turn), not joined yet.
async fn watchers(apps: &[&TestApp], prefix: &str, count: usize) -> Vec<Watcher> {
    let mut watchers = Vec::with_capacity(count);
    for i in 0..count {
        let name = format!("{prefix}{i}");
        let ws = apps[i % apps.len()].connected(&name).await;
        watchers.push(Watcher {
            name,
            ws,
            online: BTreeSet::new(),
            heard: Vec::new(),
        });
    }
    watchers
}

/// Every joiner sends `join` before any reads its answer, then each takes its `joined`.
async fn storm_join(joiners: &mut [Watcher], room: &str) {
    for joiner in joiners.iter_mut() {
        joiner
            .ws
            .send_json(json!({ "type": "join", "room": room }))
            .await;
    }
    for joiner in joiners.iter_mut() {
        joiner.joined(room).await;
    }
}

/// An observer joined before a storm of joins and then of leaves: it hears each joiner go
/// online exactly once and offline exactly once; every joiner ends seeing everyone.
async fn storm(apps: &[&TestApp]) {
    // Arrange: the observer is in the room first.
    let mut observer = watchers(apps, "vigia", 1).await.remove(0);
    observer
        .ws
        .send_json(json!({ "type": "join", "room": "general" }))
        .await;
    observer.joined("general").await;
    let mut joiners = watchers(apps, "tormenta", STORM).await;

    // Act: they all join at once.
    storm_join(&mut joiners, "general").await;

    // Assert: everyone ends with the full set.
    let everyone: BTreeSet<String> = joiners
        .iter()
        .map(|joiner| joiner.name.clone())
        .chain([observer.name.clone()])
        .collect();
    observer.until(&everyone).await;
    for joiner in &mut joiners {
        joiner.until(&everyone).await;
    }
    let mut heard_online: Vec<String> = observer
        .heard
        .iter()
        .map(|(user, _)| user.clone())
        .collect();
    heard_online.sort();
    let mut expected: Vec<String> = joiners.iter().map(|joiner| joiner.name.clone()).collect();
    expected.sort();
    assert_eq!(heard_online, expected, "each joiner announced once");

    // Act: they all leave at once (half with `leave`, half by closing).
    let (leaving, closing) = joiners.split_at_mut(STORM / 2);
    for joiner in leaving.iter_mut() {
        joiner
            .ws
            .send_json(json!({ "type": "leave", "room": "general" }))
            .await;
    }
    for joiner in closing.iter_mut() {
        joiner.ws.send_raw(tungstenite_close()).await;
    }

    // Assert: the observer ends alone, having heard each leave once.
    observer.heard.clear();
    let alone = BTreeSet::from([observer.name.clone()]);
    observer.until(&alone).await;
    let mut heard_offline: Vec<(String, String)> = observer.heard.clone();
    heard_offline.sort();
    let expected: Vec<(String, String)> = expected
        .into_iter()
        .map(|name| (name, "offline".to_owned()))
        .collect();
    assert_eq!(heard_offline, expected, "each leaver announced once");
    observer.ws.assert_usable().await;
}

fn tungstenite_close() -> tokio_tungstenite::tungstenite::Message {
    tokio_tungstenite::tungstenite::Message::Close(None)
}

async fn a_storm_of_joins_and_leaves_is_announced_once_and_ends_with_the_right_online_set(
    app: TestApp,
) {
    storm(&[&app]).await;
}

/// A user with two tabs: the second tab's join and the first tab's leave change nothing for
/// the others; the last tab's leave does.
async fn presence_counts_users_not_tabs_under_windows(app: TestApp) {
    // Arrange
    let mut observer = watchers(&[&app], "vigia", 1).await.remove(0);
    observer
        .ws
        .send_json(json!({ "type": "join", "room": "general" }))
        .await;
    observer.joined("general").await;
    let token = app.signup("ana").await;
    let mut tab1 = app.ws(&token).await;
    let mut tab2 = app.ws(&token).await;

    // Act
    tab1.join("general").await;
    let second = tab2.join("general").await;
    tab1.send_json(json!({ "type": "leave", "room": "general" }))
        .await;
    assert_eq!(tab1.recv().await["type"], "left");
    tab2.send_json(json!({ "type": "leave", "room": "general" }))
        .await;
    assert_eq!(tab2.recv().await["type"], "left");

    // Assert: one online, one offline, in that order.
    assert_eq!(
        names(&second["online"]),
        BTreeSet::from(["ana".to_owned(), "vigia0".to_owned()])
    );
    let expected = BTreeSet::from(["vigia0".to_owned(), "ana".to_owned()]);
    observer.until(&expected).await;
    observer.until(&BTreeSet::from(["vigia0".to_owned()])).await;
    assert_eq!(
        observer.heard,
        vec![
            ("ana".to_owned(), "online".to_owned()),
            ("ana".to_owned(), "offline".to_owned())
        ]
    );
}

crate::on_both_backends!(
    a_storm_of_joins_and_leaves_is_announced_once_and_ends_with_the_right_online_set,
    presence_counts_users_not_tabs_under_windows,
);

/// The same storm with the joiners spread over two nodes of one Redis.
#[tokio::test]
async fn a_storm_across_two_nodes_ends_with_the_right_online_set_everywhere() {
    let Some(config) = test_config(Backend::Redis).await else {
        return;
    };
    let a = spawn_app_with(config.clone()).await;
    let b = spawn_app_with(config).await;
    storm(&[&a, &b]).await;
}
