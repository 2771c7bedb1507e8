//! `GET /admin/jobs?status=` (admin only): the job records, newest first.

use std::sync::Arc;

use axum::extract::{FromRef, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::{JobRecord, JobStatus, Jobs};
use crate::auth::AdminUser;
use crate::auth::tokens::Tokens;
use crate::error::ApiError;
use crate::error::extract::Query;

/// `GET /admin/jobs`, on any state that holds the jobs and the tokens.
pub fn router<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Jobs: FromRef<S>,
    Arc<Tokens>: FromRef<S>,
{
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
        (status = 200, description = "Los trabajos", body = crate::api_schema::JobList),
        (status = 401, description = "Token ausente, inválido o caducado (`unauthorized`)", body = crate::api_schema::ErrorBody),
        (status = 403, description = "Tu cuenta no es admin (`forbidden`)", body = crate::api_schema::ErrorBody),
        (status = 422, description = "Un `status` que no existe (`invalid_input`)", body = crate::api_schema::ErrorBody),
    ),
)]
async fn list_jobs(
    State(jobs): State<Jobs>,
    _admin: AdminUser,
    Query(query): Query<JobsQuery>,
) -> Result<Json<JobList>, ApiError> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(word) => Some(JobStatus::parse(word).ok_or_else(|| {
            ApiError::InvalidInput("status debe ser pending, running, done, failed o dead".into())
        })?),
    };
    let jobs = jobs.list(status).await?;
    Ok(Json(JobList { jobs }))
}
