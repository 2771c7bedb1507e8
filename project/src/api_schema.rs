//! Shapes of HTTP bodies, for the OpenAPI document only: answers the handlers build with
//! `json!` (errors, `/health`, `/ready`), splice from stored JSON (the message history) or take
//! from types of other modules (`/admin/stats`, `/admin/jobs`) still need a schema, with Spanish
//! descriptions. They mirror the contract (`../shared/spec/chat-protocol.md`), and the
//! integration tests (`tests/api/operations.rs`) check real answers against them.
//!
//! A leaf: the handlers name these types in their `#[utoipa::path]` annotations, and
//! `openapi.rs`, which lists the handlers, names them too; so the handlers never import the
//! module that sits above them.

use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::ChatMessage;

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
