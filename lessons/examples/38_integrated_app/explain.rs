//! Paso 4 · La página de la lección: `GET /leccion` (la explicación) y `GET /leccion/status`
//! (el estado del chat en vivo, que la página pide cada dos segundos).
//!
//! Vive en su propio puerto porque `App::serve` monta el router del chat y no admite rutas de
//! fuera. Lee el estado del chat directamente (`chat::AppState`, el mismo que usan sus
//! handlers) y la carpeta outbox, donde el mailer deja los e-mails como archivos `.eml`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::response::{Html, Redirect};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

/// Cuántos e-mails lista la página (los más recientes).
const EMAILS_SHOWN: usize = 10;
/// Cuántas entradas de la carpeta outbox miramos como mucho.
const OUTBOX_SCAN_LIMIT: usize = 10_000;
/// Lo que leemos de cada `.eml`: basta para sus cabeceras.
const HEADER_BYTES: u64 = 8 * 1024;

/// Lo que la página cuenta del montaje.
#[derive(Debug, Clone)]
pub struct Explanation {
    pub chat_url: String,
    pub chat_port: u16,
    pub admin_username: String,
    /// La contraseña de `admin`, solo si es la fija de clase (una tuya no se enseña).
    pub class_password: Option<String>,
    pub outbox: PathBuf,
    pub backend: String,
}

impl Explanation {
    pub fn new(config: &chat::Config, chat_url: &str) -> Self {
        let class_password = config
            .admin_password
            .clone()
            .filter(|password| password == super::CLASS_ADMIN_PASSWORD);
        Self {
            chat_url: chat_url.to_owned(),
            // El puerto del chat, sacado de su URL (`http://localhost:3038`).
            chat_port: chat_url
                .rsplit(':')
                .next()
                .and_then(|port| port.trim_end_matches('/').parse().ok())
                .unwrap_or(config.addr.port()),
            admin_username: config.admin_username.clone(),
            class_password,
            outbox: absolute(&config.jobs.outbox),
            backend: backend_name(config),
        }
    }
}

/// Qué backend usa el chat, en palabras.
pub fn backend_name(config: &chat::Config) -> String {
    match config.redis_url {
        Some(_) => format!("Redis, prefijo «{}»", config.redis_prefix),
        None => "memoria: un solo nodo".to_owned(),
    }
}

/// La ruta absoluta de `path` (la outbox por defecto es `./outbox`, relativa a donde ejecutas).
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_owned())
}

#[derive(Clone)]
struct Page {
    chat: chat::AppState,
    explanation: Arc<Explanation>,
}

/// `/` lleva a `/leccion`; `/leccion/status` da el estado en JSON.
pub fn router(chat: chat::AppState, explanation: Explanation) -> Router {
    let page = Page {
        chat,
        explanation: Arc::new(explanation),
    };
    Router::new()
        .route("/", get(|| async { Redirect::temporary("/leccion") }))
        .route("/leccion", get(lesson_page))
        .route("/leccion/status", get(status))
        .with_state(page)
}

/// La explicación, con las direcciones y la outbox de este arranque.
async fn lesson_page(State(page): State<Page>) -> Html<String> {
    let explanation = &page.explanation;
    let admin = match &explanation.class_password {
        Some(password) => format!(
            "usuario <code>{}</code>, contraseña <code>{}</code> (la fija de clase)",
            escape(&explanation.admin_username),
            escape(password)
        ),
        None => format!(
            "usuario <code>{}</code> y la contraseña que definiste en <code>CHAT_ADMIN_PASSWORD</code>",
            escape(&explanation.admin_username)
        ),
    };
    let body = include_str!("page.html")
        .replace("{{chat_url}}", &escape(&explanation.chat_url))
        .replace("{{chat_port}}", &explanation.chat_port.to_string())
        .replace("{{admin}}", &admin)
        .replace(
            "{{outbox}}",
            &escape(&explanation.outbox.display().to_string()),
        )
        .replace("{{backend}}", &escape(&explanation.backend));
    lessons::page("Práctica 38 · Aplicación integrada", &body)
}

// ANCHOR: status
/// `GET /leccion/status`: las cifras del chat (las mismas que manda el panel en su evento
/// `stats`, de `chat::dashboard::stats_json`) y los últimos e-mails de la outbox.
async fn status(State(page): State<Page>) -> Json<Value> {
    // Las cifras salen de tres piezas del estado del chat, no del estado entero.
    let sources = chat::dashboard::stats::Sources {
        dashboard: page.chat.dashboard.clone(),
        backends: page.chat.backends.clone(),
        jobs: page.chat.jobs.clone(),
    };
    let stats = match chat::dashboard::stats_json(&sources).await {
        Ok(stats) => stats,
        Err(error) => json!({ "error": error.to_string() }),
    };
    let (count, emails) = recent_emails(&page.explanation.outbox).await;
    Json(json!({
        "chat_url": page.explanation.chat_url,
        "backend": page.explanation.backend,
        "stats": stats,
        "outbox": {
            "path": page.explanation.outbox.display().to_string(),
            "count": count,
            "recent": emails,
        },
    }))
}
// ANCHOR_END: status

/// Cuántos `.eml` hay en la outbox y las cabeceras de los más recientes. Una carpeta que aún no
/// existe (nadie ha recibido un e-mail) es una outbox vacía.
async fn recent_emails(outbox: &Path) -> (usize, Vec<Value>) {
    let Ok(mut entries) = tokio::fs::read_dir(outbox).await else {
        return (0, Vec::new());
    };
    let mut found: Vec<(SystemTime, PathBuf)> = Vec::new();
    let mut scanned = 0;
    while let Ok(Some(entry)) = entries.next_entry().await {
        scanned += 1;
        if scanned > OUTBOX_SCAN_LIMIT {
            break;
        }
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "eml") {
            let modified = entry
                .metadata()
                .await
                .and_then(|meta| meta.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            found.push((modified, path));
        }
    }
    found.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    let mut emails = Vec::new();
    for (modified, path) in found.iter().take(EMAILS_SHOWN) {
        let headers = read_headers(path).await;
        let modified: chrono::DateTime<chrono::Utc> = (*modified).into();
        emails.push(json!({
            "file": path.file_name().map(|name| name.to_string_lossy().into_owned()),
            "to": header(&headers, "To"),
            "subject": header(&headers, "Subject"),
            "modified": modified.to_rfc3339(),
        }));
    }
    (found.len(), emails)
}

/// Las cabeceras de un `.eml` (hasta la primera línea vacía), con las líneas plegadas unidas.
async fn read_headers(path: &Path) -> String {
    let mut text = Vec::new();
    if let Ok(file) = tokio::fs::File::open(path).await {
        let _ = file.take(HEADER_BYTES).read_to_end(&mut text).await;
    }
    let text = String::from_utf8_lossy(&text).replace("\r\n", "\n");
    let headers = text.split("\n\n").next().unwrap_or_default();
    headers.replace("\n ", " ").replace("\n\t", " ")
}

fn header(headers: &str, name: &str) -> Option<String> {
    headers.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name)
            .then(|| value.trim().to_owned())
    })
}

/// Escapa lo que va dentro del HTML (una ruta o una contraseña pueden traer `<` o `&`).
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
