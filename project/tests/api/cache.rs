//! The cache of `GET /rooms` and `GET /admin/stats` (contract, "Caching"): `X-Cache: MISS` then
//! `HIT`, invalidation by every write that changes the answer, one entry per user, expiry after
//! the TTL, and, on the `Cache` type itself, one computation for many concurrent misses (also
//! across two nodes on Redis).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use chat::cache::{Cache, CacheStatus};
use chat::error::ApiError;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::redis_server;

/// `X-Cache` of an answer.
fn x_cache(answer: &Answer) -> &str {
    answer
        .headers
        .get("x-cache")
        .and_then(|value| value.to_str().ok())
        .unwrap_or("<no X-Cache header>")
}

/// `GET /rooms` as `token`'s user, checked to be a 200.
async fn rooms(app: &TestApp, token: &str) -> Answer {
    let answer = app.get("/rooms", Some(token)).await;
    assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.body);
    answer
}

/// The room `id` in a `GET /rooms` body, if listed.
fn room<'a>(answer: &'a Answer, id: &str) -> Option<&'a Value> {
    answer
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|room| room["id"] == id)
}

/// Rooms are listed once from the backends and then from the cache, so the list is warm.
async fn warm(app: &TestApp, token: &str) -> Answer {
    let first = rooms(app, token).await;
    assert_eq!(x_cache(&first), "MISS", "a cold list is computed");
    let second = rooms(app, token).await;
    assert_eq!(
        x_cache(&second),
        "HIT",
        "the second list comes from the cache"
    );
    second
}

async fn delete(app: &TestApp, token: &str, path: &str) -> Answer {
    app.request(app.http.delete(app.url(path)).bearer_auth(token))
        .await
}

// ----------------------------------------------------------------------------------------------
// Through HTTP, on both backends
// ----------------------------------------------------------------------------------------------

async fn rooms_are_a_miss_then_a_hit_with_the_same_body(app: TestApp) {
    let ana = app.signup("ana").await;

    let first = rooms(&app, &ana).await;
    let second = rooms(&app, &ana).await;

    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(x_cache(&second), "HIT");
    assert_eq!(second.body, first.body);
    assert!(room(&first, "general").is_some(), "{:?}", first.body);
    assert_eq!(
        second.headers["content-type"], "application/json",
        "a cached body is still JSON"
    );
}

async fn creating_a_room_makes_the_next_list_a_miss_that_shows_it(app: TestApp) {
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    warm(&app, &ana).await;

    assert_eq!(
        app.create_room(&bea, "nueva", false).await.status,
        StatusCode::CREATED
    );
    let after = rooms(&app, &ana).await;

    assert_eq!(x_cache(&after), "MISS");
    assert!(room(&after, "nueva").is_some(), "{:?}", after.body);
}

async fn an_invitation_makes_the_next_list_a_miss_that_shows_the_private_room(app: TestApp) {
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    app.create_room(&ana, "secreta", true).await;
    let before = warm(&app, &bea).await;
    assert!(room(&before, "secreta").is_none());

    let invited = app
        .post(
            "/rooms/secreta/members",
            Some(&ana),
            &json!({ "username": "bea" }),
        )
        .await;
    assert_eq!(invited.status, StatusCode::CREATED);
    let after = rooms(&app, &bea).await;

    assert_eq!(x_cache(&after), "MISS");
    assert!(room(&after, "secreta").is_some(), "{:?}", after.body);
}

async fn inviting_a_member_again_changes_nothing_and_keeps_the_cache(app: TestApp) {
    let ana = app.signup("ana").await;
    app.signup("bea").await;
    app.create_room(&ana, "secreta", true).await;
    let invite = json!({ "username": "bea" });
    app.post("/rooms/secreta/members", Some(&ana), &invite)
        .await;
    warm(&app, &ana).await;

    let again = app
        .post("/rooms/secreta/members", Some(&ana), &invite)
        .await;
    assert_eq!(again.status, StatusCode::OK);

    assert_eq!(x_cache(&rooms(&app, &ana).await), "HIT");
}

async fn a_first_join_makes_the_next_list_a_miss_with_one_more_member(app: TestApp) {
    let ana = app.signup("ana").await;
    let before = warm(&app, &ana).await;
    let members = room(&before, "general").unwrap()["members"]
        .as_u64()
        .unwrap();

    let mut bea = app.connected("bea").await;
    bea.join("general").await;
    let after = rooms(&app, &ana).await;

    assert_eq!(x_cache(&after), "MISS");
    assert_eq!(room(&after, "general").unwrap()["members"], members + 1);

    // Joining again (a new connection of a member) changes no count: the cache stays.
    rooms(&app, &ana).await;
    let bea_token = app.token("bea", PASSWORD).await;
    app.ws(&bea_token).await.join("general").await;
    assert_eq!(x_cache(&rooms(&app, &ana).await), "HIT");
}

async fn removing_a_member_makes_the_next_list_a_miss_without_the_room(app: TestApp) {
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    app.create_room(&ana, "secreta", true).await;
    app.post(
        "/rooms/secreta/members",
        Some(&ana),
        &json!({ "username": "bea" }),
    )
    .await;
    let before = warm(&app, &bea).await;
    assert!(room(&before, "secreta").is_some());

    let removed = delete(&app, &ana, "/rooms/secreta/members/bea").await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let after = rooms(&app, &bea).await;

    assert_eq!(x_cache(&after), "MISS");
    assert!(room(&after, "secreta").is_none(), "{:?}", after.body);
}

async fn each_user_has_their_own_entry_and_a_private_room_never_leaks(app: TestApp) {
    let ana = app.signup("ana").await;
    let bea = app.signup("bea").await;
    app.create_room(&ana, "secreta", true).await;

    let ana_list = warm(&app, &ana).await;
    let bea_first = rooms(&app, &bea).await;
    let bea_second = rooms(&app, &bea).await;

    assert!(room(&ana_list, "secreta").is_some());
    assert_eq!(x_cache(&bea_first), "MISS", "bea does not get ana's entry");
    assert!(
        room(&bea_first, "secreta").is_none(),
        "{:?}",
        bea_first.body
    );
    assert_eq!(x_cache(&bea_second), "HIT");
    assert!(
        room(&bea_second, "secreta").is_none(),
        "{:?}",
        bea_second.body
    );
    let ana_again = rooms(&app, &ana).await;
    assert_eq!(x_cache(&ana_again), "HIT");
    assert_eq!(ana_again.body, ana_list.body);
}

async fn admin_stats_are_a_miss_then_a_hit_and_a_new_room_invalidates_them(app: TestApp) {
    let admin = app.admin_token().await;

    let first = app.get("/admin/stats", Some(&admin)).await;
    let second = app.get("/admin/stats", Some(&admin)).await;
    app.create_room(&admin, "nueva", false).await;
    let third = app.get("/admin/stats", Some(&admin)).await;

    assert_eq!(first.status, StatusCode::OK, "{:?}", first.body);
    assert_eq!(x_cache(&first), "MISS");
    assert_eq!(x_cache(&second), "HIT");
    assert_eq!(second.body, first.body);
    assert_eq!(x_cache(&third), "MISS");
}

async fn a_member_may_not_read_admin_stats_even_when_cached(app: TestApp) {
    let admin = app.admin_token().await;
    let ana = app.signup("ana").await;
    app.get("/admin/stats", Some(&admin)).await;

    let answer = app.get("/admin/stats", Some(&ana)).await;

    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert_eq!(answer.error_code(), "forbidden");
}

/// A `chat_cache_*_total{cache="rooms"}` sample of `/metrics` (0 before the first one). The
/// recorder is shared by every server of this test binary: only growth can be asserted.
async fn cache_counter(app: &TestApp, name: &str) -> f64 {
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let series = format!("chat_cache_{name}_total{{cache=\"rooms\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0.0)
}

async fn hits_and_misses_are_counted_in_the_metrics(app: TestApp) {
    let ana = app.signup("ana").await;
    let (hits, misses) = (
        cache_counter(&app, "hits").await,
        cache_counter(&app, "misses").await,
    );

    warm(&app, &ana).await;

    assert!(cache_counter(&app, "hits").await >= hits + 1.0);
    assert!(cache_counter(&app, "misses").await >= misses + 1.0);
}

crate::on_both_backends!(
    rooms_are_a_miss_then_a_hit_with_the_same_body,
    creating_a_room_makes_the_next_list_a_miss_that_shows_it,
    an_invitation_makes_the_next_list_a_miss_that_shows_the_private_room,
    inviting_a_member_again_changes_nothing_and_keeps_the_cache,
    a_first_join_makes_the_next_list_a_miss_with_one_more_member,
    removing_a_member_makes_the_next_list_a_miss_without_the_room,
    each_user_has_their_own_entry_and_a_private_room_never_leaks,
    admin_stats_are_a_miss_then_a_hit_and_a_new_room_invalidates_them,
    a_member_may_not_read_admin_stats_even_when_cached,
    hits_and_misses_are_counted_in_the_metrics,
);

/// A list cached with a short TTL is computed again once the TTL is over, with no write.
#[tokio::test]
async fn a_cached_list_expires_after_the_configured_ttl() {
    for backend in [Backend::Memory, Backend::Redis] {
        let Some(mut config) = test_config(backend).await else {
            continue;
        };
        config.cache.rooms_ttl_ms = 300;
        let app = spawn_app_with(config).await;
        let ana = app.signup("ana").await;

        assert_eq!(x_cache(&rooms(&app, &ana).await), "MISS", "{backend:?}");
        // The TTL running out is the behaviour under test; real time, since Redis expires keys
        // on its own clock (a paused Tokio clock would not move it).
        tokio::time::sleep(Duration::from_millis(800)).await;

        assert_eq!(x_cache(&rooms(&app, &ana).await), "MISS", "{backend:?}");
    }
}

/// Two nodes on one Redis share the cache: what A computed, B serves, and a write on B is seen
/// by A's next list.
#[tokio::test]
async fn two_nodes_share_the_cache_and_its_invalidations() {
    let Some(config) = test_config(Backend::Redis).await else {
        return;
    };
    let a = spawn_app_with(config.clone()).await;
    let b = spawn_app_with(config).await;
    let ana = a.signup("ana").await;

    assert_eq!(x_cache(&rooms(&a, &ana).await), "MISS");
    assert_eq!(x_cache(&rooms(&b, &ana).await), "HIT");
    assert_eq!(
        b.create_room(&ana, "nueva", false).await.status,
        StatusCode::CREATED
    );
    let after = rooms(&a, &ana).await;

    assert_eq!(x_cache(&after), "MISS");
    assert!(room(&after, "nueva").is_some(), "{:?}", after.body);
}

// ----------------------------------------------------------------------------------------------
// The `Cache` type itself, on both stores
// ----------------------------------------------------------------------------------------------

/// A Redis cache on the shared test server under a fresh prefix, or `None` (skip).
async fn redis_cache(prefix: &str) -> Option<Cache> {
    let url = redis_server::redis_url().await?;
    Some(Cache::redis(&url, prefix).await.unwrap())
}

/// Declares each `async fn(Vec<Cache>)` test twice: with an in-memory cache, and with Redis
/// (skipped without Redis). The vector holds one cache (one node).
macro_rules! on_both_caches {
    ($($test:ident),* $(,)?) => {
        mod mechanism_memory {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(vec![chat::cache::Cache::in_memory()]).await;
                }
            )*
        }
        mod mechanism_redis {
            $(
                #[tokio::test]
                async fn $test() {
                    let prefix = $crate::redis_server::unique_prefix();
                    let Some(cache) = super::redis_cache(&prefix).await else {
                        return;
                    };
                    super::$test(vec![cache]).await;
                }
            )*
        }
    };
}

/// The computation of a stampede test: counts its runs, and holds each run until every request
/// of the stampede is inside the cache (see [`stampede`]).
#[derive(Clone)]
struct Computation {
    runs: Arc<AtomicUsize>,
    /// How many requests have called the cache so far.
    arrived: tokio::sync::watch::Receiver<usize>,
    requests: usize,
}

impl Computation {
    async fn run(self, body: &'static str) -> Result<Bytes, String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let mut arrived = self.arrived;
        let requests = self.requests;
        arrived
            .wait_for(|arrived| *arrived == requests)
            .await
            .unwrap();
        Ok(Bytes::from_static(body.as_bytes()))
    }
}

/// `requests` concurrent misses of one cold key, spread over `caches` (the nodes): returns how
/// many computations ran and the statuses.
///
/// The first computation does not finish until every request has called the cache, so no
/// request can find the body already stored and pass without having been part of the
/// stampede. The test runs on one thread (`#[tokio::test]`'s runtime): a request that has just
/// called the cache runs on until it first waits (for moka's entry, this node's turn, or a
/// Redis reply sent before the computation's write), and only then does the computation, woken
/// by the last arrival, go on. A cache without single flight would start a computation for
/// every request that read the key missing: several runs, not one.
async fn stampede(caches: &[Cache], requests: usize) -> (usize, Vec<CacheStatus>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let (arrive, arrived) = tokio::sync::watch::channel(0);
    let arrive = Arc::new(arrive);
    let computation = Computation {
        runs: runs.clone(),
        arrived,
        requests,
    };
    let tasks: Vec<_> = (0..requests)
        .map(|i| {
            let cache = caches[i % caches.len()].clone();
            let computation = computation.clone();
            let arrive = arrive.clone();
            tokio::spawn(async move {
                arrive.send_modify(|arrived| *arrived += 1);
                cache
                    .get_or_compute("cold", Duration::from_secs(5), || {
                        computation.run(r#"{"n":1}"#)
                    })
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        let (body, status) = tokio::time::timeout(FRAME_TIMEOUT, task)
            .await
            .expect("a request never got its answer")
            .unwrap();
        assert_eq!(body, Bytes::from_static(br#"{"n":1}"#));
        statuses.push(status);
    }
    (runs.load(Ordering::SeqCst), statuses)
}

async fn concurrent_misses_of_one_key_compute_it_once(caches: Vec<Cache>) {
    let (runs, statuses) = stampede(&caches, 20).await;

    assert_eq!(runs, 1, "20 concurrent misses must compute once");
    let misses = statuses
        .iter()
        .filter(|status| **status == CacheStatus::Miss)
        .count();
    assert_eq!(misses, 1, "{statuses:?}");
}

async fn a_failed_computation_is_not_cached(caches: Vec<Cache>) {
    let cache = &caches[0];
    let ttl = Duration::from_secs(5);

    let failed = cache
        .get_or_compute("k", ttl, || async { Err::<Bytes, _>("caído".to_owned()) })
        .await;
    let retried = cache
        .get_or_compute("k", ttl, || async {
            Ok::<_, String>(Bytes::from_static(b"1"))
        })
        .await;

    assert_eq!(failed, Err("caído".to_owned()));
    assert_eq!(retried, Ok((Bytes::from_static(b"1"), CacheStatus::Miss)));
}

async fn an_entry_expires_after_its_ttl(caches: Vec<Cache>) {
    let cache = &caches[0];
    let ttl = Duration::from_millis(200);
    let compute = |n: &'static [u8]| move || async move { Ok::<_, String>(Bytes::from_static(n)) };

    let first = cache.get_or_compute("k", ttl, compute(b"1")).await;
    // The TTL running out is the behaviour under test (real time: Redis keeps its own clock).
    tokio::time::sleep(Duration::from_millis(700)).await;
    let later = cache.get_or_compute("k", ttl, compute(b"2")).await;

    assert_eq!(first, Ok((Bytes::from_static(b"1"), CacheStatus::Miss)));
    assert_eq!(later, Ok((Bytes::from_static(b"2"), CacheStatus::Miss)));
}

async fn an_invalidation_starts_a_new_generation_of_room_lists(caches: Vec<Cache>) {
    let cache = &caches[0];
    let list =
        |rooms: &'static [&'static str]| move || async move { Ok::<_, ApiError>(rooms.to_vec()) };

    let first = cache.rooms("ana", list(&["general"])).await.unwrap();
    let cached = cache.rooms("ana", list(&["otra"])).await.unwrap();
    cache.invalidate_rooms().await;
    let fresh = cache
        .rooms("ana", list(&["general", "nueva"]))
        .await
        .unwrap();

    assert_eq!(first.status, CacheStatus::Miss);
    assert_eq!(
        (cached.status, &cached.body),
        (CacheStatus::Hit, &first.body)
    );
    assert_eq!(fresh.status, CacheStatus::Miss);
    assert_eq!(&fresh.body[..], br#"["general","nueva"]"#);
}

on_both_caches!(
    concurrent_misses_of_one_key_compute_it_once,
    a_failed_computation_is_not_cached,
    an_entry_expires_after_its_ttl,
    an_invalidation_starts_a_new_generation_of_room_lists,
);

/// Two cache handles on one prefix: two nodes of a cluster.
async fn two_redis_nodes() -> Option<(Cache, Cache)> {
    let prefix = redis_server::unique_prefix();
    Some((redis_cache(&prefix).await?, redis_cache(&prefix).await?))
}

#[tokio::test]
async fn concurrent_misses_on_two_redis_nodes_compute_once_in_the_cluster() {
    let Some((a, b)) = two_redis_nodes().await else {
        return;
    };

    let (runs, statuses) = stampede(&[a, b], 20).await;

    assert_eq!(runs, 1, "20 misses over two nodes must compute once");
    let misses = statuses
        .iter()
        .filter(|status| **status == CacheStatus::Miss)
        .count();
    assert_eq!(misses, 1, "{statuses:?}");
}

#[tokio::test]
async fn an_invalidation_on_one_redis_node_is_seen_by_the_other() {
    let Some((a, b)) = two_redis_nodes().await else {
        return;
    };
    let list =
        |rooms: &'static [&'static str]| move || async move { Ok::<_, ApiError>(rooms.to_vec()) };

    let on_a = a.rooms("ana", list(&["general"])).await.unwrap();
    let on_b = b.rooms("ana", list(&["otra"])).await.unwrap();
    a.invalidate_rooms().await;
    let fresh_on_b = b.rooms("ana", list(&["general", "nueva"])).await.unwrap();

    assert_eq!(on_a.status, CacheStatus::Miss);
    assert_eq!((on_b.status, &on_b.body), (CacheStatus::Hit, &on_a.body));
    assert_eq!(fresh_on_b.status, CacheStatus::Miss);
    assert_eq!(&fresh_on_b.body[..], br#"["general","nueva"]"#);
}

/// A node that took the computation lock and died: the others wait for the lock to expire,
/// then compute themselves.
#[tokio::test]
async fn a_lock_left_by_a_dead_node_expires_and_another_node_computes() {
    let prefix = redis_server::unique_prefix();
    let Some(cache) = redis_cache(&prefix).await else {
        return;
    };
    let url = redis_server::redis_url().await.unwrap();
    let mut conn = ::redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = ::redis::cmd("SET")
        .arg(format!("{prefix}:cache-lock:k"))
        .arg("nodo-muerto")
        .arg("PX")
        .arg(300)
        .query_async(&mut conn)
        .await
        .unwrap();

    let answer = tokio::time::timeout(
        FRAME_TIMEOUT,
        cache.get_or_compute("k", Duration::from_secs(5), || async {
            Ok::<_, String>(Bytes::from_static(b"1"))
        }),
    )
    .await
    .expect("a dead node's lock blocked the key for good");

    assert_eq!(answer, Ok((Bytes::from_static(b"1"), CacheStatus::Miss)));
}
