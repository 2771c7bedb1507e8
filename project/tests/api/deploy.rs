//! The Compose deployment (`project/docker-compose.yml`) without a Docker engine: two `chat`
//! binaries on one `redis-server`, behind Debian's `nginx` running `project/deploy/nginx.conf`
//! itself (only the listen address and the two upstream addresses are rewritten for loopback).
//!
//! nginx runs as a child process with its own prefix in a temporary folder, never as the system
//! service. Without `nginx` on the PATH the tests are skipped, saying why; with `REQUIRE_NGINX=1`
//! (CI) that is a failure.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{ADMIN_PASSWORD, ChatBinary, FRAME_TIMEOUT, PASSWORD, WsClient, id_of, skip};
use crate::redis_server::{self, RedisServer};

/// How long the set-up may take to answer through nginx.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Two nodes, their Redis and the nginx in front. Dropping it stops everything.
struct Deployment {
    nodes: Vec<ChatBinary>,
    nginx: Nginx,
    http: reqwest::Client,
    _redis: RedisServer,
}

impl Deployment {
    /// Starts the deployment, or `None` (after saying why) when nginx or Redis is missing.
    async fn start() -> Option<Self> {
        if !nginx_installed() {
            skip::skip(skip::NGINX);
            return None;
        }
        let redis = redis_server::private_redis()?;
        let outbox = tempdir("outbox");
        let mut nodes = Vec::new();
        for _ in 0..2 {
            let mut command = ChatBinary::command();
            command
                .env("REDIS_URL", &redis.url)
                .env("JWT_SECRET", "secreto-del-despliegue")
                .env("CHAT_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .env("CHAT_OUTBOX", &outbox);
            nodes.push(ChatBinary::start(command).await);
        }
        let upstreams: Vec<String> = nodes
            .iter()
            .map(|node| node.base.trim_start_matches("http://").to_owned())
            .collect();
        let nginx = Nginx::start(&upstreams).await;
        let deployment = Self {
            nodes,
            nginx,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            _redis: redis,
        };
        deployment.wait_until_served().await;
        Some(deployment)
    }

    /// `http://127.0.0.1:PORT{path}` of nginx.
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.nginx.base)
    }

    async fn wait_until_served(&self) {
        let served = tokio::time::timeout(START_TIMEOUT, async {
            loop {
                if let Ok(answer) = self.http.get(self.url("/health")).send().await
                    && answer.status() == 200
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        assert!(
            served.is_ok(),
            "nginx did not serve /health within {START_TIMEOUT:?}:\n{}",
            self.nginx.output()
        );
    }

    /// Registers `username` through nginx and returns a token.
    async fn signup(&self, username: &str) -> String {
        let body = json!({ "username": username, "password": PASSWORD, "email": format!("{username}@example.com") });
        let answer = self
            .http
            .post(self.url("/auth/register"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 201, "register {username} through nginx");
        self.login(username, PASSWORD).await
    }

    async fn login(&self, username: &str, password: &str) -> String {
        let answer = self
            .http
            .post(self.url("/auth/login"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "login {username} through nginx");
        answer.json::<Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A WebSocket through nginx, with a browser's `Origin` (the page served by nginx).
    async fn ws(&self, token: &str) -> WsClient {
        let url = format!(
            "{}/ws?token={token}",
            self.nginx.base.replacen("http", "ws", 1)
        );
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", self.nginx.base.parse().unwrap());
        WsClient::connect(request)
            .await
            .expect("the WebSocket upgrade through nginx failed")
    }

    /// The `chat_connections` gauge of each live node, read from the node directly.
    async fn connections(&self) -> Vec<Option<u64>> {
        let mut counts = Vec::new();
        for node in &self.nodes {
            counts.push(connections_of(&self.http, &node.base).await);
        }
        counts
    }

    /// Waits until the live nodes hold `total` connections between them, and returns each
    /// node's count.
    async fn wait_for_total(&self, total: u64) -> Vec<u64> {
        let reached = tokio::time::timeout(FRAME_TIMEOUT, async {
            loop {
                let counts: Option<Vec<u64>> = self.connections().await.into_iter().collect();
                if let Some(counts) = counts
                    && counts.iter().sum::<u64>() == total
                {
                    return counts;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        match reached {
            Ok(counts) => counts,
            Err(_) => panic!(
                "the nodes never held {total} connections in all: {:?}",
                self.connections().await
            ),
        }
    }
}

/// The `chat_connections` gauge of the node at `base`, or `None` if it does not answer.
async fn connections_of(http: &reqwest::Client, base: &str) -> Option<u64> {
    let text = http
        .get(format!("{base}/metrics"))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("chat_connections "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

/// Debian's nginx with the project's configuration, as a child process.
struct Nginx {
    child: Child,
    base: String,
    dir: PathBuf,
}

impl Nginx {
    /// Writes the rewritten configuration into a fresh prefix and starts nginx in the
    /// foreground, in a single process, so that killing the child stops it all.
    async fn start(upstreams: &[String]) -> Self {
        let dir = tempdir("nginx");
        let port = free_port();
        let conf = render_config(port, upstreams);
        std::fs::write(dir.join("nginx.conf"), conf).unwrap();
        let log = std::fs::File::create(dir.join("output.log")).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .args(["-e", "stderr", "-g"])
            .arg(format!(
                "daemon off; master_process off; pid {};",
                dir.join("nginx.pid").display()
            ))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("could not start nginx");
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(self.dir.join("output.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `project/deploy/nginx.conf` with loopback addresses: the listen port and the two upstream
/// servers. Each rewrite must match exactly once, so the test fails if the file drifts.
fn render_config(port: u16, upstreams: &[String]) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/nginx.conf");
    let mut conf = std::fs::read_to_string(path).unwrap();
    let rewrites = [
        ("listen 80;".to_owned(), format!("listen 127.0.0.1:{port};")),
        (
            "server chat-1:8000 ".to_owned(),
            format!("server {} ", upstreams[0]),
        ),
        (
            "server chat-2:8000 ".to_owned(),
            format!("server {} ", upstreams[1]),
        ),
    ];
    for (from, to) in rewrites {
        assert_eq!(
            conf.matches(&from).count(),
            1,
            "{path} should contain `{from}` exactly once"
        );
        conf = conf.replace(&from, &to);
    }
    conf
}

fn nginx_installed() -> bool {
    std::process::Command::new("nginx")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn tempdir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "chat-deploy-{what}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn nginx_spreads_websockets_over_both_nodes_and_streams_sse_unbuffered() {
    // Arrange
    let Some(deployment) = Deployment::start().await else {
        return;
    };
    let health = deployment
        .http
        .get(deployment.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.json::<Value>().await.unwrap()["status"], "ok");
    let ana_token = deployment.signup("ana").await;
    let bea_token = deployment.signup("bea").await;

    // Act: least_conn sends the second connection to the node without one.
    let mut ana = deployment.ws(&ana_token).await;
    deployment.wait_for_total(1).await;
    let mut bea = deployment.ws(&bea_token).await;
    assert_eq!(deployment.wait_for_total(2).await, [1, 1]);
    ana.join("general").await;
    bea.join("general").await;
    let from_ana = ana.say("general", "hola desde el nodo 1").await;
    let on_bea = bea.recv_type("message").await;
    let from_bea = bea.say("general", "hola desde el nodo 2").await;
    let on_ana = ana.recv_type("message").await;

    // Assert: one chat across the nodes.
    assert_eq!(on_bea, from_ana);
    assert_eq!(on_ana, from_bea);

    // Act: the dashboard's SSE stream through nginx.
    let admin = deployment.login("admin", ADMIN_PASSWORD).await;
    let response = deployment
        .http
        .get(deployment.url(&format!("/dashboard/events?token={admin}")))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut events = response.bytes_stream().eventsource();

    // Assert: `stats` arrives every second, one by one. A buffering proxy would hold them
    // until its buffer filled (tens of seconds of events).
    for n in 1..=2 {
        let event = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let event = events.next().await.expect("the stream ended").unwrap();
                if event.event == "stats" {
                    return event;
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("stats event {n} did not come through nginx within 5 s"));
        let stats: Value = serde_json::from_str(&event.data).unwrap();
        assert!(stats["connections"].is_u64(), "stats: {stats}");
    }
}

#[tokio::test]
async fn a_node_killed_mid_traffic_loses_and_repeats_nothing_acknowledged() {
    // Arrange: ana on one node sends; bea on the other listens.
    let Some(mut deployment) = Deployment::start().await else {
        return;
    };
    let ana_token = deployment.signup("ana").await;
    let bea_token = deployment.signup("bea").await;
    let mut ana = deployment.ws(&ana_token).await;
    let ana_node = usize::from(deployment.wait_for_total(1).await[1] == 1);
    let mut bea = deployment.ws(&bea_token).await;
    assert_eq!(deployment.wait_for_total(2).await, [1, 1], "least_conn");
    let bea_node = 1 - ana_node;
    ana.join("general").await;
    let joined = bea.join("general").await;
    let mut seen: Vec<u64> = joined["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect();
    let mut acked = BTreeSet::new();

    // Act: traffic, then SIGKILL of bea's node in the middle of it.
    for n in 0..10 {
        let echo = ana.say("general", &format!("antes {n}")).await;
        acked.insert(id_of(&echo));
        seen.push(id_of(&bea.recv_type("message").await));
    }
    let mut dead = deployment.nodes.remove(bea_node);
    dead.child.start_kill().unwrap();
    dead.child.wait().await.unwrap();
    for n in 0..10 {
        let echo = ana.say("general", &format!("durante {n}")).await;
        acked.insert(id_of(&echo));
    }
    // bea's connection died with its node: it reconnects through nginx and catches up.
    assert!(
        bea.closed()
            .await
            .is_none_or(|close| close.code != 1000.into()),
        "the dead node cannot have closed bea's connection normally"
    );
    let mut bea = deployment.ws(&bea_token).await;
    let last_seen = *seen.last().unwrap();
    let rejoined = bea.join_since("general", last_seen).await;
    seen.extend(rejoined["history"].as_array().unwrap().iter().map(id_of));
    for n in 0..10 {
        let echo = ana.say("general", &format!("después {n}")).await;
        acked.insert(id_of(&echo));
        seen.push(id_of(&bea.recv_type("message").await));
    }

    // Assert: every acknowledged message exactly once, in order, with nothing else in between.
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(
        unique.len(),
        seen.len(),
        "bea saw a message twice: {seen:?}"
    );
    assert!(
        seen.windows(2).all(|pair| pair[0] < pair[1]),
        "out of order: {seen:?}"
    );
    assert!(
        acked.is_subset(&unique),
        "lost acknowledged messages: {:?}",
        acked.difference(&unique).collect::<Vec<_>>()
    );

    // Assert: nginx sends new connections to the node that is alive only.
    let mut extra = Vec::new();
    for _ in 0..4 {
        let mut client = deployment.ws(&ana_token).await;
        client.assert_usable().await;
        extra.push(client);
    }
    // ana, bea and the four new ones, all on the surviving node.
    assert_eq!(deployment.wait_for_total(6).await, [6]);
}
