//! The backend behaviour suite, written once over [`Backends`] and run against every backend
//! (the object_store idea): the in-process one always, Redis when a server is available.
//! Then the Redis-only tests: two nodes on one Redis must act as one server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chat::backend::{
    Audience, Backends, ConnId, Draft, HistoryQuery, LOGIN_WINDOW, RoomEvent, StoreError,
    StoredFrame,
};
use chat::domain::{Role, Room, RoomId, User, UserRecord};
use chat::ws::hub::{Hub, Subscriber};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::redis_server::{private_redis, redis_url, unique_prefix};

/// How long a test waits for an event before it fails.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

// ----------------------------------------------------------------------------------------------
// Test nodes
// ----------------------------------------------------------------------------------------------

/// One server node under test: its backends, the hub they deliver into, and its background tasks.
struct Node {
    backends: Backends,
    hub: Arc<Hub>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn memory_node() -> Node {
    let hub = Arc::new(Hub::new());
    Node {
        backends: chat::backend::memory::backends(hub.clone()),
        hub,
        tasks: TaskTracker::new(),
        shutdown: CancellationToken::new(),
    }
}

async fn redis_node(url: &str, prefix: &str) -> Node {
    let hub = Arc::new(Hub::new());
    let tasks = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let backends = chat::backend::redis::backends(
        url,
        prefix,
        hub.clone(),
        &tasks,
        shutdown.clone(),
        &Default::default(),
    )
    .await
    .expect("the Redis backend should connect to the test server");
    Node {
        backends,
        hub,
        tasks,
        shutdown,
    }
}

/// Subscribes a fake connection of `user` to `room` on the node's hub.
fn listen(node: &Node, room: &RoomId, user: &str) -> mpsc::Receiver<Arc<RoomEvent>> {
    let (queue, events) = mpsc::channel(1024);
    let subscriber = Subscriber {
        user: user.into(),
        queue,
        overflow: CancellationToken::new(),
    };
    node.hub.subscribe(room, ConnId::new_v4(), subscriber);
    events
}

async fn next_event(events: &mut mpsc::Receiver<Arc<RoomEvent>>) -> Arc<RoomEvent> {
    tokio::time::timeout(EVENT_TIMEOUT, events.recv())
        .await
        .expect("no event reached the hub in time: is the fan-out listener running?")
        .expect("the hub dropped the subscriber")
}

// ----------------------------------------------------------------------------------------------
// Small builders
// ----------------------------------------------------------------------------------------------

fn room_id(id: &str) -> RoomId {
    RoomId::parse(id).unwrap()
}

fn user(username: &str, email: &str) -> UserRecord {
    UserRecord {
        user: User {
            id: uuid::Uuid::new_v4().to_string(),
            username: username.into(),
            email: email.into(),
            role: Role::Member,
        },
        password_hash: "$argon2id$fake".into(),
    }
}

fn room(id: &str, created_by: Option<&str>) -> Room {
    Room {
        id: id.into(),
        name: format!("Sala {id}"),
        private: false,
        created_by: created_by.map(Into::into),
    }
}

fn draft(room: &RoomId, user: &str, text: &str, client_id: Option<&str>) -> Draft {
    Draft {
        room: room.clone(),
        user: user.into(),
        text: text.into(),
        client_id: client_id.map(Into::into),
        ts: chat::domain::now_rfc3339(),
    }
}

fn event(room: &RoomId, skip_user: Option<&str>, frame: &str) -> RoomEvent {
    RoomEvent {
        room: room.clone(),
        message_id: None,
        audience: skip_user.map_or(Audience::Everyone, |user| Audience::AllBut(user.into())),
        frame: frame.to_owned().into(),
    }
}

fn ids(frames: &[StoredFrame]) -> Vec<u64> {
    frames.iter().map(|frame| frame.id).collect()
}

async fn append_n(node: &Node, room: &RoomId, n: usize) -> Vec<StoredFrame> {
    let mut frames = Vec::new();
    for i in 1..=n {
        let appended = node
            .backends
            .messages
            .append(draft(room, "ana", &format!("m{i}"), None))
            .await
            .unwrap();
        frames.push(appended.frame);
    }
    frames
}

// ----------------------------------------------------------------------------------------------
// The suite: every backend must pass these
// ----------------------------------------------------------------------------------------------

async fn users_are_unique_by_name_and_by_case_insensitive_email(node: &Node) {
    let users = &node.backends.users;
    users
        .create_user(user("ana", "Ana@Example.com"))
        .await
        .unwrap();

    let same_name = users.create_user(user("ana", "otra@example.com")).await;
    assert!(
        matches!(&same_name, Err(StoreError::Conflict(text)) if text == "el nombre de usuario ya existe"),
        "{same_name:?}"
    );
    let same_email = users.create_user(user("bea", "ANA@example.COM")).await;
    assert!(
        matches!(&same_email, Err(StoreError::Conflict(text)) if text == "el e-mail ya está registrado"),
        "{same_email:?}"
    );
    // A refused user left nothing behind: "bea" is still free.
    assert!(users.user_by_name("bea").await.unwrap().is_none());
    users
        .create_user(user("bea", "bea@example.com"))
        .await
        .unwrap();

    let ana = users.user_by_name("ana").await.unwrap().unwrap();
    assert_eq!(ana.user.email, "Ana@Example.com");
    assert_eq!(ana.password_hash, "$argon2id$fake");
    assert!(users.user_by_name("nadie").await.unwrap().is_none());
}

async fn rooms_are_created_once_and_keep_their_members(node: &Node) {
    let rooms = &node.backends.rooms;
    rooms.create_room(room("zeta", Some("ana"))).await.unwrap();
    rooms.create_room(room("alfa", None)).await.unwrap();
    let again = rooms.create_room(room("zeta", Some("bea"))).await;
    assert!(
        matches!(&again, Err(StoreError::Conflict(text)) if text == "la sala ya existe"),
        "{again:?}"
    );

    let zeta = room_id("zeta");
    assert_eq!(
        rooms.room(&zeta).await.unwrap(),
        Some(room("zeta", Some("ana")))
    );
    assert_eq!(rooms.room(&room_id("nada")).await.unwrap(), None);
    let listed: Vec<String> = rooms
        .rooms()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, ["alfa", "zeta"], "rooms are listed by id");

    // The creator is a member; the refused second creation did not add "bea".
    assert!(rooms.is_member(&zeta, "ana").await.unwrap());
    assert!(!rooms.is_member(&zeta, "bea").await.unwrap());
    assert!(rooms.add_member(&zeta, "bea").await.unwrap());
    assert!(
        !rooms.add_member(&zeta, "bea").await.unwrap(),
        "already a member"
    );
    assert_eq!(rooms.member_count(&zeta).await.unwrap(), 2);
    assert_eq!(rooms.member_count(&room_id("alfa")).await.unwrap(), 0);
    assert!(!rooms.add_member(&room_id("nada"), "ana").await.unwrap());
    assert!(!rooms.is_member(&room_id("nada"), "ana").await.unwrap());
}

async fn appended_messages_get_ids_from_one_in_each_room(node: &Node) {
    let general = RoomId::general();
    let frames = append_n(node, &general, 3).await;
    assert_eq!(ids(&frames), [1, 2, 3]);
    let other = node
        .backends
        .messages
        .append(draft(
            &room_id("otra"),
            "bea",
            "hola \"mundo\"\n🎉",
            Some("c-1"),
        ))
        .await
        .unwrap();
    assert_eq!(other.frame.id, 1, "each room counts on its own");
    assert!(!other.duplicate);

    // The frame is the exact `message` frame, the same one history returns.
    let parsed: serde_json::Value = serde_json::from_str(&other.frame.json).unwrap();
    assert_eq!(parsed["type"], "message");
    assert_eq!(parsed["room"], "otra");
    assert_eq!(parsed["id"], 1);
    assert_eq!(parsed["text"], "hola \"mundo\"\n🎉");
    assert_eq!(parsed["client_id"], "c-1");
    let page = node
        .backends
        .messages
        .history(&room_id("otra"), HistoryQuery::Latest { limit: 50 })
        .await
        .unwrap();
    assert_eq!(page.frames[0].json, other.frame.json);
}

async fn a_repeated_client_id_returns_the_original_and_stores_nothing(node: &Node) {
    let general = RoomId::general();
    let messages = &node.backends.messages;
    let mut events = listen(node, &general, "ana");
    let first = messages
        .append(draft(&general, "ana", "hola", Some("c1")))
        .await
        .unwrap();
    let again = messages
        .append(draft(&general, "ana", "otro texto", Some("c1")))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(
        again.duplicate,
        "the same (user, room, client_id) is a repeat"
    );
    assert_eq!(again.frame.id, first.frame.id);
    assert_eq!(
        again.frame.json, first.frame.json,
        "the repeat answers the original frame"
    );

    // The same client_id from another user, or in another room, is a new message.
    let other_user = messages
        .append(draft(&general, "bea", "hola", Some("c1")))
        .await
        .unwrap();
    assert!(!other_user.duplicate);
    assert_eq!(other_user.frame.id, 2);
    let other_room = messages
        .append(draft(&room_id("otra"), "ana", "x", Some("c1")))
        .await
        .unwrap();
    assert!(!other_room.duplicate);

    let page = messages
        .history(&general, HistoryQuery::Latest { limit: 50 })
        .await
        .unwrap();
    assert_eq!(ids(&page.frames), [1, 2], "the repeat was not stored");
    // Nor broadcast: the hub got message 1 and then message 2, nothing in between.
    assert_eq!(next_event(&mut events).await.message_id, Some(1));
    assert_eq!(next_event(&mut events).await.message_id, Some(2));
}

async fn append_checked_checks_the_room_then_the_membership_then_appends(node: &Node) {
    use chat::backend::Checked;
    let (rooms, messages) = (node.backends.rooms.as_ref(), &node.backends.messages);
    let secret = room_id("secreta");
    rooms
        .create_room(Room {
            private: true,
            ..room("secreta", Some("ana"))
        })
        .await
        .unwrap();
    rooms.create_room(room("abierta", None)).await.unwrap();
    let mut events = listen(node, &secret, "ana");

    let unknown = messages
        .append_checked(rooms, draft(&room_id("nada"), "ana", "hola", None))
        .await
        .unwrap();
    assert!(matches!(unknown, Checked::NotFound), "{unknown:?}");
    let outsider = messages
        .append_checked(rooms, draft(&secret, "bea", "hola", Some("c1")))
        .await
        .unwrap();
    assert!(matches!(outsider, Checked::NotMember), "{outsider:?}");

    let stored = messages
        .append_checked(rooms, draft(&secret, "ana", "hola", Some("c1")))
        .await
        .unwrap();
    let Checked::Stored(frame) = stored else {
        panic!("a member's message should be stored: {stored:?}");
    };
    assert_eq!(frame.id, 1, "the refused sends took no id");
    let again = messages
        .append_checked(rooms, draft(&secret, "ana", "otro texto", Some("c1")))
        .await
        .unwrap();
    assert!(
        matches!(&again, Checked::Duplicate(original) if original.json == frame.json),
        "a repeated client_id answers the original: {again:?}"
    );
    // A public room needs no membership.
    let public = messages
        .append_checked(rooms, draft(&room_id("abierta"), "bea", "hola", None))
        .await
        .unwrap();
    assert!(
        matches!(&public, Checked::Stored(f) if f.id == 1),
        "{public:?}"
    );

    // Removed from the private room: refused, even as a repeat of a stored send.
    assert!(rooms.remove_member(&secret, "ana").await.unwrap());
    let removed = messages
        .append_checked(rooms, draft(&secret, "ana", "hola", Some("c1")))
        .await
        .unwrap();
    assert!(matches!(removed, Checked::NotMember), "{removed:?}");
    // Back in: the next message gets the next id.
    assert!(rooms.add_member(&secret, "ana").await.unwrap());
    let back = messages
        .append_checked(rooms, draft(&secret, "ana", "de vuelta", None))
        .await
        .unwrap();
    assert!(matches!(&back, Checked::Stored(f) if f.id == 2), "{back:?}");

    let page = messages
        .history(&secret, HistoryQuery::Latest { limit: 50 })
        .await
        .unwrap();
    assert_eq!(
        ids(&page.frames),
        [1, 2],
        "the refused sends stored nothing"
    );
    assert_eq!(page.frames[0].json, frame.json);
    let nothing = messages
        .history(&room_id("nada"), HistoryQuery::Latest { limit: 50 })
        .await
        .unwrap();
    assert!(nothing.frames.is_empty(), "an unknown room stores nothing");
    // Nor broadcast anything: the hub got message 1 and then message 2, nothing in between.
    assert_eq!(next_event(&mut events).await.message_id, Some(1));
    assert_eq!(next_event(&mut events).await.message_id, Some(2));
}

/// The same cases as the in-process backend's unit test.
async fn history_queries_follow_the_contract(node: &Node) {
    let room = RoomId::general();
    append_n(node, &room, 10).await;
    use HistoryQuery::*;
    #[rustfmt::skip]
    let cases = [
        (Latest { limit: 3 }, vec![8, 9, 10], true),
        (Latest { limit: 10 }, (1..=10).collect(), false),
        (Latest { limit: 0 }, vec![], true),
        (Before { before: 4, limit: 5 }, vec![1, 2, 3], false),
        (Before { before: 6, limit: 2 }, vec![4, 5], true),
        (Before { before: 1, limit: 2 }, vec![], false),
        (After { after: 7, limit: 2 }, vec![8, 9], true),
        (After { after: 8, limit: 2 }, vec![9, 10], false),
        (After { after: 99, limit: 2 }, vec![], false),
        (Between { after: 2, before: 6, limit: 10 }, vec![3, 4, 5], false),
        (Between { after: 2, before: 9, limit: 3 }, vec![3, 4, 5], true),
        (Between { after: 8, before: 3, limit: 10 }, vec![], false),
    ];
    for (query, expected_ids, expected_more) in cases {
        let page = node.backends.messages.history(&room, query).await.unwrap();
        let got = (ids(&page.frames), page.has_more);
        assert_eq!(got, (expected_ids, expected_more), "{query:?}");
    }

    let empty_room = node
        .backends
        .messages
        .history(&room_id("vacia"), Latest { limit: 50 })
        .await
        .unwrap();
    assert!(empty_room.frames.is_empty() && !empty_room.has_more);
}

async fn presence_counts_connections_per_user(node: &Node) {
    let presence = &node.backends.presence;
    let room = RoomId::general();
    let (tab1, tab2, zoe_tab) = (ConnId::new_v4(), ConnId::new_v4(), ConnId::new_v4());
    assert!(presence.join(&room, "zoe", zoe_tab).await.unwrap());
    assert!(
        presence.join(&room, "ana", tab1).await.unwrap(),
        "ana's first tab"
    );
    assert!(
        !presence.join(&room, "ana", tab2).await.unwrap(),
        "ana's second tab"
    );
    assert!(
        !presence.join(&room, "ana", tab2).await.unwrap(),
        "the same tab again"
    );
    assert_eq!(
        presence.online(&room).await.unwrap(),
        ["ana", "zoe"],
        "sorted by name"
    );
    assert!(presence.online(&room_id("otra")).await.unwrap().is_empty());

    assert!(
        !presence.leave(&room, "ana", tab1).await.unwrap(),
        "ana has another tab"
    );
    assert_eq!(presence.online(&room).await.unwrap(), ["ana", "zoe"]);
    assert!(
        presence.leave(&room, "ana", tab2).await.unwrap(),
        "ana's last tab"
    );
    assert!(
        !presence.leave(&room, "ana", tab2).await.unwrap(),
        "already gone"
    );
    assert!(!presence.leave(&room_id("otra"), "ana", tab1).await.unwrap());
    assert_eq!(presence.online(&room).await.unwrap(), ["zoe"]);
}

async fn the_login_limiter_blocks_at_five_attempts_and_reset_clears_it(node: &Node) {
    let limiter = &node.backends.login_limiter;
    for n in 1..=5 {
        assert_eq!(
            limiter.attempt("ana").await.unwrap(),
            None,
            "attempt {n} is counted"
        );
    }
    let wait = limiter
        .attempt("ana")
        .await
        .unwrap()
        .expect("a 6th attempt is refused");
    assert!(wait > Duration::ZERO && wait <= LOGIN_WINDOW, "{wait:?}");
    assert_eq!(
        limiter.attempt("bea").await.unwrap(),
        None,
        "counted per username"
    );

    // A refunded attempt frees one place, and only one.
    limiter.refund("ana").await.unwrap();
    assert_eq!(limiter.attempt("ana").await.unwrap(), None);
    assert!(limiter.attempt("ana").await.unwrap().is_some());

    limiter.reset("ana").await.unwrap();
    assert_eq!(
        limiter.attempt("ana").await.unwrap(),
        None,
        "the count starts again"
    );
}

async fn published_events_reach_the_hub_skipping_the_named_user(node: &Node) {
    let room = RoomId::general();
    let mut ana = listen(node, &room, "ana");
    let mut bea = listen(node, &room, "bea");
    let typing = event(
        &room,
        Some("ana"),
        r#"{"type":"typing","room":"general","user":"ana"}"#,
    );
    let presence = event(&room, None, "{\"type\":\"presence\",\n\"user\":\"bea\"}");
    node.backends.fanout.publish(typing.clone()).await.unwrap();
    node.backends
        .fanout
        .publish(presence.clone())
        .await
        .unwrap();

    assert_eq!(*next_event(&mut bea).await, typing);
    assert_eq!(*next_event(&mut bea).await, presence);
    assert_eq!(
        *next_event(&mut ana).await,
        presence,
        "ana skips her own typing"
    );
}

async fn appended_messages_reach_the_hub_in_id_order(node: &Node) {
    let room = RoomId::general();
    let mut events = listen(node, &room, "bea");
    let frames = append_n(node, &room, 20).await;
    for frame in frames {
        let event = next_event(&mut events).await;
        assert_eq!(event.message_id, Some(frame.id));
        assert_eq!(event.frame, frame.json);
        assert_eq!(event.audience, Audience::Everyone);
    }
}

/// Runs each suite function as one test per backend: `backend_suite::on_memory::<name>` and
/// `backend_suite::on_redis::<name>` (skipped when no Redis is available).
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod on_memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::memory_node()).await;
                }
            )*
        }
        mod on_redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(url) = crate::redis_server::redis_url().await else { return };
                    let prefix = crate::redis_server::unique_prefix();
                    super::$name(&super::redis_node(&url, &prefix).await).await;
                }
            )*
        }
    };
}

async fn a_rooms_epoch_stays_the_same_while_its_history_lives(node: &Node) {
    let (general, other) = (RoomId::general(), room_id("otra"));
    let first = node.backends.messages.epoch(&general).await.unwrap();
    append_n(node, &general, 3).await;
    assert!(!first.is_empty());
    assert_eq!(node.backends.messages.epoch(&general).await.unwrap(), first);
    let again = node.backends.messages.epoch(&other).await.unwrap();
    assert_eq!(node.backends.messages.epoch(&other).await.unwrap(), again);
}

suite!(
    a_rooms_epoch_stays_the_same_while_its_history_lives,
    users_are_unique_by_name_and_by_case_insensitive_email,
    rooms_are_created_once_and_keep_their_members,
    appended_messages_get_ids_from_one_in_each_room,
    a_repeated_client_id_returns_the_original_and_stores_nothing,
    append_checked_checks_the_room_then_the_membership_then_appends,
    history_queries_follow_the_contract,
    presence_counts_connections_per_user,
    the_login_limiter_blocks_at_five_attempts_and_reset_clears_it,
    published_events_reach_the_hub_skipping_the_named_user,
    appended_messages_reach_the_hub_in_id_order,
);

// ----------------------------------------------------------------------------------------------
// Redis only: several nodes on one Redis act as one server
// ----------------------------------------------------------------------------------------------

/// Two nodes of one cluster: same Redis, same prefix, each with its own hub.
async fn two_nodes() -> Option<(Node, Node)> {
    let url = redis_url().await?;
    let prefix = unique_prefix();
    Some((
        redis_node(&url, &prefix).await,
        redis_node(&url, &prefix).await,
    ))
}

/// A plain connection to the test Redis, to look at or tamper with the keys directly.
async fn raw_redis(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    client.get_multiplexed_async_connection().await.unwrap()
}

#[tokio::test]
async fn a_message_appended_on_one_node_reaches_the_other_nodes_hub() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let room = RoomId::general();
    let mut on_a = listen(&a, &room, "ana");
    let mut on_b = listen(&b, &room, "bea");

    let sent = a
        .backends
        .messages
        .append(draft(&room, "ana", "hola", None))
        .await
        .unwrap();

    for events in [&mut on_a, &mut on_b] {
        let event = next_event(events).await;
        assert_eq!(event.message_id, Some(1));
        assert_eq!(event.frame, sent.frame.json);
    }
    let page = b
        .backends
        .messages
        .history(&room, HistoryQuery::Latest { limit: 5 })
        .await
        .unwrap();
    assert_eq!(
        page.frames[0].json, sent.frame.json,
        "B reads A's message from history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_on_two_nodes_get_increasing_ids_in_the_same_order_everywhere() {
    const PER_NODE: usize = 40;
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let room = RoomId::general();
    let mut on_a = listen(&a, &room, "x");
    let mut on_b = listen(&b, &room, "y");

    let mut writers = Vec::new();
    for (node, user) in [(&a, "ana"), (&b, "bea")] {
        for i in 0..PER_NODE {
            let messages = node.backends.messages.clone();
            let draft = draft(&room, user, &format!("{user} {i}"), None);
            writers.push(tokio::spawn(async move { messages.append(draft).await }));
        }
    }
    let mut assigned = BTreeSet::new();
    for writer in writers {
        assert!(
            assigned.insert(writer.await.unwrap().unwrap().frame.id),
            "ids are distinct"
        );
    }
    let total = 2 * PER_NODE as u64;
    assert_eq!(assigned, (1..=total).collect(), "no id skipped or repeated");

    let mut received = [Vec::new(), Vec::new()];
    for (events, seen) in [&mut on_a, &mut on_b].into_iter().zip(&mut received) {
        for _ in 0..total {
            seen.push(next_event(events).await.message_id.unwrap());
        }
    }
    assert_eq!(
        received[0],
        (1..=total).collect::<Vec<_>>(),
        "node A delivers in id order"
    );
    assert_eq!(
        received[1], received[0],
        "both nodes deliver in the same order"
    );
}

#[tokio::test]
async fn presence_on_one_node_is_seen_by_the_other() {
    let Some((a, b)) = two_nodes().await else {
        return;
    };
    let room = RoomId::general();
    let (on_a, on_b) = (ConnId::new_v4(), ConnId::new_v4());

    assert!(a.backends.presence.join(&room, "ana", on_a).await.unwrap());
    assert_eq!(b.backends.presence.online(&room).await.unwrap(), ["ana"]);
    assert!(
        !b.backends.presence.join(&room, "ana", on_b).await.unwrap(),
        "a second connection on another node is not a first join"
    );
    assert!(!a.backends.presence.leave(&room, "ana", on_a).await.unwrap());
    assert!(
        b.backends.presence.leave(&room, "ana", on_b).await.unwrap(),
        "the last one"
    );
    assert!(a.backends.presence.online(&room).await.unwrap().is_empty());
}

#[tokio::test]
async fn presence_left_behind_by_a_crashed_node_expires() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix();
    let node = redis_node(&url, &prefix).await;
    let room = RoomId::general();
    // What a node that crashed long ago leaves: entries whose expiry (ms) has passed.
    let mut raw = raw_redis(&url).await;
    redis::pipe()
        .zadd(format!("{prefix}:online:general"), "ghost", 1)
        .zadd(format!("{prefix}:conns:general:ghost"), "old-conn", 1)
        .exec_async(&mut raw)
        .await
        .unwrap();

    assert!(
        node.backends
            .presence
            .online(&room)
            .await
            .unwrap()
            .is_empty()
    );
    let first = node
        .backends
        .presence
        .join(&room, "ghost", ConnId::new_v4())
        .await
        .unwrap();
    assert!(first, "expired connections do not count");
    assert_eq!(
        node.backends.presence.online(&room).await.unwrap(),
        ["ghost"]
    );
}

/// Takes one heartbeat (10 s): the heartbeat records again what Redis lost, and does not bring
/// back a connection that left.
#[tokio::test]
async fn the_heartbeat_restores_live_connections_and_not_departed_ones() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix();
    let node = redis_node(&url, &prefix).await;
    let room = RoomId::general();
    let presence = &node.backends.presence;
    presence.join(&room, "ana", ConnId::new_v4()).await.unwrap();
    let bea = ConnId::new_v4();
    presence.join(&room, "bea", bea).await.unwrap();
    presence.leave(&room, "bea", bea).await.unwrap();
    // Redis loses ana's entries (a restart without persistence, say).
    let mut raw = raw_redis(&url).await;
    redis::cmd("DEL")
        .arg(format!("{prefix}:online:general"))
        .arg(format!("{prefix}:conns:general:ana"))
        .exec_async(&mut raw)
        .await
        .unwrap();
    assert!(presence.online(&room).await.unwrap().is_empty());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while presence.online(&room).await.unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the heartbeat did not restore ana"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        presence.online(&room).await.unwrap(),
        ["ana"],
        "bea stays gone"
    );
}

#[tokio::test]
async fn corrupt_data_in_redis_is_an_error_not_a_panic() {
    let Some(url) = redis_url().await else { return };
    let prefix = unique_prefix();
    let node = redis_node(&url, &prefix).await;
    let mut raw = raw_redis(&url).await;
    redis::pipe()
        .set(format!("{prefix}:user:ana"), "{not json")
        .hset(format!("{prefix}:rooms"), "rota", "[]")
        .set(format!("{prefix}:login:ana"), "muchos")
        .exec_async(&mut raw)
        .await
        .unwrap();

    let user = node.backends.users.user_by_name("ana").await;
    assert!(matches!(user, Err(StoreError::Corrupt(_))), "{user:?}");
    let rooms = node.backends.rooms.rooms().await;
    assert!(matches!(rooms, Err(StoreError::Corrupt(_))), "{rooms:?}");
    let blocked = node.backends.login_limiter.attempt("ana").await;
    assert!(
        matches!(blocked, Err(StoreError::Corrupt(_))),
        "{blocked:?}"
    );

    // A payload on the events channel that is not an event is skipped; the next one arrives.
    let room = RoomId::general();
    let mut events = listen(&node, &room, "bea");
    let _: u64 = redis::cmd("PUBLISH")
        .arg(format!("{prefix}:events"))
        .arg("basura sin formato")
        .query_async(&mut raw)
        .await
        .unwrap();
    let good = event(&room, None, "{}");
    node.backends.fanout.publish(good.clone()).await.unwrap();
    assert_eq!(*next_event(&mut events).await, good);
}

#[tokio::test]
async fn the_listener_resubscribes_after_its_connection_is_killed() {
    // A private server: killing pub/sub clients on the shared one would disturb other tests.
    let Some(server) = private_redis() else {
        return;
    };
    let node = redis_node(&server.url, &unique_prefix()).await;
    let room = RoomId::general();
    let mut events = listen(&node, &room, "bea");

    let mut raw = raw_redis(&server.url).await;
    let killed: u64 = redis::cmd("CLIENT")
        .arg(&["KILL", "TYPE", "pubsub"])
        .query_async(&mut raw)
        .await
        .unwrap();
    assert_eq!(killed, 1, "the node's listener was the only pub/sub client");

    // Events published while it reconnects are lost (pub/sub keeps nothing); keep publishing
    // until one arrives.
    assert_listener_comes_back(&node, &room, &mut events).await;
}

#[tokio::test]
async fn health_reports_redis_and_fails_when_it_stops() {
    let Some(server) = private_redis() else {
        return;
    };
    let node = redis_node(&server.url, &unique_prefix()).await;
    let health = node
        .backends
        .health
        .clone()
        .expect("Redis has a health check");
    assert_eq!(health.name(), "redis");
    health.check().await.unwrap();

    drop(server);
    let check = health.check().await;
    assert!(
        matches!(check, Err(StoreError::Unavailable(_))),
        "{check:?}"
    );
    let append = node
        .backends
        .messages
        .append(draft(&RoomId::general(), "ana", "x", None))
        .await;
    assert!(
        matches!(append, Err(StoreError::Unavailable(_))),
        "{append:?}"
    );
}

#[tokio::test]
async fn connecting_to_no_redis_is_unavailable() {
    let tasks = TaskTracker::new();
    let hub = Arc::new(Hub::new());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("redis://127.0.0.1:{port}/");
    let result = chat::backend::redis::backends(
        &url,
        "x",
        hub,
        &tasks,
        CancellationToken::new(),
        &Default::default(),
    )
    .await;
    assert!(matches!(result, Err(StoreError::Unavailable(_))));
}

#[tokio::test]
async fn background_tasks_stop_on_shutdown() {
    let Some(url) = redis_url().await else { return };
    let node = redis_node(&url, &unique_prefix()).await;
    assert_eq!(node.tasks.len(), 2, "the listener and the heartbeat");
    node.shutdown.cancel();
    node.tasks.close();
    tokio::time::timeout(Duration::from_secs(5), node.tasks.wait())
        .await
        .expect("the background tasks should stop soon after shutdown");
}

#[tokio::test]
async fn two_in_process_backends_name_their_histories_differently() {
    let (one, other) = (memory_node(), memory_node());
    let room = RoomId::general();
    assert_ne!(
        one.backends.messages.epoch(&room).await.unwrap(),
        other.backends.messages.epoch(&room).await.unwrap(),
        "a restarted in-process server lost its history: its epoch must change"
    );
}

#[tokio::test]
async fn the_epoch_is_shared_by_the_nodes_and_changes_when_redis_is_emptied() {
    let Some(url) = redis_url().await else {
        return;
    };
    let prefix = unique_prefix();
    let (a, b) = (
        redis_node(&url, &prefix).await,
        redis_node(&url, &prefix).await,
    );
    let room = RoomId::general();
    let before = a.backends.messages.epoch(&room).await.unwrap();
    assert_eq!(b.backends.messages.epoch(&room).await.unwrap(), before);

    // Emptied: every key of this prefix goes, the history with it.
    let mut raw = raw_redis(&url).await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut raw)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut raw)
        .await
        .unwrap();

    let after = b.backends.messages.epoch(&room).await.unwrap();
    assert_ne!(after, before);
    assert_eq!(a.backends.messages.epoch(&room).await.unwrap(), after);
}

#[tokio::test]
async fn a_node_carries_on_after_redis_restarts_empty() {
    let Some(mut server) = private_redis() else {
        return;
    };
    let node = redis_node(&server.url, &unique_prefix()).await;
    let room = RoomId::general();
    let mut events = listen(&node, &room, "bea");
    node.backends
        .messages
        .append(draft(&room, "ana", "antes", None))
        .await
        .unwrap();
    assert_eq!(next_event(&mut events).await.message_id, Some(1));

    assert!(server.restart(), "the test server did not come back");
    // The first commands may fail while the connections are re-established; then everything
    // works again: scripts are loaded anew and the listener subscribes again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let appended = loop {
        let attempt = node
            .backends
            .messages
            .append(draft(&room, "ana", "después", None))
            .await;
        match attempt {
            Ok(appended) => break appended,
            Err(StoreError::Unavailable(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(err) => panic!("the node did not recover: {err}"),
        }
    };
    assert_eq!(appended.frame.id, 1, "an empty Redis starts the ids again");
    node.backends
        .health
        .as_ref()
        .unwrap()
        .check()
        .await
        .unwrap();
    assert_listener_comes_back(&node, &room, &mut events).await;
}

/// Publishes until an event reaches the node's hub again (pub/sub keeps nothing, so events sent
/// while the listener reconnects are lost); fails after 10 s.
async fn assert_listener_comes_back(
    node: &Node,
    room: &RoomId,
    events: &mut tokio::sync::mpsc::Receiver<std::sync::Arc<RoomEvent>>,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        node.backends
            .fanout
            .publish(event(room, None, "{}"))
            .await
            .unwrap();
        let wait = tokio::time::timeout(Duration::from_millis(200), events.recv()).await;
        if let Ok(Some(_)) = wait {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listener never came back"
        );
    }
}
