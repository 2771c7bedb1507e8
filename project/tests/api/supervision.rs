//! Supervision: a background task that panics is started again, and the feature it serves works
//! again; one that keeps failing makes `/ready` answer 503 naming it.
//!
//! A test makes a task panic with the supervisor's hidden hook (`inject_panic`): the task's run
//! panics where it is, as a bug would, and the test waits until the supervisor has seen it
//! (`restarts`) before checking that the feature works again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chat::AppState;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::dashboard::SseClient;
use crate::helpers::*;

/// How long a test waits for the supervisor to see a panic, or a job or e-mail to appear.
/// Generous: the machine is shared, and a restart waits a growing backoff.
const WAIT: Duration = Duration::from_secs(30);

/// A server on `backend` with a fresh outbox for e-mails, and its state; `None` without Redis.
async fn spawn(backend: Backend) -> Option<(TestApp, AppState, PathBuf)> {
    let mut config = test_config(backend).await?;
    let outbox =
        std::env::temp_dir().join(format!("chat-outbox-{}", uuid::Uuid::new_v4().simple()));
    config.jobs.outbox = outbox.clone();
    config.jobs.smtp_url = None;
    config.jobs.backoff_ms = 50;
    config.jobs.concurrency = 2;
    let (app, state) = spawn_app_with_state(config).await;
    Some((app, state, outbox))
}

macro_rules! on_each_backend {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    let (app, state, outbox) =
                        super::spawn(crate::helpers::Backend::Memory).await.unwrap();
                    super::$test(app, state, outbox).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some((app, state, outbox)) =
                        super::spawn(crate::helpers::Backend::Redis).await
                    else {
                        return;
                    };
                    super::$test(app, state, outbox).await;
                }
            )*
        }
    };
}

on_each_backend!(
    the_dashboard_gets_activity_again_after_its_recorder_panics,
    the_dashboard_gets_stats_again_after_the_stats_task_panics,
    mentions_are_notified_again_after_the_mention_task_panics,
    jobs_run_and_their_records_update_again_after_the_job_monitor_panics,
    a_task_that_keeps_failing_makes_ready_fail_naming_it_until_it_runs_again,
    the_metrics_upkeep_runs_under_the_apps_supervisor_and_again_after_it_panics,
);

/// Makes the next run of `task` panic and waits until the supervisor has seen it fail.
async fn panic_once(state: &AppState, task: &str) {
    let before = state.supervisor.restarts(task);
    assert!(
        state.supervisor.task_names().contains(&task),
        "{task} is not supervised: {:?}",
        state.supervisor.task_names()
    );
    state.supervisor.inject_panic(task, 1);
    wait_for_restarts(state, task, before + 1).await;
}

async fn wait_for_restarts(state: &AppState, task: &str, count: u64) {
    tokio::time::timeout(WAIT, async {
        while state.supervisor.restarts(task) < count {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the supervisor never saw {task} fail {count} times"));
}

/// Waits for `event` (an SSE read, which skips `stats` events, so would otherwise wait for
/// ever on a dashboard that only gets those).
async fn within<T>(event: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, event)
        .await
        .expect("the dashboard never got it")
}

/// `kind`, `user` of an activity's data.
fn who(data: &Value) -> (String, String) {
    let field = |name: &str| data[name].as_str().unwrap_or("").to_owned();
    (field("kind"), field("user"))
}

async fn the_dashboard_gets_activity_again_after_its_recorder_panics(
    app: TestApp,
    state: AppState,
    _outbox: PathBuf,
) {
    // Arrange: a dashboard that sees a join.
    let admin = app.admin_token().await;
    let mut dashboard = SseClient::open(&app, &admin, None).await;
    let mut ana = app.connected("ana").await;
    ana.join("general").await;
    let (first, data) = dashboard.activity().await;
    assert_eq!(who(&data), ("join".into(), "ana".into()));

    // Act
    panic_once(&state, chat::dashboard::RECORD_TASK).await;
    let mut bea = app.connected("bea").await;
    bea.join("general").await;

    // Assert: the join after the panic reaches the dashboard, with the next id.
    let (next, data) = within(dashboard.activity()).await;
    assert_eq!(who(&data), ("join".into(), "bea".into()));
    assert_eq!(next, first + 1);
}

async fn the_metrics_upkeep_runs_under_the_apps_supervisor_and_again_after_it_panics(
    app: TestApp,
    state: AppState,
    _outbox: PathBuf,
) {
    // Arrange: an answer proves that `serve` has started the background tasks.
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);

    // Act: `panic_once` also checks that the app's supervisor runs the task, so that its
    // failures reach `/ready`.
    panic_once(&state, chat::metrics::UPKEEP_TASK).await;

    // Assert: the task is back and `/metrics` still renders.
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    let text = metrics.text().await.unwrap();
    assert!(text.contains("http_request_duration_seconds"), "{text}");
    assert_eq!(state.supervisor.restarts(chat::metrics::UPKEEP_TASK), 1);
}

async fn the_dashboard_gets_stats_again_after_the_stats_task_panics(
    app: TestApp,
    state: AppState,
    _outbox: PathBuf,
) {
    // Arrange
    let admin = app.admin_token().await;
    let mut dashboard = SseClient::open(&app, &admin, None).await;
    dashboard.stats().await;

    // Act
    panic_once(&state, chat::dashboard::STATS_TASK).await;

    // Assert: the `watch` keeps only the newest snapshot, so of two more `stats` events at
    // least one was computed by the new task.
    let before = state.dashboard.stats_computed();
    within(dashboard.stats()).await;
    within(dashboard.stats()).await;
    assert!(state.dashboard.stats_computed() > before);
}

async fn mentions_are_notified_again_after_the_mention_task_panics(
    app: TestApp,
    state: AppState,
    _outbox: PathBuf,
) {
    // Arrange: bea is connected; ana writes in general.
    let mut bea = app.connected("bea").await;
    bea.join("general").await;
    let mut ana = app.connected("ana").await;
    ana.join("general").await;

    // Act
    panic_once(&state, chat::mentions::TASK).await;
    let message = ana.say("general", "¿sigues ahí, @bea?").await;

    // Assert
    assert_eq!(
        bea.recv_type("notification").await,
        json!({ "type": "notification", "kind": "mention", "room": "general",
                "message_id": id_of(&message), "from": "ana" })
    );
}

async fn jobs_run_and_their_records_update_again_after_the_job_monitor_panics(
    app: TestApp,
    state: AppState,
    outbox: PathBuf,
) {
    // Arrange: carl is a member of general and offline, so a mention of him is an e-mail job.
    offline_member(&app, "carl", "general").await;
    let mut ana = app.connected("ana").await;
    ana.join("general").await;
    let admin = app.admin_token().await;

    // Act
    panic_once(&state, chat::jobs::MONITOR_TASK).await;
    ana.say("general", "@carl, te esperamos").await;

    // Assert: the job ends `done`, and the e-mail is in the outbox.
    let done = wait_for_done_job(&app, &admin).await;
    assert_eq!(done["kind"], "email", "{done}");
    assert_eq!(done["attempts"], 1, "{done}");
    let emails = wait_for_emails(&outbox).await;
    assert!(emails[0].contains("carl@example.com"), "{}", emails[0]);
}

async fn a_task_that_keeps_failing_makes_ready_fail_naming_it_until_it_runs_again(
    app: TestApp,
    state: AppState,
    _outbox: PathBuf,
) {
    // Arrange
    let task = chat::dashboard::STATS_TASK;
    let healthy = app.get("/ready", None).await;
    assert_eq!(healthy.status, StatusCode::OK, "{healthy:?}");
    assert_eq!(healthy.body["checks"]["tasks"], "ok", "{healthy:?}");
    let before = state.supervisor.restarts(task);

    // Act: four failures in a row (one more than `/ready` tolerates, so that the waits before
    // the fourth restart leave time to see it).
    state.supervisor.inject_panic(task, 4);
    wait_for_restarts(&state, task, before + 3).await;
    let degraded = app.get("/ready", None).await;

    // Assert: 503 naming the task, then 200 once a run of it lasts.
    assert_eq!(
        degraded.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{degraded:?}"
    );
    assert_eq!(degraded.body["status"], "degraded", "{degraded:?}");
    assert_eq!(degraded.body["checks"]["tasks"], "down", "{degraded:?}");
    let reason = degraded.body["tasks"][task].as_str().unwrap_or_default();
    assert!(reason.contains("seguidas"), "{degraded:?}");
    let recovered = tokio::time::timeout(WAIT, async {
        loop {
            let answer = app.get("/ready", None).await;
            if answer.status == StatusCode::OK {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("/ready never answered 200 again");
    assert_eq!(recovered.body["checks"]["tasks"], "ok", "{recovered:?}");
    assert!(recovered.body.get("tasks").is_none(), "{recovered:?}");
}

#[tokio::test]
async fn the_dashboard_gets_activity_again_after_the_redis_listener_panics() {
    // Arrange: a node on Redis, its dashboard seeing a join.
    let Some((app, state, _outbox)) = spawn(Backend::Redis).await else {
        return;
    };
    let admin = app.admin_token().await;
    let mut dashboard = SseClient::open(&app, &admin, None).await;
    let mut ana = app.connected("ana").await;
    ana.join("general").await;
    let (first, data) = dashboard.activity().await;
    assert_eq!(who(&data), ("join".into(), "ana".into()));

    // Act: the listener panics; a join is published meanwhile, another after the restart.
    state
        .supervisor
        .inject_panic(chat::dashboard::redis_journal::LISTENER_TASK, 1);
    let mut bea = app.connected("bea").await;
    bea.join("general").await;
    wait_for_restarts(&state, chat::dashboard::redis_journal::LISTENER_TASK, 1).await;
    let mut carl = app.connected("carl").await;
    carl.join("general").await;

    // Assert: both, in order, once each (what the panic missed comes from the kept events).
    let events = within(dashboard.activities(2)).await;
    let users: Vec<_> = events.iter().map(|(_, data)| who(data).1).collect();
    assert_eq!(users, ["bea", "carl"]);
    assert_eq!(events[0].0, first + 1);
    assert_eq!(events[1].0, first + 2);
}

/// Signs up a member of `room` who is then offline (mentions of them become e-mails).
async fn offline_member(app: &TestApp, username: &str, room: &str) {
    let token = app.signup(username).await;
    let mut client = app.ws(&token).await;
    client.join(room).await;
    drop(client);
    let admin = app.admin_token().await;
    tokio::time::timeout(WAIT, async {
        loop {
            let joined = app.ws(&admin).await.join(room).await;
            let online = joined["online"].as_array().unwrap().clone();
            if !online.iter().any(|user| user == username) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the user never went offline");
}

/// Waits until `/admin/jobs?status=done` lists a job, and returns it.
async fn wait_for_done_job(app: &TestApp, admin: &str) -> Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let answer = app.get("/admin/jobs?status=done", Some(admin)).await;
            assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
            if let Some(job) = answer.body["jobs"].as_array().and_then(|jobs| jobs.first()) {
                return job.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("no job reached done")
}

/// Waits until `outbox` holds an e-mail and returns them all, as text.
async fn wait_for_emails(outbox: &Path) -> Vec<String> {
    tokio::time::timeout(WAIT, async {
        loop {
            let emails: Vec<String> = std::fs::read_dir(outbox)
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"))
                .filter_map(|entry| std::fs::read_to_string(entry.path()).ok())
                .collect();
            if !emails.is_empty() {
                return emails;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("no e-mail in the outbox")
}
