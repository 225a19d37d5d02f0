//! `POST /v1/tables/{db}/{table}/refresh` (refresh one table now and answer its report, or with
//! `?async=true` answer 202 and an id at once), `GET /v1/refreshes/{id}` (poll that id), and
//! `POST /v1/refresh` (every loaded table, one report or error each).

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tarn_catalog::TableKey;

use super::{ApiError, HttpState};
use crate::access::{Caller, Role};
use crate::error::ServiceError;
use crate::load::RefreshJob;

#[derive(Debug, Deserialize)]
pub struct RefreshParams {
    #[serde(default, rename = "async")]
    asynchronous: bool,
}

pub async fn one(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path((db, table)): Path<(String, String)>,
    params: Result<Query<RefreshParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) = params.map_err(|e| ServiceError::BadRequest(e.body_text()))?;
    let key = TableKey::new(db, table);
    let target = key.to_string();
    let job = caller
        .require_in(Role::Loader, &key.database, "a refresh")
        .and_then(|_| state.loader.request_refresh(&key));
    if params.asynchronous || job.is_err() {
        state
            .audit
            .record(&caller, "refresh_requested", &target, &job);
        let job = job?;
        return Ok((StatusCode::ACCEPTED, Json(job_json(&job))).into_response());
    }
    let done = job?.wait().await;
    state.audit.record(&caller, "refresh", &target, &done);
    Ok(Json(done?).into_response())
}

/// A refresh asked for with `?async=true`: `running`, `done` with its report, or `failed` with
/// its error.
pub async fn poll(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    id: Result<Path<u64>, PathRejection>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Reader, "polling a refresh")?;
    let Path(id) =
        id.map_err(|e| ServiceError::BadRequest(format!("refresh id: {}", e.body_text())))?;
    let job = state.loader.job(id).ok_or_else(|| {
        ServiceError::NotFound(format!(
            "no refresh with id {id} (the last {} asked for are kept)",
            crate::load::JOBS_KEPT
        ))
    })?;
    caller.require_database(&job.table.database)?;
    Ok(Json(job_json(&job)))
}

fn job_json(job: &RefreshJob) -> Value {
    let mut v = json!({
        "id": job.id,
        "table": job.table.to_string(),
        "requested_at": job.requested_at,
        "poll": format!("/v1/refreshes/{}", job.id),
    });
    match job.outcome() {
        None => v["state"] = json!("running"),
        Some(Ok(report)) => {
            v["state"] = json!("done");
            v["report"] = json!(report);
        }
        Some(Err(e)) => {
            v["state"] = json!("failed");
            v["error"] = json!({"code": e.code().as_str(), "message": e.to_string()});
        }
    }
    v
}

pub async fn all(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    let allowed = caller.require(Role::Loader, "a refresh");
    state.audit.record(&caller, "refresh_all", "*", &allowed);
    allowed?;
    let mut out = Vec::new();
    for entry in state.engine.store().entries() {
        if entry.current().is_none() || !caller.sees(&entry.key.database) {
            continue;
        }
        let item = match state.loader.refresh(&entry.key).await {
            Ok(r) => json!({"table": entry.key.to_string(), "report": r}),
            Err(e) => {
                json!({"table": entry.key.to_string(), "error": {"code": e.code().as_str(), "message": e.to_string()}})
            }
        };
        out.push(item);
    }
    Ok(Json(json!({ "tables": out })))
}
