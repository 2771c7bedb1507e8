//! Integración · what earlier weeks taught: health and readiness, Prometheus metrics, and the
//! OpenAPI document with an offline Swagger UI.

use super::client::{Project, project};
use super::jobs;
use crate::checks::registry::{Env, Failure};

pub const HEALTH: &str = "/health y /ready responden el JSON del contrato";
pub const METRICS: &str = "/metrics expone las métricas Prometheus del contrato";
pub const DOCS: &str = "/openapi.json documenta las rutas y /docs sirve Swagger UI sin internet";

pub async fn health(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let answer = project.get("/health", None).await?;
    if answer.status != 200 || answer.body["status"] != "ok" {
        return Err(Failure::new("GET /health no responde que el proceso sirve")
            .expected("200 {\"status\":\"ok\"}")
            .got(answer.describe()));
    }
    let answer = project.get("/ready", None).await?;
    let checks_ok = answer.body["checks"]
        .as_object()
        .is_some_and(|checks| checks.values().all(|value| value == "ok"));
    if answer.status != 200 || answer.body["status"] != "ok" || !checks_ok {
        return Err(Failure::new("GET /ready no informa del estado de cada backend")
            .expected("200 {\"status\":\"ok\",\"checks\":{\"redis\":\"ok\",…}} cuando todo responde")
            .got(answer.describe())
            .hint("/ready comprueba cada backend (Redis, la cola de trabajos) con un tiempo límite"));
    }
    Ok(())
}

/// The sum of every sample of `name` (all label sets) in a Prometheus text.
fn sum_of(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|line| !line.starts_with('#')) {
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        if !(rest.starts_with('{') || rest.starts_with(' ')) {
            continue;
        }
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|value| value.parse::<f64>().ok());
        if let Some(value) = value {
            *found.get_or_insert(0.0) += value;
        }
    }
    found
}

async fn scrape(project: &Project) -> Result<String, Failure> {
    let answer = project.get("/metrics", None).await?;
    if answer.status != 200 {
        return Err(Failure::new("GET /metrics no responde")
            .expected("200 con texto Prometheus")
            .got(answer.describe())
            .hint("expón las métricas con metrics-exporter-prometheus (o prometheus_client) en GET /metrics"));
    }
    Ok(answer.text)
}

pub async fn metrics(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let ana = project.user("ana").await?;
    let room = project.room(&ana.token, "metricas", false).await?;
    let before = scrape(&project).await?;
    let messages_before = sum_of(&before, "chat_messages_total").unwrap_or(0.0);
    let mut a = project.ws(&ana.token).await?;
    a.join(&room).await?;
    a.say(&room, "cuenta este mensaje").await?;
    let after = scrape(&project).await?;
    let missing = |name: &str| sum_of(&after, name).is_none();
    for (name, kind) in [
        ("chat_connections", "gauge: conexiones WebSocket abiertas"),
        ("chat_messages_total", "counter: mensajes guardados"),
        (
            "http_request_duration_seconds_bucket",
            "histogram: duración de cada petición HTTP",
        ),
    ] {
        if missing(name) {
            return Err(Failure::new(format!("/metrics no tiene «{name}»"))
                .expected(format!("{name} ({kind})"))
                .got(super::client::short(&after))
                .hint("mira la fila GET /metrics del contrato: chat_connections, chat_messages_total, chat_jobs_total{status}, http_request_duration_seconds"));
        }
    }
    if sum_of(&after, "chat_connections").unwrap_or(0.0) < 1.0 {
        return Err(
            Failure::new("chat_connections no cuenta la conexión abierta")
                .expected("chat_connections ≥ 1 con un WebSocket abierto"),
        );
    }
    let messages_after = sum_of(&after, "chat_messages_total").unwrap_or(0.0);
    if messages_after <= messages_before {
        return Err(
            Failure::new("chat_messages_total no creció al guardar un mensaje")
                .expected(format!("más de {messages_before}"))
                .got(format!("{messages_after}")),
        );
    }
    let labelled = after.lines().any(|line| {
        line.starts_with("http_request_duration_seconds_bucket{")
            && line.contains("method=")
            && line.contains("path=")
            && line.contains("status=")
    });
    if !labelled {
        return Err(Failure::new("http_request_duration_seconds no lleva las etiquetas method, path y status")
            .expected("http_request_duration_seconds_bucket{method=\"GET\",path=\"/rooms\",status=\"200\",le=\"…\"} …")
            .hint("la etiqueta path es la ruta emparejada (MatchedPath), no la URL: así no explota el número de series"));
    }
    // Job transitions are counted once some job has ended.
    let admin = project.admin_token().await?;
    let ended = jobs::jobs(&project, &admin)
        .await
        .map(|jobs| {
            jobs.iter()
                .any(|job| matches!(job["status"].as_str(), Some("done" | "failed" | "dead")))
        })
        .unwrap_or(false);
    if ended
        && !after
            .lines()
            .any(|line| line.starts_with("chat_jobs_total{") && line.contains("status="))
    {
        return Err(Failure::new(
            "/metrics no tiene chat_jobs_total{status}, aunque ya terminaron trabajos",
        )
        .expected("chat_jobs_total{status=\"done\"} N")
        .hint("incrementa chat_jobs_total{status} en cada transición a done, failed o dead"));
    }
    Ok(())
}

const DOCUMENTED: [&str; 9] = [
    "/health",
    "/ready",
    "/auth/register",
    "/auth/login",
    "/auth/me",
    "/rooms",
    "/rooms/{id}/messages",
    "/rooms/{id}/members",
    "/admin/jobs",
];

/// The `src="…"` and `href="…"` values of an HTML page.
fn assets(html: &str) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(start) = rest.find(attribute) {
            rest = &rest[start + attribute.len()..];
            if let Some(end) = rest.find('"') {
                found.push(rest[..end].to_owned());
                rest = &rest[end..];
            }
        }
    }
    found
}

pub async fn docs(env: Env) -> Result<(), Failure> {
    let project = project(&env)?;
    let answer = project.get("/openapi.json", None).await?;
    let version = answer.body["openapi"].as_str().unwrap_or("");
    if answer.status != 200 || !version.starts_with('3') {
        return Err(
            Failure::new("GET /openapi.json no devuelve un documento OpenAPI 3")
                .expected("200 {\"openapi\":\"3.x\",\"paths\":{…}}")
                .got(answer.describe())
                .hint(
                    "genera el documento desde el código (utoipa en Rust, automático en FastAPI)",
                ),
        );
    }
    let paths = answer.body["paths"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    // Path parameters may have any name: compare the shape.
    let shape = |path: &str| {
        path.split('/')
            .map(|part| if part.starts_with('{') { "{}" } else { part })
            .collect::<Vec<_>>()
            .join("/")
    };
    let documented: Vec<String> = paths.keys().map(|path| shape(path)).collect();
    let missing: Vec<&str> = DOCUMENTED
        .iter()
        .copied()
        .filter(|path| !documented.contains(&shape(path)))
        .collect();
    if !missing.is_empty() {
        return Err(Failure::new("al documento OpenAPI le faltan rutas JSON")
            .expected(DOCUMENTED.join(", "))
            .got(format!("faltan: {}", missing.join(", "))));
    }
    let response = project
        .http
        .get(project.url("/docs"))
        .send()
        .await
        .map_err(|error| Failure::new("GET /docs no respondió").got(error.to_string()))?;
    let page_url = response.url().clone();
    let status = response.status().as_u16();
    let html = response.text().await.unwrap_or_default();
    if status != 200 || !html.to_lowercase().contains("swagger") {
        return Err(Failure::new("GET /docs no sirve Swagger UI")
            .expected("200 con la página de Swagger UI (se aceptan redirecciones)")
            .got(format!("{status} {}", super::client::short(&html))));
    }
    for asset in assets(&html) {
        if asset.starts_with('#') || asset.starts_with("data:") {
            continue;
        }
        let Ok(url) = page_url.join(&asset) else {
            continue;
        };
        if url.host_str() != page_url.host_str()
            || url.port_or_known_default() != page_url.port_or_known_default()
        {
            return Err(Failure::new("Swagger UI carga recursos de otro servidor")
                .expected("todos los recursos servidos por tu servidor (funciona sin internet)")
                .got(asset)
                .hint("sirve los ficheros de Swagger UI desde tu servidor (utoipa-swagger-ui con `vendored`; en FastAPI, static files)"));
        }
        let fetched = project.get(url.path(), None).await?;
        if fetched.status != 200 {
            return Err(
                Failure::new(format!("un recurso de /docs no se puede descargar: {url}"))
                    .got(fetched.describe()),
            );
        }
    }
    Ok(())
}
