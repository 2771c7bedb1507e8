//! Smoke tests: every scenario, at a tiny size, against the baseline and against a real `chat`
//! (in this process, memory backend, 127.0.0.1 port 0). They prove the tool works end to end;
//! the figures themselves come from `chat-bench` runs in release (see `bench/RESULTS.md`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use chat::{App, Config};
use chat_bench::report::{Comparison, Run};
use chat_bench::scenarios::{Common, Scenario, fanout, idle, jobs, join_storm, sse};
use chat_bench::target::{Kind, Target};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const ADMIN_PASSWORD: &str = "admin-de-la-prueba";
const LIMIT: Duration = Duration::from_secs(120);

/// A chat on 127.0.0.1:0 in this process, and its outbox folder.
async fn chat() -> (Target, PathBuf, oneshot::Sender<()>) {
    let outbox =
        std::env::temp_dir().join(format!("chat-bench-{}", chat_bench::client::run_prefix()));
    let mut config = Config::from_env();
    config.addr = "127.0.0.1:0".parse().unwrap();
    config.redis_url = None;
    config.jwt_secret = Some("secreto-de-chat-bench".into());
    config.admin_password = Some(ADMIN_PASSWORD.into());
    config.allowed_origins = None;
    config.jobs.outbox = outbox.clone();
    config.jobs.smtp_url = None;
    let listener = TcpListener::bind(config.addr).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = App::build(config).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    let target = Target::resolve(
        Kind::Chat,
        &format!("http://{addr}"),
        Some(std::process::id()),
    )
    .await
    .unwrap()
    .with_admin("admin".into(), Some(ADMIN_PASSWORD.into()));
    (target, outbox, stop)
}

async fn baseline() -> (Target, oneshot::Sender<()>) {
    let (addr, stop) = chat_bench::baseline::spawn_in_process().await.unwrap();
    let target = Target::resolve(
        Kind::Baseline,
        &format!("http://{addr}"),
        Some(std::process::id()),
    )
    .await
    .unwrap();
    (target, stop)
}

async fn both(scenario: &Scenario) -> (Run, Run) {
    let (chat, _outbox, stop_chat) = chat().await;
    let chat_run = scenario
        .run(&chat, &Common::default(), LIMIT)
        .await
        .unwrap();
    let _ = stop_chat.send(());
    let (base, stop_base) = baseline().await;
    let base_run = scenario
        .run(&base, &Common::default(), LIMIT)
        .await
        .unwrap();
    let _ = stop_base.send(());
    (chat_run, base_run)
}

fn metric(run: &Run, key: &str) -> f64 {
    run.get(key)
        .unwrap_or_else(|| panic!("{} sin la métrica {key}: {run:?}", run.target))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_delivers_every_message_to_every_client_open_and_closed_loop() {
    for window in [None, Some(2)] {
        let scenario = Scenario::Fanout(fanout::Fanout {
            rooms: 2,
            clients: 4,
            senders: 2,
            messages: 5,
            rate: 50.0,
            window,
            drain_secs: 10,
            spread: false,
        });
        let (chat, base) = both(&scenario).await;
        for run in [&chat, &base] {
            // 2 rooms × 2 senders × 5 messages, each delivered to the 4 clients of its room.
            assert_eq!(metric(run, "sent"), 20.0, "{run:?}");
            assert_eq!(metric(run, "deliveries"), 80.0, "{run:?}");
            assert_eq!(metric(run, "lost"), 0.0, "{run:?}");
            assert!(metric(run, "max_ms") >= metric(run, "p50_ms"));
            assert!(metric(run, "deliveries_per_s") > 0.0);
        }
        let comparison = Comparison {
            scenario: "fanout".into(),
            runs: vec![chat, base],
        };
        let line: serde_json::Value = serde_json::from_str(&comparison.json_line()).unwrap();
        assert_eq!(line["runs"].as_array().unwrap().len(), 2);
        assert!(
            line["ratios"]["deliveries"]
                .as_f64()
                .is_some_and(|r| (r - 1.0).abs() < 1e-9)
        );
        let markdown = comparison.markdown("chat-bench fanout", "hoy");
        assert!(
            markdown.contains("| entregas () | 80 | 80 | 1.00 × |"),
            "{markdown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_holds_every_connection_and_reads_the_server_memory() {
    let scenario = Scenario::Idle(idle::Idle {
        connections: 12,
        rooms: 3,
        hold_secs: 0,
    });
    let (chat, base) = both(&scenario).await;
    for run in [&chat, &base] {
        assert!(run.notes.is_empty(), "{run:?}");
        assert!(metric(run, "rss_held_mib") > 0.0);
        assert!(metric(run, "kib_per_connection") >= 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_storm_counts_every_joined_and_the_presence_frames() {
    let scenario = Scenario::JoinStorm(join_storm::JoinStorm {
        users: 5,
        quiet_ms: 200,
    });
    let (chat, base) = both(&scenario).await;
    assert_eq!(metric(&chat, "joined"), 5.0, "{chat:?}");
    assert_eq!(metric(&base, "joined"), 5.0, "{base:?}");
    // The baseline only greets; the chat at least answers each join once.
    assert_eq!(metric(&base, "frames"), 5.0);
    assert!(metric(&chat, "frames") >= 5.0);
    assert!(metric(&base, "presence_frames") == 0.0);
    assert_eq!(metric(&chat, "closed"), 0.0, "{chat:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_subscribers_get_stats_every_second() {
    let scenario = Scenario::Sse(sse::SseOpts {
        subscribers: 3,
        window_secs: 2,
    });
    let (chat, base) = both(&scenario).await;
    for run in [&chat, &base] {
        assert!(run.notes.is_empty(), "{run:?}");
        // One `stats` per second, give or take the edges of the window.
        let rate = metric(run, "stats_per_subscriber_per_s");
        assert!((0.3..=1.6).contains(&rate), "{run:?}");
        assert!(metric(run, "cpu_pct") >= 0.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_are_drained_to_the_outbox_and_the_baseline_is_refused() {
    let (chat, outbox, stop) = chat().await;
    let scenario = Scenario::Jobs(jobs::JobsOpts {
        offline: 3,
        rooms: 2,
        drain_secs: 60,
        outbox: Some(outbox.clone()),
    });
    let run = scenario
        .run(&chat, &Common::default(), LIMIT)
        .await
        .unwrap();
    let _ = stop.send(());
    assert_eq!(metric(&run, "jobs_expected"), 6.0, "{run:?}");
    assert_eq!(metric(&run, "done"), 6.0, "{run:?}");
    assert_eq!(metric(&run, "lost"), 0.0, "{run:?}");
    assert_eq!(metric(&run, "eml_files"), 6.0, "{run:?}");
    let _ = std::fs::remove_dir_all(outbox);

    let (base, stop) = baseline().await;
    assert!(!scenario.baseline_applies());
    assert!(
        scenario
            .run(&base, &Common::default(), LIMIT)
            .await
            .is_err()
    );
    let _ = stop.send(());
}

#[tokio::test]
async fn targets_outside_this_machine_are_refused() {
    for url in [
        "http://10.0.0.1:8000",
        "http://192.168.1.10",
        "https://127.0.0.1:8000",
    ] {
        assert!(
            Target::resolve(Kind::Chat, url, None).await.is_err(),
            "{url}"
        );
    }
    assert!(
        Target::resolve(Kind::Chat, "http://localhost:8000", None)
            .await
            .is_ok()
    );
}

/// The binary itself: `--only-baseline` starts the baseline in a child process, runs, prints a
/// summary and, last, one JSON line.
#[tokio::test]
async fn the_binary_runs_a_scenario_against_its_baseline_process() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_chat-bench"))
        .args([
            "--only-baseline",
            "fanout",
            "--clients",
            "3",
            "--senders",
            "1",
            "--messages",
            "4",
            "--rate",
            "50",
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(LIMIT, output).await.unwrap().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("entregas por segundo"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(json["runs"][0]["target"], "base");
    assert_eq!(json["runs"][0]["metrics"]["deliveries"], 12.0);
}
