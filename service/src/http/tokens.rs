//! `POST /v1/tokens` (answers the new token, shown this once), `GET /v1/tokens` (without
//! secrets), `DELETE /v1/tokens/{name}`: the admin's.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::{ApiError, HttpState};
use crate::access::tokens::NewToken;
use crate::access::{Caller, Role};
use crate::error::ServiceError;

pub async fn create(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<NewToken>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let created = caller
        .require(Role::Admin, "creating a token")
        .and_then(|_| {
            body.map_err(|e| {
                ServiceError::BadRequest(format!(
                    "expected {{\"name\", \"role\", \"databases\"?, \"expires_in\"?}}: {}",
                    e.body_text()
                ))
            })
        })
        .and_then(|Json(new)| state.tokens.create(new));
    let name = created
        .as_ref()
        .map(|(_, i)| i.name.clone())
        .unwrap_or_default();
    state.audit.record(&caller, "create_token", &name, &created);
    let (token, info) = created?;
    tracing::info!(by = %caller.name, name = %info.name, role = info.role.as_str(), "token created");
    let mut v = json!(info);
    v["token"] = json!(token);
    Ok((StatusCode::CREATED, Json(v)))
}

pub async fn list(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Role::Admin, "listing tokens")?;
    Ok(Json(json!({ "tokens": state.tokens.list() })))
}

pub async fn delete(
    State(state): State<HttpState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let deleted = caller
        .require(Role::Admin, "deleting a token")
        .and_then(|_| state.tokens.delete(&name));
    state.audit.record(&caller, "delete_token", &name, &deleted);
    deleted?;
    tracing::info!(by = %caller.name, name, "token deleted");
    Ok(Json(json!({ "deleted": name })))
}
