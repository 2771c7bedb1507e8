//! Background jobs: mentions become `notification` frames or e-mails; e-mails are retried with
//! backoff and end `dead`; with Redis any node runs a job and a queued job survives a restart.
//!
//! E-mails are read where a student would find them: `.eml` files in a fresh outbox folder per
//! server, or what an SMTP server received (a scripted one on loopback that fails on demand,
//! and a real one, `aiosmtpd`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat::Config;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use crate::helpers::*;

/// How long a test waits for a job to reach the state it must reach. Generous: with Redis a
/// retry is scheduled in whole seconds, and the machine is shared.
const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// A test configuration: a fresh outbox, fast retries, one node of `backend`.
async fn jobs_config(backend: Backend) -> Option<Config> {
    let mut config = test_config(backend).await?;
    config.jobs.outbox = fresh_outbox();
    config.jobs.smtp_url = None;
    config.jobs.backoff_ms = 50;
    config.jobs.max_attempts = 5;
    config.jobs.mention_email_window_secs = 600;
    config.jobs.concurrency = 4;
    Some(config)
}

fn fresh_outbox() -> PathBuf {
    std::env::temp_dir().join(format!("chat-outbox-{}", uuid::Uuid::new_v4().simple()))
}

/// The `.eml` files in `outbox`, as text.
fn emails_in(outbox: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(outbox) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| entry.path().extension().is_some_and(|ext| ext == "eml"))
        .map(|entry| std::fs::read_to_string(entry.path()).unwrap())
        .collect()
}

/// Waits until `outbox` holds `count` e-mails and returns them.
async fn wait_for_emails(outbox: &Path, count: usize) -> Vec<String> {
    tokio::time::timeout(JOB_TIMEOUT, async {
        loop {
            let emails = emails_in(outbox);
            if emails.len() >= count {
                return emails;
            }
            // A file appearing is no event a test can wait on: the folder is polled.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("expected {count} e-mails in {}", outbox.display()))
}

/// The e-mail as a reader sees it: headers unfolded and quoted-printable decoded (lettre
/// encodes a mostly-ASCII Spanish body that way).
fn readable(raw: &str) -> String {
    let unfolded = raw
        .replace("\r\n ", " ")
        .replace("=\r\n", "")
        .replace("=\n", "");
    let bytes = unfolded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'=', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The value of a header of an e-mail.
fn header<'a>(email: &'a str, name: &str) -> &'a str {
    email
        .lines()
        .take_while(|line| !line.is_empty())
        .find_map(|line| line.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} header in {email}"))
}

/// Waits until `/admin/jobs?status=` lists `count` jobs in that status, and returns them.
async fn wait_for_jobs(app: &TestApp, admin: &str, status: &str, count: usize) -> Vec<Value> {
    let path = format!("/admin/jobs?status={status}");
    let mut last = Value::Null;
    let found = tokio::time::timeout(JOB_TIMEOUT, async {
        loop {
            let answer = app.get(&path, Some(admin)).await;
            assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
            let jobs = answer.body["jobs"].as_array().unwrap().clone();
            if jobs.len() >= count {
                return jobs;
            }
            last = answer.body;
            // A job's state is visible only through the API: it is polled.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("expected {count} {status} jobs; last answer: {last}"))
}

/// Signs up a user who is then offline (no connection): mentions of them become e-mails.
async fn offline_member(app: &TestApp, username: &str, room: &str) {
    let token = app.signup(username).await;
    let mut client = app.ws(&token).await;
    client.join(room).await;
    let mut watcher = app.ws(&app.admin_token().await).await;
    watcher.join(room).await;
    drop(client);
    // The server notices the close when it reads it, and then says so to the room.
    gone_offline(&mut watcher, username).await;
}

/// Waits for the `presence` frame saying that `username` went offline in a room `watcher`
/// joined. The server sends it once the user is unreachable, so from then on a mention of
/// them is an e-mail.
async fn gone_offline(watcher: &mut WsClient, username: &str) {
    loop {
        let presence = watcher.recv_type("presence").await;
        if presence["user"] == username && presence["status"] == "offline" {
            return;
        }
    }
}

macro_rules! on_each_backend {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(crate::helpers::Backend::Memory).await;
                }
            )*
        }
        mod redis {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(crate::helpers::Backend::Redis).await;
                }
            )*
        }
    };
}

on_each_backend!(
    a_mention_of_an_online_user_is_a_notification_frame_and_no_email,
    a_mention_of_an_offline_user_is_one_email_naming_room_and_sender_once_per_window,
    an_email_about_a_private_room_never_contains_the_message,
    a_mailer_that_fails_twice_delivers_once_after_three_attempts,
    a_mailer_that_always_fails_ends_dead_after_five_attempts_and_chat_goes_on,
    a_recipient_gets_at_most_10_mention_emails_an_hour_across_rooms,
);

async fn a_recipient_gets_at_most_10_mention_emails_an_hour_across_rooms(backend: Backend) {
    // Arrange: ana creates 11 rooms; bea joins them all once and goes offline; carl is an
    // offline member of the last one only.
    let Some(config) = jobs_config(backend).await else {
        return;
    };
    let outbox = config.jobs.outbox.clone();
    let app = spawn_app_with(config).await;
    let ana_token = app.signup("ana").await;
    let rooms: Vec<String> = (0..11).map(|n| format!("sala-{n}")).collect();
    for room in &rooms {
        assert_eq!(
            app.create_room(&ana_token, room, false).await.status,
            StatusCode::CREATED
        );
    }
    let bea_token = app.signup("bea").await;
    let mut bea = app.ws(&bea_token).await;
    for room in &rooms {
        bea.join(room).await;
    }
    drop(bea);
    offline_member(&app, "carl", "sala-10").await;
    let mut ana = app.ws(&ana_token).await;

    // Act: a mention of bea in each of 10 rooms (one e-mail per room is allowed by the
    // per-room window), then an 11th room, where carl comes after her in the same message.
    for room in &rooms[..10] {
        ana.join(room).await;
        ana.say(room, "@bea ¿lo ves?").await;
    }
    wait_for_emails(&outbox, 10).await;
    ana.join("sala-10").await;
    ana.say("sala-10", "@bea una más, y @carl").await;
    let emails = wait_for_emails(&outbox, 11).await;

    // Assert: bea's 11th mention queued no job; carl's e-mail is the 11th.
    let to_bea = emails
        .iter()
        .filter(|e| header(e, "To") == "bea@example.com")
        .count();
    let to_carl = emails
        .iter()
        .filter(|e| header(e, "To") == "carl@example.com")
        .count();
    assert_eq!((to_bea, to_carl), (10, 1), "e-mails to bea and to carl");
    let admin = app.admin_token().await;
    let jobs = app.get("/admin/jobs", Some(&admin)).await.body["jobs"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(jobs, 11, "no job for the mention over the cap");
}

async fn a_mention_of_an_online_user_is_a_notification_frame_and_no_email(backend: Backend) {
    // Arrange: bea is connected (in no room at all); carl is offline. Both are members.
    let Some(config) = jobs_config(backend).await else {
        return;
    };
    let outbox = config.jobs.outbox.clone();
    let app = spawn_app_with(config).await;
    let bea_token = app.signup("bea").await;
    let mut bea = app.ws(&bea_token).await;
    bea.join("general").await;
    bea.send_json(json!({ "type": "leave", "room": "general" }))
        .await;
    bea.recv_type("left").await;
    offline_member(&app, "carl", "general").await;
    let mut ana = app.connected("ana").await;
    ana.join("general").await;

    // Act: carl comes after bea in the same message, so once carl's e-mail exists, bea's
    // mention has been handled too.
    let message = ana.say("general", "hola @BEA y @carl").await;

    // Assert
    let notification = bea.recv_type("notification").await;
    assert_eq!(
        notification,
        json!({ "type": "notification", "kind": "mention", "room": "general",
                "message_id": id_of(&message), "from": "ana" })
    );
    let emails = wait_for_emails(&outbox, 1).await;
    assert_eq!(emails.len(), 1, "only carl, who is offline, gets an e-mail");
    assert_eq!(header(&emails[0], "To"), "carl@example.com");
}

async fn a_mention_of_an_offline_user_is_one_email_naming_room_and_sender_once_per_window(
    backend: Backend,
) {
    // Arrange
    let Some(config) = jobs_config(backend).await else {
        return;
    };
    let outbox = config.jobs.outbox.clone();
    let app = spawn_app_with(config).await;
    offline_member(&app, "bea", "general").await;
    offline_member(&app, "carl", "general").await;
    let mut ana = app.connected("ana").await;
    ana.join("general").await;

    // Act
    ana.say("general", "@bea ¿revisas el informe?").await;
    let first = wait_for_emails(&outbox, 1).await;
    // Within the window: no second e-mail for bea. carl, mentioned after her in the same
    // message, tells us when her mention has been handled.
    ana.say("general", "@bea otra vez, y @carl").await;
    let emails = wait_for_emails(&outbox, 2).await;

    // Assert
    let email = readable(&first[0]);
    assert_eq!(header(&email, "To"), "bea@example.com");
    let subject = header(&email, "Subject");
    assert!(
        subject.contains("ana") && subject.contains("general"),
        "{subject}"
    );
    assert!(
        email.contains("ana te ha mencionado en la sala «General» (#general)"),
        "{email}"
    );
    assert!(
        email.contains("> @bea ¿revisas el informe?"),
        "a public room is quoted: {email}"
    );
    assert!(
        email.contains("Content-Type: text/html"),
        "an HTML alternative: {email}"
    );
    let recipients: Vec<String> = emails.iter().map(|e| header(e, "To").to_owned()).collect();
    assert_eq!(recipients.len(), 2);
    assert!(
        recipients.contains(&"carl@example.com".to_owned()),
        "{recipients:?}"
    );
    let admin = app.admin_token().await;
    let done = wait_for_jobs(&app, &admin, "done", 2).await;
    assert_eq!(done.len(), 2, "{done:?}");
}

async fn an_email_about_a_private_room_never_contains_the_message(backend: Backend) {
    // Arrange: a private room of ana's, with bea invited and offline.
    let Some(config) = jobs_config(backend).await else {
        return;
    };
    let outbox = config.jobs.outbox.clone();
    let app = spawn_app_with(config).await;
    let ana_token = app.signup("ana").await;
    let answer = app.create_room(&ana_token, "secreta", true).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{answer:?}");
    app.signup("bea").await;
    let answer = app
        .post(
            "/rooms/secreta/members",
            Some(&ana_token),
            &json!({ "username": "bea" }),
        )
        .await;
    assert!(answer.status.is_success(), "{answer:?}");
    let mut ana = app.ws(&ana_token).await;
    ana.join("secreta").await;

    // Act
    ana.say("secreta", "@bea la clave es zafiro-7781").await;

    // Assert
    let email = readable(&wait_for_emails(&outbox, 1).await[0]);
    assert_eq!(header(&email, "To"), "bea@example.com");
    assert!(header(&email, "Subject").contains("secreta"));
    assert!(email.contains("ana te ha mencionado"), "{email}");
    assert!(
        !email.contains("zafiro"),
        "a private message leaked: {email}"
    );
}

/// A scripted SMTP server on loopback: refuses the first `failures` e-mails with a temporary
/// error (451), accepts the rest, and keeps what it accepted.
#[derive(Clone)]
struct ScriptedSmtp {
    url: String,
    state: Arc<Mutex<SmtpLog>>,
}

#[derive(Default)]
struct SmtpLog {
    attempts: u32,
    delivered: Vec<String>,
}

impl ScriptedSmtp {
    async fn start(failures: u32) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("smtp://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(SmtpLog::default()));
        let server = Self { url, state };
        let shared = server.state.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(Self::session(socket, shared.clone(), failures));
            }
        });
        server
    }

    async fn session(socket: tokio::net::TcpStream, log: Arc<Mutex<SmtpLog>>, failures: u32) {
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        let _ = write.write_all(b"220 guion ESMTP\r\n").await;
        while let Ok(Some(line)) = lines.next_line().await {
            let command = line.to_ascii_uppercase();
            let reply: &[u8] = if command.starts_with("EHLO") {
                b"250-guion\r\n250 8BITMIME\r\n"
            } else if command.starts_with("MAIL") {
                let mut log = log.lock().unwrap();
                log.attempts += 1;
                if log.attempts <= failures {
                    b"451 4.3.0 fallo temporal de prueba\r\n"
                } else {
                    b"250 OK\r\n"
                }
            } else if command.starts_with("DATA") {
                let _ = write.write_all(b"354 adelante\r\n").await;
                let mut body = String::new();
                while let Ok(Some(line)) = lines.next_line().await {
                    if line == "." {
                        break;
                    }
                    body.push_str(&line);
                    body.push_str("\r\n");
                }
                log.lock().unwrap().delivered.push(body);
                b"250 OK\r\n"
            } else if command.starts_with("QUIT") {
                let _ = write.write_all(b"221 adios\r\n").await;
                return;
            } else {
                b"250 OK\r\n"
            };
            if write.write_all(reply).await.is_err() {
                return;
            }
        }
    }

    fn attempts(&self) -> u32 {
        self.state.lock().unwrap().attempts
    }

    fn delivered(&self) -> Vec<String> {
        self.state.lock().unwrap().delivered.clone()
    }
}

/// A server whose e-mails go to `smtp`, with bea offline and ana connected in `general`.
async fn mentions_by_smtp(backend: Backend, smtp: &ScriptedSmtp) -> Option<(TestApp, WsClient)> {
    let mut config = jobs_config(backend).await?;
    config.jobs.smtp_url = Some(smtp.url.clone());
    let app = spawn_app_with(config).await;
    offline_member(&app, "bea", "general").await;
    let mut ana = app.connected("ana").await;
    ana.join("general").await;
    Some((app, ana))
}

async fn a_mailer_that_fails_twice_delivers_once_after_three_attempts(backend: Backend) {
    // Arrange
    let smtp = ScriptedSmtp::start(2).await;
    let Some((app, mut ana)) = mentions_by_smtp(backend, &smtp).await else {
        return;
    };
    let admin = app.admin_token().await;

    // Act
    ana.say("general", "@bea hola").await;

    // Assert
    let done = wait_for_jobs(&app, &admin, "done", 1).await;
    assert_eq!(done[0]["attempts"], 3, "{done:?}");
    assert_eq!(done[0]["kind"], "email");
    assert!(
        done[0]["last_error"].as_str().unwrap().contains("451"),
        "{done:?}"
    );
    assert_eq!(smtp.attempts(), 3);
    assert_eq!(smtp.delivered().len(), 1, "delivered exactly once");
}

async fn a_mailer_that_always_fails_ends_dead_after_five_attempts_and_chat_goes_on(
    backend: Backend,
) {
    // Arrange
    let smtp = ScriptedSmtp::start(u32::MAX).await;
    let Some((app, mut ana)) = mentions_by_smtp(backend, &smtp).await else {
        return;
    };
    let admin = app.admin_token().await;
    let mut dani = app.connected("dani").await;
    dani.join("general").await;

    // Act
    let mention = ana.say("general", "@bea ¿estás?").await;
    let dead = wait_for_jobs(&app, &admin, "dead", 1).await;

    // Assert: dead after five attempts, listed with its error and times.
    let job = &dead[0];
    assert_eq!(job["attempts"], 5, "{job}");
    assert!(job["last_error"].as_str().unwrap().contains("451"), "{job}");
    for field in ["id", "created_at", "updated_at"] {
        assert!(job[field].is_string(), "{field} in {job}");
    }
    assert_eq!(smtp.attempts(), 5);
    assert!(smtp.delivered().is_empty());
    let all = app.get("/admin/jobs", Some(&admin)).await;
    assert_eq!(all.body["jobs"][0]["status"], "dead", "{:?}", all.body);
    // The chat is unaffected.
    let sent = ana.say("general", "sigo aquí").await;
    assert_eq!(dani.recv_messages(2).await, vec![mention, sent]);
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(
        metrics.contains("chat_jobs_total{status=\"dead\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("chat_jobs_queue_depth"), "{metrics}");
}

#[tokio::test]
async fn admin_jobs_is_for_admins_and_checks_the_status() {
    // Arrange
    let app = spawn_app(Backend::Memory).await.unwrap();
    let ana = app.signup("ana").await;
    let admin = app.admin_token().await;

    // Act
    let as_member = app.get("/admin/jobs", Some(&ana)).await;
    let anonymous = app.get("/admin/jobs", None).await;
    let bad_status = app.get("/admin/jobs?status=perdido", Some(&admin)).await;
    let empty = app.get("/admin/jobs?status=dead", Some(&admin)).await;

    // Assert
    assert_eq!(as_member.status, StatusCode::FORBIDDEN);
    assert_eq!(as_member.error_code(), "forbidden");
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad_status.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_status.error_code(), "invalid_input");
    assert_eq!(empty.status, StatusCode::OK);
    assert_eq!(empty.body, json!({ "jobs": [] }));
}

#[tokio::test]
async fn ready_reports_the_queue() {
    let app = spawn_app(Backend::Memory).await.unwrap();
    let answer = app.get("/ready", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body["checks"]["queue"], "ok", "{answer:?}");
}

// ---------------------------------------------------------------------------------------------
// Redis: several nodes, restarts
// ---------------------------------------------------------------------------------------------

/// A node that only queues jobs (`CHAT_JOB_CONCURRENCY=0`) and one that runs them, on one Redis.
async fn queuing_node() -> Option<(Config, TestApp)> {
    let mut config = jobs_config(Backend::Redis).await?;
    config.jobs.concurrency = 0;
    let node = spawn_app_with(config.clone()).await;
    Some((config, node))
}

#[tokio::test]
async fn with_redis_a_job_queued_by_one_node_is_run_by_another() {
    // Arrange
    let Some((config, a)) = queuing_node().await else {
        return;
    };
    let mut worker_config = config.clone();
    worker_config.jobs.concurrency = 4;
    worker_config.jobs.outbox = fresh_outbox();
    let b = spawn_app_with(worker_config.clone()).await;
    offline_member(&a, "bea", "general").await;
    let mut ana = a.connected("ana").await;
    ana.join("general").await;

    // Act
    ana.say("general", "@bea desde el nodo A").await;

    // Assert: B wrote it; A, which runs no jobs, did not.
    let emails = wait_for_emails(&worker_config.jobs.outbox, 1).await;
    assert_eq!(header(&emails[0], "To"), "bea@example.com");
    assert!(emails_in(&config.jobs.outbox).is_empty());
    let admin = b.admin_token().await;
    let done = wait_for_jobs(&b, &admin, "done", 1).await;
    assert_eq!(done[0]["attempts"], 1);
}

#[tokio::test]
async fn with_redis_a_mention_notifies_every_connection_of_the_user_on_any_node() {
    // Arrange: bea has one connection on each node, in no room.
    let Some(config) = jobs_config(Backend::Redis).await else {
        return;
    };
    let outbox = config.jobs.outbox.clone();
    let a = spawn_app_with(config.clone()).await;
    let b = spawn_app_with(config).await;
    let bea_token = a.signup("bea").await;
    let mut bea_on_a = a.ws(&bea_token).await;
    bea_on_a.join("general").await;
    bea_on_a
        .send_json(json!({ "type": "leave", "room": "general" }))
        .await;
    bea_on_a.recv_type("left").await;
    let mut bea_on_b = b.ws(&bea_token).await;
    let mut ana = a.connected("ana").await;
    ana.join("general").await;

    // Act
    let message = ana.say("general", "@bea mira esto").await;

    // Assert
    let expected = json!({ "type": "notification", "kind": "mention", "room": "general",
                           "message_id": id_of(&message), "from": "ana" });
    assert_eq!(bea_on_a.recv_type("notification").await, expected);
    assert_eq!(bea_on_b.recv_type("notification").await, expected);
    assert!(emails_in(&outbox).is_empty());
}

#[tokio::test]
async fn with_redis_a_job_queued_before_a_restart_runs_once_after_it() {
    // Arrange: a node queues a job and stops before anything runs it.
    let Some((config, a)) = queuing_node().await else {
        return;
    };
    offline_member(&a, "bea", "general").await;
    let mut ana = a.connected("ana").await;
    ana.join("general").await;
    ana.say("general", "@bea antes de reiniciar").await;
    let admin = a.admin_token().await;
    wait_for_jobs(&a, &admin, "pending", 1).await;
    drop(ana);
    a.stop().await;

    // Act: a new process on the same Redis, which runs jobs.
    let mut restarted = config.clone();
    restarted.jobs.concurrency = 4;
    restarted.jobs.outbox = fresh_outbox();
    let b = spawn_app_with(restarted.clone()).await;

    // Assert
    let done = wait_for_jobs(&b, &admin, "done", 1).await;
    assert_eq!(done[0]["attempts"], 1, "{done:?}");
    assert_eq!(
        emails_in(&restarted.jobs.outbox).len(),
        1,
        "run exactly once"
    );
}

// ---------------------------------------------------------------------------------------------
// A real SMTP server
// ---------------------------------------------------------------------------------------------

/// `python3 -m aiosmtpd` storing what it receives in a Maildir; stopped when dropped.
struct Aiosmtpd {
    child: std::process::Child,
    port: u16,
    maildir: PathBuf,
}

impl Aiosmtpd {
    /// Starts it on a free port; `None` (after saying why) when it is not installed, unless
    /// `REQUIRE_SMTP=1` (CI: no skips), where that is a failure.
    fn start() -> Option<Self> {
        let installed = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "--version"])
            .output()
            .is_ok_and(|output| output.status.success());
        if !installed {
            skip::skip(skip::SMTP);
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let maildir = fresh_outbox();
        let child = std::process::Command::new("python3")
            .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(&maildir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            port,
            maildir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "aiosmtpd did not start"
            );
            // aiosmtpd prints nothing when it is ready: its port accepting is the sign, polled.
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(server)
    }
}

impl Drop for Aiosmtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.maildir);
    }
}

#[tokio::test]
async fn an_offline_mention_is_delivered_to_a_real_smtp_server() {
    // Arrange
    let Some(smtp) = Aiosmtpd::start() else {
        return;
    };
    let mut config = jobs_config(Backend::Memory).await.unwrap();
    config.jobs.smtp_url = Some(format!("smtp://127.0.0.1:{}", smtp.port));
    let app = spawn_app_with(config).await;
    offline_member(&app, "bea", "general").await;
    let mut ana = app.connected("ana").await;
    ana.join("general").await;

    // Act
    ana.say("general", "@bea por SMTP").await;

    // Assert: the Maildir's `new` folder holds it.
    let new = smtp.maildir.join("new");
    let received = tokio::time::timeout(JOB_TIMEOUT, async {
        loop {
            if let Ok(mut entries) = std::fs::read_dir(&new) {
                if let Some(Ok(entry)) = entries.next() {
                    return std::fs::read_to_string(entry.path()).unwrap();
                }
            }
            // Another process writes the Maildir: polled, as `wait_for_emails` does.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("aiosmtpd received nothing");
    let email = readable(&received.replace('\n', "\r\n"));
    assert_eq!(header(&email, "To"), "bea@example.com");
    assert!(header(&email, "Subject").contains("#general"), "{email}");
    assert!(email.contains("> @bea por SMTP"), "{email}");
}

/// Watches the server's logs for the event a worker produces when its backend fails and the
/// monitor starts it again ("trabajador caído: se reinicia", `jobs/worker.rs`).
struct WorkerRestarts(tokio::sync::watch::Sender<usize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for WorkerRestarts {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        struct Message(bool);
        impl tracing::field::Visit for Message {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0 |= field.name() == "message" && value == "trabajador caído: se reinicia";
            }
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0 |= field.name() == "message"
                    && format!("{value:?}") == "trabajador caído: se reinicia";
            }
        }
        let mut message = Message(false);
        event.record(&mut message);
        if message.0 {
            self.0.send_modify(|restarts| *restarts += 1);
        }
    }
}

#[tokio::test]
async fn with_redis_the_worker_survives_a_redis_restart() {
    // Arrange: a node on a Redis of its own, which then restarts empty (no persistence).
    let Some(mut redis) = crate::redis_server::private_redis() else {
        return;
    };
    // The server's logs of this thread, which runs the whole server (`#[tokio::test]` is a
    // one-thread runtime), reach `WorkerRestarts`.
    let (restarts, mut restarted) = tokio::sync::watch::channel(0);
    let _logs = tracing::subscriber::set_default(tracing_subscriber::layer::SubscriberExt::with(
        tracing_subscriber::Registry::default(),
        WorkerRestarts(restarts),
    ));
    let mut config = jobs_config(Backend::Memory).await.unwrap();
    config.redis_url = Some(redis.url.clone());
    config.redis_prefix = crate::redis_server::unique_prefix();
    let outbox = config.jobs.outbox.clone();
    let app = spawn_app_with(config).await;
    assert!(redis.restart(), "redis-server did not come back");
    // The worker's next poll hits the outage: it ends with an error and is started again.
    tokio::time::timeout(JOB_TIMEOUT, restarted.wait_for(|restarts| *restarts > 0))
        .await
        .expect("the worker never noticed that Redis restarted")
        .unwrap();
    // The server's own connection notices on its next command, which fails (503); its
    // readiness check is that command: once it answers 200 the server talks to the new Redis.
    tokio::time::timeout(JOB_TIMEOUT, async {
        while app.get("/ready", None).await.status != StatusCode::OK {
            // Each check is the command that makes the connection reconnect: polled.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the server never reconnected to the restarted Redis");

    // Act: everything was lost with Redis, so set the scene again and mention someone offline.
    let ana_token = app.signup("ana").await;
    assert_eq!(
        app.create_room(&ana_token, "equipo", false).await.status,
        StatusCode::CREATED
    );
    let bea_token = app.signup("bea").await;
    let mut ana = app.ws(&ana_token).await;
    ana.join("equipo").await;
    // bea joins and leaves; once she is offline, a mention is an e-mail. (The admin account
    // went with the old Redis, so `offline_member` cannot be used here.)
    app.ws(&bea_token).await.join("equipo").await;
    gone_offline(&mut ana, "bea").await;
    ana.say("equipo", "@bea ¿sigues ahí?").await;

    // Assert: a worker still runs the job.
    let emails = wait_for_emails(&outbox, 1).await;
    assert_eq!(header(&emails[0], "To"), "bea@example.com");
}
