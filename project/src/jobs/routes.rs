//! `GET /admin/jobs?status=` (admin only): the job records, newest first.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{JobRecord, JobStatus};
use crate::app::AppState;
use crate::auth::AuthUser;
use crate::error::ApiError;
use crate::error::extract::Query;

pub fn router() -> Router<AppState> {
    Router::new().route("/admin/jobs", get(list_jobs))
}

#[derive(Debug, Deserialize)]
struct JobsQuery {
    status: Option<String>,
}

#[derive(Debug, Serialize)]
struct JobList {
    jobs: Vec<JobRecord>,
}

#[utoipa::path(
    get, path = "/admin/jobs", tag = "admin",
    summary = "Trabajos en segundo plano",
    description = "Trabajos en segundo plano (los e-mails de menciones), los más recientes primero, opcionalmente filtrados por estado.",
    security(("bearer" = [])),
    params(("status" = Option<String>, Query, description = "`pending`, `running`, `done`, `failed` o `dead`")),
    responses(
        (status = 200, description = "Los trabajos", body = crate::openapi::JobList),
        (status = 401, description = "Token ausente, inválido o caducado (`unauthorized`)", body = crate::openapi::ErrorBody),
        (status = 403, description = "Tu cuenta no es admin (`forbidden`)", body = crate::openapi::ErrorBody),
        (status = 422, description = "Un `status` que no existe (`invalid_input`)", body = crate::openapi::ErrorBody),
    ),
)]
async fn list_jobs(
    State(state): State<AppState>,
    user: AuthUser,
    Query(query): Query<JobsQuery>,
) -> Result<Json<JobList>, ApiError> {
    if !user.is_admin() {
        return Err(ApiError::Forbidden(
            "solo un administrador puede ver los trabajos".into(),
        ));
    }
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(word) => Some(JobStatus::parse(word).ok_or_else(|| {
            ApiError::InvalidInput("status debe ser pending, running, done, failed o dead".into())
        })?),
    };
    let jobs = state.jobs.list(status).await?;
    Ok(Json(JobList { jobs }))
}
