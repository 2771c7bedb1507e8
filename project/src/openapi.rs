//! `GET /openapi.json` and `GET /docs`: the OpenAPI 3 document, generated from the
//! `#[utoipa::path]` annotations on the handlers, and Swagger UI to browse and try it.
//!
//! Swagger UI comes from `utoipa-swagger-ui` with the `vendored` feature: its files are unzipped
//! from a crate at build time and embedded in the binary, so `/docs` never touches a CDN and
//! renders with the network unplugged (the build downloads nothing either).
//!
//! The types below exist for the document only: answers the handlers build with `json!`
//! (errors, `/health`, `/ready`), splice from stored JSON (the message history) or take from
//! types of other modules (`/admin/stats`, `/admin/jobs`) still need a schema, with Spanish
//! descriptions. They mirror the contract (`../shared/spec/chat-protocol.md`), and the
//! integration tests (`tests/api/operations.rs`) check real answers against them.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::domain::ChatMessage;
use crate::error::ApiError;

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";
/// Where Swagger UI is served (`/docs` redirects to `/docs/`).
pub const DOCS_PATH: &str = "/docs";

/// The whole document: every JSON route of the contract.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chat empresarial",
        description = "API REST del chat en tiempo real (proyecto final de la semana 10). Los frames del WebSocket `/ws` y el flujo SSE `/dashboard/events` no caben en OpenAPI: están en `PROTOCOL.md`. Para probar las rutas protegidas, inicia sesión con `POST /auth/login` y pega el `access_token` en «Authorize».",
    ),
    paths(
        crate::health::health,
        crate::health::ready,
        metrics_doc,
        crate::auth::routes::register,
        crate::auth::routes::login,
        crate::auth::routes::me,
        crate::rooms::routes::list_rooms,
        crate::rooms::routes::create_room,
        crate::rooms::routes::messages,
        crate::rooms::routes::invite,
        crate::rooms::routes::remove_member,
        crate::dashboard::admin_stats,
        crate::jobs::routes::list_jobs,
    ),
    components(schemas(ErrorBody, ErrorDetail, ChatMessage)),
    modifiers(&BearerAuth),
    tags(
        (name = "operaciones", description = "Salud, preparación y métricas"),
        (name = "cuentas", description = "Registro, inicio de sesión y la cuenta propia"),
        (name = "salas", description = "Salas, historial y miembros (requieren token)"),
        (name = "admin", description = "Solo para cuentas con rol `admin`"),
    ),
)]
pub struct ApiDoc;

/// Adds the `bearer` security scheme that the protected paths name.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build();
        scheme.description = Some("El `access_token` de `POST /auth/login`".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// The body of every 4xx/5xx answer.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "Cuerpo de toda respuesta de error 4xx/5xx")]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// See [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "`code` es un identificador estable en snake_case (`invalid_input`, `unauthorized`, `forbidden`, `not_found`, `conflict`, `rate_limited`, `payload_too_large`, `unavailable`, `method_not_allowed`); `message` es texto para personas, en español"
)]
pub struct ErrorDetail {
    #[schema(example = "not_found")]
    pub code: String,
    #[schema(example = "la sala «x» no existe")]
    pub message: String,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "Siempre `{\"status\":\"ok\"}`")]
pub struct Health {
    #[schema(example = "ok")]
    pub status: String,
}

/// `GET /ready`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "`status` es `ok` o `degraded`; `checks` dice, por backend (`memory`, `redis`, `queue`…) y para las tareas de fondo (`tasks`), `ok` o `down`; mientras alguna tarea falla una y otra vez, `tasks` nombra cada una con el motivo",
    example = json!({"status": "ok", "checks": {"redis": "ok", "queue": "ok", "tasks": "ok"}})
)]
pub struct Readiness {
    pub status: String,
    pub checks: std::collections::BTreeMap<String, String>,
    /// Each supervised task that keeps failing, with its reason; absent while all work.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<std::collections::BTreeMap<String, String>>,
}

/// `GET /rooms/{id}/messages`. The handler splices the stored frames into the body instead of
/// building this struct, so it is here for the document only.
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "Una página del historial, en orden ascendente de id; `has_more` dice si hay más en la dirección pedida"
)]
pub struct MessagesPage {
    pub messages: Vec<ChatMessage>,
    pub has_more: bool,
}

/// `GET /metrics` is Prometheus text, not JSON; listed so that the document shows every
/// operations route.
#[utoipa::path(
    get, path = "/metrics", tag = "operaciones",
    summary = "Métricas de Prometheus",
    description = "Métricas en formato de texto de Prometheus (versión 0.0.4): `chat_connections`, `chat_messages_total`, `chat_jobs_total{status}`, `http_request_duration_seconds{method,path,status}` (histograma), `chat_sse_subscribers`, `chat_cache_hits_total` / `chat_cache_misses_total{cache}` y `chat_jobs_queue_depth`.",
    responses((status = 200, description = "Métricas", content_type = "text/plain; version=0.0.4", body = String)),
)]
#[allow(dead_code)]
fn metrics_doc() {}

/// `GET /admin/stats`: the snapshot the dashboard streams (`dashboard::stats::Stats`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "Instantánea del sistema (la misma que el evento `stats` del panel); todos los recuentos son enteros",
    example = json!({
        "connections": 3, "users_online": 2,
        "rooms": [{"room": "general", "online": 2, "messages_per_min": 5}],
        "messages_total": 120,
        "jobs": {"pending": 0, "running": 0, "done": 4, "failed": 0, "dead": 0},
        "ts": "2026-11-27T10:15:00.123Z"
    })
)]
pub struct AdminStats {
    pub connections: u64,
    pub users_online: u64,
    pub rooms: Vec<RoomActivity>,
    pub messages_total: u64,
    pub jobs: JobCountsDoc,
    pub ts: String,
}

/// One room in [`AdminStats`].
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "Actividad de una sala")]
pub struct RoomActivity {
    pub room: String,
    pub online: u64,
    pub messages_per_min: u64,
}

/// Jobs per status in [`AdminStats`].
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "Trabajos en cada estado")]
pub struct JobCountsDoc {
    pub pending: u64,
    pub running: u64,
    pub done: u64,
    pub failed: u64,
    pub dead: u64,
}

/// `GET /admin/jobs` (`jobs::JobRecord` items).
#[derive(Debug, Serialize, ToSchema)]
#[schema(description = "Lista de trabajos en segundo plano")]
pub struct JobList {
    pub jobs: Vec<JobDoc>,
}

/// One job in [`JobList`].
#[derive(Debug, Serialize, ToSchema)]
#[schema(
    description = "Un trabajo: `status` es `pending`, `running`, `done`, `failed` (el último intento falló y hay otro programado) o `dead` (agotó los 5 intentos)",
    example = json!({
        "id": "0b6c…", "kind": "email", "status": "done", "attempts": 1,
        "last_error": null,
        "created_at": "2026-11-27T10:15:00.123Z", "updated_at": "2026-11-27T10:15:01.456Z"
    })
)]
pub struct JobDoc {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /openapi.json` and Swagger UI under `/docs`, every file served from the binary.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let config = Config::new([OPENAPI_PATH])
        // The default validator badge would load an image from validator.swagger.io.
        .validator_url("none")
        // A pasted token survives a reload of the page.
        .persist_authorization(true);
    let docs: Router<S> = SwaggerUi::new(DOCS_PATH)
        .url(OPENAPI_PATH, ApiDoc::openapi())
        .config(config)
        .into();
    docs.layer(axum::middleware::map_response(json_not_found))
}

/// Swagger UI answers an unknown file under `/docs/` with an empty 404; the contract wants the
/// JSON error body on every unknown route.
async fn json_not_found(response: Response) -> Response {
    if response.status() == StatusCode::NOT_FOUND {
        ApiError::NotFound("ruta no encontrada".into()).into_response()
    } else {
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_valid_json_with_the_bearer_scheme() {
        let json = ApiDoc::openapi().to_json().unwrap_or_default();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        assert!(
            value["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3."))
        );
        assert_eq!(
            value["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
