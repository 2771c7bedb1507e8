//! Operations: `/metrics`, `/openapi.json` and `/docs`.
//!
//! The metrics recorder is global to a process, so every server this test binary spawns shares
//! it and `/metrics` of one shows the others' traffic. The tests that need exact numbers
//! (connections, messages) therefore start the `chat` binary, a process of its own; the others
//! only look for series that their own requests create.

use std::collections::BTreeSet;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::{
    ADMIN_PASSWORD, Backend, ChatBinary, TestApp, WsClient, spawn_app, test_config,
};

// ----------------------------------------------------------------------------------------------
// /metrics
// ----------------------------------------------------------------------------------------------

/// The value of the sample `series` (name plus labels exactly as rendered, or the bare name),
/// `None` when the text has no such line.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// The `_bucket` lines of the latency histogram carrying every one of `labels`.
fn latency_buckets<'a>(text: &'a str, labels: &[&str]) -> Vec<&'a str> {
    text.lines()
        .filter(|line| line.starts_with("http_request_duration_seconds_bucket{"))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .collect()
}

async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let response = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "text/plain; version=0.0.4");
    response.text().await.unwrap()
}

async fn metrics_lists_every_family_with_its_type_and_a_real_latency_histogram(app: TestApp) {
    let token = app.admin_token().await;
    assert_eq!(app.get("/health", None).await.status, StatusCode::OK);
    let history = app.get("/rooms/general/messages", Some(&token)).await;
    assert_eq!(history.status, StatusCode::OK);
    let unknown = app.get("/no-existe/8f1c2d", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);

    let text = scrape(&app.http, &app.url("")).await;

    for (name, kind) in [
        ("chat_connections", "gauge"),
        ("chat_messages_total", "counter"),
        ("chat_jobs_total", "counter"),
        ("http_request_duration_seconds", "histogram"),
        ("chat_sse_subscribers", "gauge"),
        ("chat_jobs_queue_depth", "gauge"),
        ("chat_cache_hits_total", "counter"),
        ("chat_cache_misses_total", "counter"),
    ] {
        assert!(
            text.contains(&format!("\n# TYPE {name} {kind}\n")),
            "/metrics should declare `# TYPE {name} {kind}`:\n{text}"
        );
    }
    for status in ["done", "failed", "dead"] {
        let series = format!("chat_jobs_total{{status=\"{status}\"}}");
        assert!(
            sample(&text, &series).is_some(),
            "{series} should be there even at zero:\n{text}"
        );
    }

    // A histogram, not a summary: cumulative buckets up to +Inf, a sum and a count.
    let health = ["method=\"GET\"", "path=\"/health\"", "status=\"200\""];
    let buckets = latency_buckets(&text, &health);
    assert!(
        buckets.len() >= 5,
        "/health should have latency buckets:\n{text}"
    );
    assert!(
        buckets.iter().any(|line| line.contains("le=\"+Inf\"")),
        "{buckets:?}"
    );
    assert!(
        text.contains("http_request_duration_seconds_count{"),
        "{text}"
    );
    assert!(
        text.contains("http_request_duration_seconds_sum{"),
        "{text}"
    );
    assert!(
        !text.contains("quantile="),
        "latencies must be buckets, not quantiles"
    );

    // The path label is the route template, never the raw URL.
    assert!(
        !latency_buckets(&text, &["path=\"/rooms/{id}/messages\"", "status=\"200\""]).is_empty(),
        "{text}"
    );
    assert!(
        !latency_buckets(&text, &["path=\"unmatched\"", "status=\"404\""]).is_empty(),
        "an unknown route should count as path=\"unmatched\":\n{text}"
    );
    assert!(
        !text.contains("/rooms/general/") && !text.contains("8f1c2d"),
        "raw URLs leaked into the labels:\n{text}"
    );
}

/// A `chat` process of its own, so that its metrics are nobody else's.
struct ChatProcess {
    _binary: ChatBinary,
    base: String,
    http: reqwest::Client,
}

impl ChatProcess {
    /// Starts the binary on a free port with the backend of `backend`; `None`: no Redis, skip.
    async fn start(backend: Backend) -> Option<Self> {
        let config = test_config(backend).await?;
        let mut command = ChatBinary::command();
        command
            .env("RUST_LOG", "chat=info,warn")
            .env("JWT_SECRET", "secreto-de-las-metricas")
            .env("CHAT_ADMIN_PASSWORD", ADMIN_PASSWORD);
        if let Some(url) = &config.redis_url {
            command
                .env("REDIS_URL", url)
                .env("CHAT_REDIS_PREFIX", &config.redis_prefix);
        }
        let binary = ChatBinary::start(command).await;
        Some(Self {
            base: binary.base.clone(),
            _binary: binary,
            http: reqwest::Client::new(),
        })
    }

    async fn metric(&self, series: &str) -> f64 {
        let text = scrape(&self.http, &self.base).await;
        sample(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    }

    /// Waits (generously) until `series` reads `expected`: a closing connection is counted
    /// down by the server a moment after the client lets go.
    async fn await_metric(&self, series: &str, expected: f64) {
        let waited = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                if self.metric(series).await == expected {
                    return;
                }
                // A metric is only visible by scraping it: polled.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{series} should reach {expected}, it reads {}",
            self.metric(series).await
        );
    }

    async fn ws(&self, token: &str) -> WsClient {
        let url = format!("{}/ws?token={token}", self.base.replacen("http", "ws", 1));
        WsClient::connect(url.into_client_request().unwrap())
            .await
            .unwrap()
    }
}

/// `chat_connections` follows open WebSockets; `chat_messages_total` counts new messages only.
async fn connections_and_messages_are_counted_exactly(backend: Backend) {
    let Some(server) = ChatProcess::start(backend).await else {
        return;
    };
    assert_eq!(server.metric("chat_connections").await, 0.0);
    assert_eq!(server.metric("chat_messages_total").await, 0.0);
    let login = server
        .http
        .post(format!("{}/auth/login", server.base))
        .json(&json!({ "username": "admin", "password": ADMIN_PASSWORD }))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::OK);
    let token = login.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // `joined` proves the server-side connection loop is running.
    let mut first = server.ws(&token).await;
    first.join("general").await;
    let mut second = server.ws(&token).await;
    second.join("general").await;
    assert_eq!(server.metric("chat_connections").await, 2.0);

    let send = |text: &str, client_id: Option<&str>| {
        let mut frame = json!({ "type": "send", "room": "general", "text": text });
        if let Some(client_id) = client_id {
            frame["client_id"] = json!(client_id);
        }
        frame
    };
    first.send_json(send("uno", Some("m-1"))).await;
    let original = first.recv_type("message").await;
    first.send_json(send("dos", Some("m-2"))).await;
    first.recv_type("message").await;
    // An idempotent repeat: answered with the original, stored nothing, counts nothing.
    first.send_json(send("uno", Some("m-1"))).await;
    assert_eq!(first.recv_type("message").await, original);
    first.send_json(send("tres", None)).await;
    first.recv_type("message").await;
    assert_eq!(server.metric("chat_messages_total").await, 3.0);

    drop(first);
    server.await_metric("chat_connections", 1.0).await;
    second.assert_usable().await;
    drop(second);
    server.await_metric("chat_connections", 0.0).await;
    assert_eq!(server.metric("chat_messages_total").await, 3.0);
}

#[tokio::test]
async fn connections_and_messages_are_counted_exactly_in_memory() {
    connections_and_messages_are_counted_exactly(Backend::Memory).await;
}

#[tokio::test]
async fn connections_and_messages_are_counted_exactly_on_redis() {
    connections_and_messages_are_counted_exactly(Backend::Redis).await;
}

// ----------------------------------------------------------------------------------------------
// /openapi.json and /docs
// ----------------------------------------------------------------------------------------------

/// Every JSON route of the contract, with its methods.
const DOCUMENTED: &[(&str, &[&str])] = &[
    ("/health", &["get"]),
    ("/ready", &["get"]),
    ("/auth/register", &["post"]),
    ("/auth/login", &["post"]),
    ("/auth/me", &["get"]),
    ("/rooms", &["get", "post"]),
    ("/rooms/{id}/messages", &["get"]),
    ("/rooms/{id}/members", &["post"]),
    ("/rooms/{id}/members/{username}", &["delete"]),
    ("/admin/stats", &["get"]),
    ("/admin/jobs", &["get"]),
];

/// Every `$ref` in `value`.
fn refs(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => {
                        found.insert(target.clone());
                    }
                    _ => refs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| refs(item, found)),
        _ => {}
    }
}

#[tokio::test]
async fn openapi_json_documents_every_json_route_with_its_methods() {
    let app = spawn_app(Backend::Memory).await.unwrap();
    let answer = app.get("/openapi.json", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    let doc = answer.body;
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "not an OpenAPI 3 document: {doc}"
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());

    let paths = doc["paths"].as_object().expect("no paths");
    for (path, methods) in DOCUMENTED {
        let item = paths
            .get(*path)
            .unwrap_or_else(|| panic!("{path} is not documented"));
        for method in *methods {
            let operation = &item[*method];
            assert!(
                operation["responses"].is_object(),
                "{method} {path} is not documented: {item}"
            );
            // Without them, utoipa would show the handlers' English doc comments.
            assert!(
                operation["summary"].is_string() && operation["description"].is_string(),
                "{method} {path} needs a summary and a description (in Spanish)"
            );
            let public = ["/health", "/ready", "/auth/register", "/auth/login"].contains(path);
            assert_eq!(
                operation["security"].is_array(),
                !public,
                "{method} {path}: a protected route names the bearer scheme, a public one does not"
            );
        }
        for path_param in path.split('/').filter(|s| s.starts_with('{')) {
            let name = path_param.trim_matches(|c| c == '{' || c == '}');
            for method in *methods {
                let declared = item[*method]["parameters"]
                    .as_array()
                    .is_some_and(|params| {
                        params
                            .iter()
                            .any(|p| p["name"] == name && p["in"] == "path")
                    });
                assert!(declared, "{method} {path} does not declare `{name}`");
            }
        }
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let error = &doc["components"]["schemas"]["ErrorBody"];
    assert!(
        error["properties"]["error"].is_object(),
        "no error body schema"
    );

    // Every reference points at a schema the document defines.
    let mut found = BTreeSet::new();
    refs(&doc, &mut found);
    assert!(!found.is_empty());
    for target in found {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected reference {target}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling reference {target}"
        );
    }
}

/// Checks `value` against the `schema` of the document `doc`: no field the schema does not
/// list, every required field present, recursively through `$ref`s, objects and arrays.
fn check_schema(doc: &Value, schema: &Value, value: &Value, at: &str) {
    if let Some(target) = schema["$ref"].as_str() {
        let name = target.trim_start_matches("#/components/schemas/");
        return check_schema(doc, &doc["components"]["schemas"][name], value, at);
    }
    if value.is_null() {
        return;
    }
    for variants in ["oneOf", "anyOf", "allOf"] {
        if let Some(options) = schema[variants].as_array() {
            for option in options.iter().filter(|option| option["type"] != "null") {
                check_schema(doc, option, value, at);
            }
            return;
        }
    }
    match value {
        Value::Object(fields) => {
            let Some(properties) = schema["properties"].as_object() else {
                assert!(
                    schema["additionalProperties"].is_object()
                        || schema["additionalProperties"] == true,
                    "{at}: an object where the schema says {schema}"
                );
                return;
            };
            for (name, field) in fields {
                let documented = properties
                    .get(name)
                    .unwrap_or_else(|| panic!("{at}.{name} is not in the schema {schema}"));
                check_schema(doc, documented, field, &format!("{at}.{name}"));
            }
            for required in schema["required"].as_array().into_iter().flatten() {
                let required = required.as_str().unwrap();
                assert!(
                    fields.contains_key(required),
                    "{at}.{required} is required by the schema but missing in {value}"
                );
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                check_schema(doc, &schema["items"], item, &format!("{at}[{index}]"));
            }
        }
        _ => {}
    }
}

/// Checks a real answer against what the document says `method path` answers with `status`.
fn assert_documented(doc: &Value, method: &str, path: &str, answer: &crate::helpers::Answer) {
    let status = answer.status.as_str();
    let response = &doc["paths"][path][method]["responses"][status];
    assert!(
        response.is_object(),
        "{method} {path} answered {status}, which is not documented"
    );
    let schema = &response["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "{method} {path} {status}: no JSON schema"
    );
    check_schema(
        doc,
        schema,
        &answer.body,
        &format!("{method} {path} {status}"),
    );
}

async fn real_answers_match_the_documented_schemas(app: TestApp) {
    let doc = app.get("/openapi.json", None).await.body;
    let admin = app.admin_token().await;

    assert_documented(&doc, "get", "/health", &app.get("/health", None).await);
    assert_documented(&doc, "get", "/ready", &app.get("/ready", None).await);
    let register = app.register("luis").await;
    assert_documented(&doc, "post", "/auth/register", &register);
    assert_documented(&doc, "post", "/auth/register", &app.register("luis").await);
    let login = app.login("admin", ADMIN_PASSWORD).await;
    assert_documented(&doc, "post", "/auth/login", &login);
    let me = app.get("/auth/me", Some(&admin)).await;
    assert_documented(&doc, "get", "/auth/me", &me);
    assert_documented(&doc, "get", "/auth/me", &app.get("/auth/me", None).await);

    let created = app.create_room(&admin, "docs-privada", true).await;
    assert_documented(&doc, "post", "/rooms", &created);
    let invite = app
        .post(
            "/rooms/docs-privada/members",
            Some(&admin),
            &json!({ "username": "luis" }),
        )
        .await;
    assert_documented(&doc, "post", "/rooms/{id}/members", &invite);
    assert_documented(
        &doc,
        "get",
        "/rooms",
        &app.get("/rooms", Some(&admin)).await,
    );

    let mut client = app.ws(&admin).await;
    client.join("general").await;
    client
        .send_json(json!({ "type": "send", "room": "general", "text": "hola", "client_id": "d-1" }))
        .await;
    client.recv_type("message").await;
    let page = app.get("/rooms/general/messages", Some(&admin)).await;
    assert!(!page.body["messages"].as_array().unwrap().is_empty());
    assert_documented(&doc, "get", "/rooms/{id}/messages", &page);
    let unknown = app.get("/rooms/no-existe/messages", Some(&admin)).await;
    assert_documented(&doc, "get", "/rooms/{id}/messages", &unknown);

    let stats = app.get("/admin/stats", Some(&admin)).await;
    assert_documented(&doc, "get", "/admin/stats", &stats);
    let jobs = app.get("/admin/jobs", Some(&admin)).await;
    assert_documented(&doc, "get", "/admin/jobs", &jobs);
    let luis = app.token("luis", crate::helpers::PASSWORD).await;
    assert_documented(
        &doc,
        "get",
        "/admin/jobs",
        &app.get("/admin/jobs", Some(&luis)).await,
    );
}

#[tokio::test]
async fn every_documented_route_is_served() {
    let app = spawn_app(Backend::Memory).await.unwrap();
    let doc = app.get("/openapi.json", None).await.body;
    for (path, item) in doc["paths"].as_object().unwrap() {
        let url = app.url(
            &path
                .replace("{id}", "general")
                .replace("{username}", "nadie"),
        );
        for method in item.as_object().unwrap().keys() {
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let answer = app.request(app.http.request(method.clone(), &url)).await;
            let unknown_route = answer.status == StatusCode::NOT_FOUND
                && answer.body["error"]["message"] == "ruta no encontrada";
            assert!(
                !unknown_route && answer.status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not served: {} {}",
                answer.status,
                answer.body
            );
        }
    }
}

#[tokio::test]
async fn docs_serves_swagger_ui_with_every_asset_from_the_server_itself() {
    let app = spawn_app(Backend::Memory).await.unwrap();
    // `/docs` leads to the page (reqwest follows the redirect to `/docs/`).
    let response = app.http.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page_url = response.url().clone();
    assert_eq!(page_url.path(), "/docs/");
    let html = response.text().await.unwrap();
    assert!(html.contains("swagger-ui"), "not Swagger UI:\n{html}");

    let mut assets = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        for piece in html.split(attribute).skip(1) {
            let target = &piece[..piece.find('"').unwrap()];
            assert!(
                !target.starts_with("http:")
                    && !target.starts_with("https:")
                    && !target.starts_with("//"),
                "/docs references an asset on another host: {target}"
            );
            assets.push(page_url.join(target).unwrap());
        }
    }
    let scripts = assets
        .iter()
        .filter(|url| url.path().ends_with(".js"))
        .count();
    assert!(
        scripts >= 2,
        "expected Swagger UI's scripts, found {assets:?}"
    );
    for asset in &assets {
        assert_eq!(asset.host_str(), page_url.host_str(), "{asset}");
        let response = app.http.get(asset.clone()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{asset} is not served");
        let body = response.bytes().await.unwrap();
        assert!(!body.is_empty(), "{asset} is empty");
        if asset.path().ends_with(".css") {
            let css = String::from_utf8_lossy(&body);
            assert!(
                !css.contains("url(http") && !css.contains("@import"),
                "{asset} loads something from elsewhere"
            );
        }
    }

    // The page loads our document, and no validator badge from validator.swagger.io.
    let initializer = app
        .http
        .get(page_url.join("swagger-initializer.js").unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(initializer.contains("/openapi.json"), "{initializer}");
    assert!(
        !initializer.contains("http://") && !initializer.contains("https://"),
        "{initializer}"
    );
    assert!(
        initializer.contains("\"validatorUrl\": \"none\""),
        "{initializer}"
    );

    let missing = app.get("/docs/no-existe.js", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.error_code(), "not_found");
}

crate::on_both_backends!(
    metrics_lists_every_family_with_its_type_and_a_real_latency_histogram,
    real_answers_match_the_documented_schemas,
);
