//! Práctica 36: every step of `examples/36_background_tasks` over HTTP (axum on port 0, reqwest),
//! with the e-mail suite written once and run on both queues: in memory, and on a real Redis.

#[allow(dead_code)]
#[path = "../../examples/36_background_tasks/main.rs"]
mod lesson;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{self, Lesson};
use lesson::worker::RetryPolicy;

/// Short waits, so a job that fails every attempt is dead in well under a second (in memory).
const TEST_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    base: Duration::from_millis(20),
    max_delay: Duration::from_millis(200),
};

/// An outbox folder of its own, removed when dropped.
struct Outbox(PathBuf);

impl Outbox {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("lesson36-test-{}", uuid::Uuid::new_v4()));
        Self(dir)
    }

    fn eml_files(&self) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
            .collect();
        files.sort();
        files
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn config(outbox: &Outbox) -> lesson::Config {
    lesson::Config {
        outbox: outbox.0.clone(),
        redis_url: None,
        queue: lesson::DEFAULT_QUEUE.to_owned(),
        retry: TEST_RETRY,
        schedule_every: Duration::from_millis(50),
        workers: true,
    }
}

async fn serve(config: lesson::Config) -> Lesson {
    support::serve(lesson::app(config).await.unwrap()).await
}

async fn get(lesson: &Lesson, path: &str) -> (u16, Value) {
    let response = reqwest::get(lesson.url(path)).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn post(lesson: &Lesson, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(lesson.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Queues an e-mail and returns its job id (after checking the 202 and the status URL).
async fn enqueue(lesson: &Lesson, to: &str, subject: &str, fail_times: u32) -> String {
    let body = json!({"to": to, "subject": subject, "text": "Hola desde la práctica 36.", "fail_times": fail_times});
    let (status, accepted) = post(lesson, "/emails", Some(body)).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["status"], "pending");
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["status_url"], format!("/jobs/{id}"));
    id
}

/// Waits (on the server's `?wait=1`, which answers when the job is final) for the job's end.
async fn finished(lesson: &Lesson, id: &str) -> Value {
    let (status, job) = get(lesson, &format!("/jobs/{id}?wait=1")).await;
    assert_eq!(status, 200);
    let final_status = job["status"].as_str().unwrap();
    assert!(
        final_status == "done" || final_status == "dead",
        "job still {final_status} after the longest wait: {job}"
    );
    job
}

fn history(job: &Value) -> Vec<(String, u64)> {
    job["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| {
            let status = step["status"].as_str().unwrap().to_owned();
            (status, step["attempt"].as_u64().unwrap())
        })
        .collect()
}

/// The history a job that fails `failures` times goes through, per the retry policy.
fn expected_history(failures: u32, policy: RetryPolicy) -> Vec<(String, u64)> {
    let mut steps = vec![("pending".to_owned(), 0)];
    for attempt in 1..=policy.max_attempts {
        steps.push(("running".into(), u64::from(attempt)));
        if attempt > failures {
            steps.push(("done".into(), u64::from(attempt)));
            return steps;
        }
        let end = if attempt == policy.max_attempts {
            "dead"
        } else {
            "failed"
        };
        steps.push((end.into(), u64::from(attempt)));
    }
    steps
}

/// Between `failed` of attempt n and `running` of attempt n+1 there is at least the backoff.
fn assert_backoff_was_respected(job: &Value, policy: RetryPolicy) {
    let steps = job["history"].as_array().unwrap();
    let at =
        |step: &Value| chrono::DateTime::parse_from_rfc3339(step["at"].as_str().unwrap()).unwrap();
    let mut checked = 0;
    for pair in steps.windows(2) {
        if pair[0]["status"] == "failed" {
            let attempt = u32::try_from(pair[0]["attempt"].as_u64().unwrap()).unwrap();
            let waited = (at(&pair[1]) - at(&pair[0])).to_std().unwrap();
            let backoff = policy.delay_after(attempt).unwrap();
            let slack = Duration::from_millis(1);
            assert!(
                waited + slack >= backoff,
                "attempt {attempt} retried after {waited:?}, before its {backoff:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "no retry in {job}");
}

/// The e-mail behaviour, written once and run on each queue backend.
async fn email_suite(lesson: &Lesson, outbox: &Outbox, policy: RetryPolicy) {
    let sent = enqueue(lesson, "ana@example.com", "Bienvenida", 0).await;
    let recovers = enqueue(lesson, "bea@example.com", "Segundo intento", 2).await;
    let bounces = enqueue(lesson, "rebote@falla.test", "Nunca llega", 0).await;

    // Sent at the first attempt: a real .eml with the right headers.
    let job = finished(lesson, &sent).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(history(&job), expected_history(0, policy));
    let file = PathBuf::from(job["file"].as_str().unwrap());
    assert_eq!(file.parent(), Some(outbox.0.as_path()));
    let eml = std::fs::read_to_string(&file).unwrap();
    assert!(eml.contains("\r\nTo: ana@example.com\r\n"), "{eml}");
    assert!(eml.contains("\r\nSubject: Bienvenida\r\n"), "{eml}");
    assert!(eml.starts_with("From: "), "{eml}");
    assert!(eml.contains("<practica36@localhost>"), "{eml}");
    assert!(eml.contains("Hola desde la pr"), "{eml}");

    // Fails twice, retried with backoff, sent at the third attempt.
    let job = finished(lesson, &recovers).await;
    assert_eq!(job["status"], "done", "{job}");
    assert_eq!(job["attempts"], 3);
    assert_eq!(history(&job), expected_history(2, policy));
    assert!(
        job["last_error"]
            .as_str()
            .unwrap()
            .contains("fallo simulado")
    );
    assert!(Path::new(job["file"].as_str().unwrap()).exists());

    // Fails every attempt: retried, then given up as dead, and no e-mail written.
    let job = finished(lesson, &bounces).await;
    assert_eq!(job["status"], "dead", "{job}");
    assert_eq!(job["attempts"], u64::from(policy.max_attempts));
    assert_eq!(history(&job), expected_history(u32::MAX, policy));
    assert!(job["last_error"].as_str().unwrap().contains("falla.test"));
    assert!(job["file"].is_null());
    assert_eq!(
        outbox.eml_files().len(),
        2,
        "only the two sent e-mails are in the outbox"
    );

    // Every retry waited at least the policy's backoff (timestamps are in milliseconds).
    for id in [&recovers, &bounces] {
        let (_, job) = get(lesson, &format!("/jobs/{id}")).await;
        assert_backoff_was_respected(&job, policy);
    }

    // The counters tell the same story.
    let (status, stats) = get(lesson, "/stats").await;
    assert_eq!(status, 200);
    let retries = 2 + u64::from(policy.max_attempts - 1);
    assert_eq!(stats["enqueued"], 3, "{stats}");
    assert_eq!(stats["sent"], 2, "{stats}");
    assert_eq!(stats["dead"], 1, "{stats}");
    assert_eq!(stats["retries"], retries, "{stats}");
    assert_eq!(stats["attempts"], 2 + retries + 1, "{stats}");
    assert_eq!(
        stats["by_status"],
        json!({"pending": 0, "running": 0, "failed": 0, "done": 2, "dead": 1})
    );
}

#[tokio::test]
async fn l36_the_page_answers_with_every_step() {
    let outbox = Outbox::new();
    let lesson = serve(config(&outbox)).await;
    let response = reqwest::get(lesson.url("/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    for step in 1..=7 {
        assert!(
            page.contains(&format!("Paso {step}")),
            "the page lacks step {step}"
        );
    }
    for route in [
        "/work/inline",
        "/work/spawn",
        "/work/blocking",
        "/emails",
        "/jobs/",
        "/stats",
        "/schedule",
        "/queue",
    ] {
        assert!(page.contains(route), "the page does not mention {route}");
    }
    assert!(page.contains("redis-cli ZRANGE lesson36:emails:scheduled"));
    assert!(page.contains(&outbox.0.display().to_string()));
    assert!(!page.contains("{{"), "a placeholder was left unfilled");
}

#[tokio::test]
async fn l36_every_project_file_the_lesson_names_exists() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let sources = [
        include_str!("../../examples/36_background_tasks/main.rs"),
        include_str!("../../examples/36_background_tasks/page.html"),
        include_str!("../../examples/36_background_tasks/status.rs"),
        include_str!("../../examples/36_background_tasks/schedule.rs"),
    ];
    let mut named = 0;
    for source in sources {
        for word in source.split(|c: char| c.is_whitespace() || "`<>(),;:".contains(c)) {
            if word.starts_with("project/src/") && word.ends_with(".rs") {
                let path = Path::new(root).join(word);
                assert!(
                    path.exists(),
                    "the lesson names {word}, which does not exist"
                );
                named += 1;
            }
        }
    }
    assert!(
        named >= 6,
        "expected the lesson to point at the project's files"
    );
}

#[tokio::test]
async fn l36_work_in_the_request_makes_the_client_wait() {
    let outbox = Outbox::new();
    let lesson = serve(config(&outbox)).await;
    let started = Instant::now();
    let (status, took) = post(&lesson, "/work/inline?ms=200", None).await;
    assert_eq!(status, 200);
    assert!(took["took_ms"].as_u64().unwrap() >= 200, "{took}");
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn l36_tokio_spawn_answers_before_the_work_is_done() {
    let outbox = Outbox::new();
    let lesson = serve(config(&outbox)).await;
    let (status, accepted) = post(&lesson, "/work/spawn?ms=300", None).await;
    assert_eq!(status, 202);
    assert_eq!(accepted["spawned_started"], 1);
    assert_eq!(
        accepted["spawned_done"], 0,
        "the answer came after the work"
    );
    // `?done_at_least=1` answers when the spawned task has finished.
    let (_, counters) = get(&lesson, "/work?done_at_least=1").await;
    assert_eq!(counters["spawned_done"], 1, "{counters}");
}

#[tokio::test]
async fn l36_spawn_blocking_counts_primes_off_the_runtime() {
    let outbox = Outbox::new();
    let lesson = serve(config(&outbox)).await;
    let n = 10_000usize;
    let (status, answer) = post(&lesson, &format!("/work/blocking?n={n}"), None).await;
    assert_eq!(status, 200);
    // Counted here by trial division, independently of the lesson's sieve.
    let expected = (2..n)
        .filter(|&k| (2..k).take_while(|d| d * d <= k).all(|d| k % d != 0))
        .count();
    assert_eq!(answer["primes"], expected, "{answer}");
    assert_eq!(answer["n"], n);
}

#[test]
fn l36_the_default_retry_policy_doubles_its_wait_and_gives_up() {
    let policy = RetryPolicy::default();
    let waits: Vec<Option<Duration>> = (1..=policy.max_attempts)
        .map(|attempt| policy.delay_after(attempt))
        .collect();
    let mut expected: Vec<Option<Duration>> = (0..policy.max_attempts - 1)
        .map(|n| Some(policy.base * 2u32.pow(n)))
        .collect();
    expected.push(None);
    assert_eq!(waits, expected);
    let capped = RetryPolicy {
        max_attempts: 50,
        ..policy
    };
    assert_eq!(capped.delay_after(40), Some(policy.max_delay));
}

#[tokio::test]
async fn l36_emails_are_sent_retried_and_given_up_on_the_memory_queue() {
    let outbox = Outbox::new();
    let lesson = serve(config(&outbox)).await;
    let (_, stats) = get(&lesson, "/stats").await;
    assert_eq!(stats["backend"], "memoria");
    email_suite(&lesson, &outbox, TEST_RETRY).await;
}

#[tokio::test]
async fn l36_emails_are_sent_retried_and_given_up_on_redis() {
    let Some(url) = support::redis_url().await else {
        return;
    };
    let outbox = Outbox::new();
    let queue = format!("lesson36-test-{}", uuid::Uuid::new_v4().simple());
    let config = lesson::Config {
        redis_url: Some(url),
        queue: queue.clone(),
        ..config(&outbox)
    };
    let lesson = serve(config).await;
    email_suite(&lesson, &outbox, TEST_RETRY).await;

    // What the queue looks like in Redis: real keys under the queue's prefix.
    let (status, view) = get(&lesson, "/queue").await;
    assert_eq!(status, 200);
    assert_eq!(view["backend"], "redis");
    assert_eq!(view["queue"], queue.as_str());
    let keys: Vec<&str> = view["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["key"].as_str().unwrap())
        .collect();
    assert!(
        keys.iter().all(|key| key.starts_with(&format!("{queue}:"))),
        "{keys:?}"
    );
    assert!(keys.contains(&format!("{queue}:data").as_str()), "{view}");
    let commands = view["redis_cli"].as_array().unwrap();
    assert!(
        commands
            .iter()
            .any(|c| c.as_str().unwrap().contains(&format!("{queue}:scheduled")))
    );
}

/// The length of one of the queue's Redis keys as `GET /queue` reports it (0 when absent).
fn key_len(view: &Value, key: &str) -> u64 {
    view["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["key"] == key)
        .map_or(0, |entry| entry["len"].as_u64().unwrap())
}

#[tokio::test]
async fn l36_a_job_queued_by_one_process_waits_in_redis_until_another_sends_it() {
    let Some(url) = support::redis_url().await else {
        return;
    };
    let outbox = Outbox::new();
    let queue = format!("lesson36-test-{}", uuid::Uuid::new_v4().simple());
    let worker_queue = queue.clone();
    let producer = serve(lesson::Config {
        redis_url: Some(url.clone()),
        queue: queue.clone(),
        workers: false,
        ..config(&outbox)
    })
    .await;
    let id = enqueue(&producer, "carla@example.com", "Desde otro proceso", 0).await;

    // Nobody works in the producer: the job waits in Redis. apalis-redis files every new task
    // in `scheduled` (due now), and a worker's fetch moves due ones to `active`.
    let (_, view) = get(&producer, "/queue").await;
    let waiting = |view: &Value| {
        key_len(view, &format!("{queue}:scheduled")) + key_len(view, &format!("{queue}:active"))
    };
    assert_eq!(waiting(&view), 1, "{view}");
    assert_eq!(key_len(&view, &format!("{queue}:data")), 1, "{view}");
    let (_, job) = get(&producer, &format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "pending");

    // A second process on the same Redis, with workers, takes it and sends it.
    let worker = serve(lesson::Config {
        redis_url: Some(url),
        queue: worker_queue,
        ..config(&outbox)
    })
    .await;
    let job = finished(&worker, &id).await;
    assert_eq!(job["status"], "done", "{job}");
    let eml = std::fs::read_to_string(job["file"].as_str().unwrap()).unwrap();
    assert!(eml.contains("\r\nTo: carla@example.com\r\n"), "{eml}");
    let (_, view) = get(&producer, "/queue").await;
    // (Not `done` yet, necessarily: apalis acknowledges a task after our handler returns.)
    assert_eq!(waiting(&view), 0, "{view}");
}

#[tokio::test]
async fn l36_an_invalid_email_is_refused_and_an_unknown_job_is_404() {
    let outbox = Outbox::new();
    let lesson = serve(config(&outbox)).await;
    let (status, _) = post(
        &lesson,
        "/emails",
        Some(json!({"to": "no es un e-mail", "subject": "Hola", "text": "x"})),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = post(
        &lesson,
        "/emails",
        Some(json!({"to": "ana@example.com", "subject": "  ", "text": "x"})),
    )
    .await;
    assert_eq!(status, 422);
    let response = reqwest::get(lesson.url("/jobs/no-existe")).await.unwrap();
    assert_eq!(response.status(), 404);
    let (_, stats) = get(&lesson, "/stats").await;
    assert_eq!(stats["enqueued"], 0, "a refused e-mail must not be queued");
}

#[tokio::test]
async fn l36_the_scheduled_task_runs_every_interval() {
    let outbox = Outbox::new();
    let lesson = serve(config(&outbox)).await;
    // `?after=N` answers once the task has run more than N times.
    let (_, first) = get(&lesson, "/schedule?after=0").await;
    let runs = first["runs"].as_u64().unwrap();
    assert!(runs >= 1, "{first}");
    assert_eq!(first["every_ms"], 50);
    assert_eq!(first["last"]["run"], runs);

    // A sent e-mail shows up in a later report.
    let id = enqueue(&lesson, "ana@example.com", "Informe", 0).await;
    finished(&lesson, &id).await;
    let (_, stats) = get(&lesson, "/stats").await;
    let now = stats["schedule_runs"].as_u64().unwrap();
    let (_, later) = get(&lesson, &format!("/schedule?after={now}")).await;
    assert!(later["runs"].as_u64().unwrap() > now, "{later}");
    assert_eq!(later["last"]["counts"]["done"], 1, "{later}");
}
