//! `GET /openapi.json` and `GET /docs`: the OpenAPI 3 document, generated from the
//! `#[utoipa::path]` annotations on the handlers, and Swagger UI to browse and try it.
//!
//! Swagger UI comes from `utoipa-swagger-ui` with the `vendored` feature: its files are unzipped
//! from a crate at build time and embedded in the binary, so `/docs` never touches a CDN and
//! renders with the network unplugged (the build downloads nothing either).
//!
//! The shapes of bodies that no handler type describes live in [`crate::api_schema`], a leaf
//! the handlers name in their annotations; this module lists the handlers, so it sits above
//! them and nothing below imports it.

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::api_schema::{ErrorBody, ErrorDetail};
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
